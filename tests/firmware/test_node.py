# Node pipeline + app composition in host emulation (MicroPython unix port, simulated HAL).
import asyncio
import json
import os
import sys

import machine
import network
import scenario
import flashdev
from shared import cbor
from firmware import app as A
import simapp
from shared import config as C
from firmware.flashlog import FlashLog

MP_TIMEOUT = 120
_TMP = "/tmp/fogline-test-node-%d" % (os.urandom(1)[0] * 256 + os.urandom(1)[0])


def _site(**over):
    s = {"node": {"id": "n1", "site": "s1", "board": "pico_w"}, "sample_ms": 1000, "watchdog_ms": 0,
         "sensors": [{"name": "temperature", "driver": "bme280", "field": "temperature", "unit": "Cel",
                      "filters": [{"type": "median", "window_size": 3, "send_every": 1},
                                  {"type": "delta", "value": 0.2}]},
                     {"name": "humidity", "driver": "bme280", "field": "humidity", "unit": "%RH",
                      "filters": [{"type": "throttle", "interval_ms": 10000}]},
                     {"name": "probe", "driver": "ntc", "pin": 26, "unit": "Cel"}],
         "rules": [{"name": "hot", "sensor": "temperature", "type": "above", "threshold": 30.0,
                    "hysteresis": 1.0, "actuator": "relay"},
                   {"name": "gone", "sensor": "temperature", "type": "stale", "missing_ms": 5000,
                    "actuator": "relay", "action": "off"}]}
    for k in over:
        s[k] = over[k]
    return s


def _write(name, obj):
    try:
        os.mkdir(_TMP)
    except OSError:
        pass
    p = _TMP + "/" + name
    with open(p, "w") as f:
        f.write(json.dumps(obj))
    return p


def _app(site, preset="normal", store=None, seed=1):
    machine.reset_sim()
    network.clear_outages()
    cfg = A.load_config(_write("site.json", site), "boards")
    clock = simapp.VirtualClock()
    machine.set_clock(clock.now_ms)
    A.sim_attach(cfg, scenario.preset(preset, seed), clock)
    return A.App(cfg, store, clock=clock)


def test_pipeline_counts_and_store_records():
    dev = flashdev.FlashDev(64)
    flashdev.mount(dev, "/fl", format=True)
    log = FlashLog("/fl/log", capacity_bytes=131072, segment_bytes=4096, sync_every=10, sync_ms=5000)
    a = _app(_site(), "hot", log)
    asyncio.run(a.run(300))
    st = a.node.stats
    assert a.samples == 300 and st["samples"] == 300
    assert st["readings"] == 900 and st["read_errors"] == 0
    assert st["kept"] + st["filtered"] == st["readings"], st  # every reading is stored or filtered, none lost
    assert st["alerts"] == 1 and a.node.rules.active() == ["hot"]
    assert machine.pin_state(15) == 1  # pico_w relay pin
    assert log.depth("up") == st["kept"] and log.depth("alert") == 1, (log.depth("up"), st)
    recs = log.pending("alert", 5)
    t, name, unit, value = cbor.loads(recs[0][1])
    assert name == "hot" and unit == "Cel" and value > 30.0 and isinstance(t, int)
    ups = log.pending("up", 50)
    names = set(cbor.loads(b)[1] for _, b in ups)
    assert names == {"temperature", "humidity", "probe"}, names
    assert a.node.latest["temperature"] > 30.0
    flashdev.umount("/fl")


def test_sht4x_node_through_app():
    site = _site(rules=[{"name": "damp", "sensor": "rh", "type": "above", "threshold": 40.0, "actuator": "relay"}])
    site["sensors"] = [{"name": "rh", "driver": "sht4x", "field": "humidity", "unit": "%RH"},
                       {"name": "t2", "driver": "sht4x", "field": "temperature", "unit": "Cel"}]
    a = _app(site, "normal")
    asyncio.run(a.run(30))
    st = a.node.stats
    assert st["read_errors"] == 0 and st["kept"] == 60, st
    assert 30.0 < a.node.latest["rh"] < 60.0 and 15.0 < a.node.latest["t2"] < 27.0, a.node.latest
    assert len(a.node.devices) == 1  # both fields from one chip


def test_invalid_config_file_refused_with_field():
    bad = _site()
    bad["sensors"][0]["filters"][1] = {"type": "kalman", "q": 1}
    p = _write("bad.json", bad)
    try:
        A.load_config(p, "boards")
    except ValueError as e:
        assert str(e).startswith("sensors[0].filters[1].type:"), e
    else:
        raise AssertionError("invalid config accepted")
    try:
        A.host_main(["--config", p, "--samples", "1", "--virtual-clock", "--no-mqtt", "--no-ble"])
    except ValueError as e:
        assert "sensors[0].filters[1].type" in str(e)
    else:
        raise AssertionError("node started on an invalid config")
    with open(_TMP + "/junk.json", "w") as f:
        f.write("{not json")
    try:
        A.load_config(_TMP + "/junk.json", "boards")
    except ValueError as e:
        assert "junk.json" in str(e)
    else:
        raise AssertionError("malformed JSON accepted")


def test_sensor_dies_fail_safe_and_counts():
    a = _app(_site(), "dies")
    asyncio.run(a.run(120))
    st = a.node.stats
    # 'dies' preset: at t=60 s the BME280 stops answering and the NTC (same signal) reads open.
    assert st["read_errors"] == 120 and st["readings"] == 180, st
    assert "gone" in a.node.rules.active()
    assert machine.pin_state(15) == 0
    assert a.node.last_error and "OSError" in a.node.devices[0].last_error and "open" in a.node.last_error
    assert a.status()["sensing"]["read_errors"] == 120
    errs = [d.errors for d in a.node.devices]
    assert errs == [60, 60], errs


def test_apply_config_live():
    a = _app(_site())
    asyncio.run(a.run(20))
    new = C.validate_config(C.merge(a.cfg, {"version": 2, "sensors": a.cfg["sensors"][:1],
                                                                  "rules": []}))
    ok, why = a.apply_config(new)
    assert ok, why
    asyncio.run(a.run(20))
    assert len(a.node.channels) == 1 and a.cfg["version"] == 2
    # counters carry over a live re-configuration: 20 samples x 3 sensors, then 20 x 1
    assert a.node.stats["samples"] == 40 and a.node.stats["readings"] == 80, a.node.stats


def test_apply_config_keeps_relay_and_rule_state():
    a = _app(_site(), "hot")
    asyncio.run(a.run(100))
    assert a.node.rules.active() == ["hot"] and machine.pin_state(15) == 1
    pin = machine.get_pin(15)
    changes = pin.changes
    alerts = a.node.stats["alerts"]
    hot = a.node.rules.rules[0]
    filt = dict(a.cfg["sensors"][1])
    filt["filters"] = [{"type": "throttle", "interval_ms": 2000}]
    new = C.validate_config(C.merge(a.cfg, {"version": 3, "sensors": [a.cfg["sensors"][0], filt,
                                                                         a.cfg["sensors"][2]]}))
    ok, why = a.apply_config(new)
    assert ok, why
    assert a.node.rules.rules[0] is hot  # unchanged rule keeps its state
    asyncio.run(a.run(20))
    assert pin.changes == changes and machine.pin_state(15) == 1  # no glitch on the relay
    assert a.node.stats["alerts"] == alerts  # and no duplicate alert
    assert a.node.channels[1].chain.filters[0].ms == 2000  # the changed chain was rebuilt


def test_deepsleep_cycle_host_main():
    p = _write("sleepy.json", _site(deepsleep_ms=60000))
    out = A.host_main(["--config", p, "--samples", "4", "--virtual-clock", "--no-mqtt", "--no-ble"])
    assert out["samples"] == 4 and out["deepsleeps"] == 4, out
    assert machine.sleep_log[-1] == 60000
    assert machine.reset_cause() == machine.DEEPSLEEP_RESET


def test_watchdog_fires_when_sampling_hangs():
    state = _TMP + "/resetcause"
    scen = _write("hang.json", {"seed": 1, "signals": {"temperature": {"base": 20.0}}, "hang_at_s": 0.4})
    ok_site = _write("wdt.json", _site(sample_ms=50, watchdog_ms=300))
    base = "FOGLINE_SIM_STATE=%s %s %s/firmware/main.py --config %s --no-mqtt --no-ble" % (
        state, sys.executable, os.getcwd(), ok_site)
    log = _TMP + "/wdt.log"
    # Alive sampler: 30 samples of 50 ms (1.5 s, five times the timeout) and a clean exit.
    rc = os.system(base + " --samples 30 > %s 2>&1" % log)
    assert rc == 0, open(log).read()
    assert "STATS" in open(log).read()
    # Sampler stuck in a bus transfer at 0.4 s: the watchdog resets the board.
    rc = os.system(base + " --scenario-file %s > %s 2>&1" % (scen, log))
    out = open(log).read()
    assert rc != 0 and "watchdog reset" in out, (rc, out)
    assert "STATS" not in out
    with open(state) as f:
        assert int(f.read()) == machine.WDT_RESET


def test_network_outage_switch():
    machine.reset_sim()
    network.clear_outages()
    clock = simapp.VirtualClock()
    machine.set_clock(clock.now_ms)
    w = network.WLAN(network.STA_IF)
    w.active(True)
    w.connect("sim", "pw")
    assert w.isconnected() and w.status() == network.STAT_GOT_IP
    network.schedule_outage(1000, 2000)
    clock.advance(1500)
    assert not w.isconnected() and w.status() == network.STAT_NO_AP_FOUND
    clock.advance(600)
    assert w.isconnected()
    network.set_link(False)
    assert not w.isconnected()
    network.clear_outages()


def test_scenario_reproducible_and_faults():
    s1 = scenario.preset("spikes", 7).series["temperature"]
    s2 = scenario.preset("spikes", 7).series["temperature"]
    fwd = [s1.value(t) for t in range(300)]
    back = [s2.value(t) for t in range(299, -1, -1)]
    back.reverse()
    assert fwd == back  # pure function of (seed, t)
    spikes = [t for t in range(300) if s1.sample(t)[2] & scenario.SPIKE]
    assert 2 <= len(spikes) <= 25, spikes
    for t in spikes:
        assert abs(s1.value(t) - s1.truth(t)[0]) > 10.0
    other = scenario.preset("spikes", 8).series["temperature"]
    assert [other.value(t) for t in range(20)] != fwd[:20]
    st = scenario.Series(base=20.0, stuck=(10, 20), noise=0.5, seed=3)
    assert st.value(12) == st.value(19) == st.value(10) and st.value(20) != st.value(10)
    dr = scenario.Series(base=20.0, drift_per_h=36.0)
    assert abs(dr.value(100) - 21.0) < 1e-9 and dr.sample(100)[1] == 20.0
    dp = scenario.Series(base=20.0, dropouts=[(5, 8)], step=(50, 4.0))
    assert dp.value(6) is None and dp.value(8) == 20.0 and dp.value(50) == 24.0


def test_timer_filters_emit_between_inputs():
    site = _site(rules=[])
    site["sensors"] = [{"name": "temperature", "driver": "bme280", "unit": "Cel",
                        "filters": [{"type": "delta", "value": 100.0}, {"type": "heartbeat", "interval_ms": 10000}]},
                       {"name": "humidity", "driver": "bme280", "field": "humidity", "unit": "%RH",
                        "filters": [{"type": "timeout", "time_ms": 5000}]}]
    recs = []
    a = _app(site, "dies")
    a.node.on_record = lambda *r: recs.append(r)
    asyncio.run(a.run(71))  # t = 0 .. 70 s; the chip dies at 60 s
    st = a.node.stats
    temps = [r for r in recs if r[1] == "temperature"]
    # delta passes only the first reading; the heartbeat repeats it every 10 s (timer-driven)
    t0 = a.clock.base_n  # records carry node seconds
    assert [r[4] - t0 for r in temps] == [10, 20, 30, 40, 50, 60, 70], temps
    assert len(set(r[3] for r in temps)) == 1
    # timeout: humidity readings pass; 5 s after the last one a NaN is emitted once, counted, not stored
    assert st["nan"] == 1, st
    assert a.node.latest["humidity"] is None
    assert st["timer_outputs"] == 8, st  # 7 heartbeats + 1 timeout
    assert st["kept"] == 7 + 60, st


class _Boom:
    def update(self, v, now):
        raise ZeroDivisionError("bug")


def test_pipeline_bug_is_counted_not_fatal():
    a = _app(_site(), "hot")
    a.node.channels[1].chain.filters.insert(0, _Boom())  # humidity chain is broken
    asyncio.run(a.run(60))
    st = a.node.stats
    assert st["pipeline_errors"] == 60 and "ZeroDivisionError" in a.node.last_error, st
    assert machine.pin_state(15) == 1 and a.node.rules.active() == ["hot"]  # temperature rules still act
    assert a.node.latest.get("probe") is not None
