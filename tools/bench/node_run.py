# MicroPython side of the node benchmarks: the full node (demo-like config: every filter type, every
# rule type, FlashLog on a host-file-backed flash image) on the simulated HAL with a virtual clock.
# usage: micropython tools/bench/node_run.py mem|loop SAMPLES FLASH_IMG|- [MQTT_PORT] ; prints one JSON line.
# With MQTT_PORT (mem mode) the MQTT client, uplink, remote config and the BTHome advertiser (encrypted)
# run too: the full firmware (broker + acking gateway are started by tools/bench/node_memory.py --mqtt).
import asyncio
import gc
import json
import sys
import time

gc.collect()
_m0 = gc.mem_alloc()
import machine  # noqa: E402  (simulated HAL first, so its cost can be told apart)
import scenario  # noqa: E402
import sim_sensors  # noqa: E402,F401  (counted as simulated HAL)
import flashdev  # noqa: E402,F401
gc.collect()
SIM_MODULES = gc.mem_alloc() - _m0
import simapp  # noqa: E402
from firmware import app as A  # noqa: E402
SIM_OBJECTS = [0]

# The site config as a board gets it: JSON text, parsed once at boot (the parsed dict is not kept).
SITE_JSON = json.dumps({
    "node": {"id": "bench1", "site": "s1", "board": "pico_w"}, "sample_ms": 1000, "watchdog_ms": 8000,
    "log": {"capacity_bytes": 524288, "segment_bytes": 16384, "sync_every": 10, "sync_ms": 5000},
    "sensors": [
        {"name": "temperature", "driver": "bme280", "field": "temperature", "unit": "Cel", "filters": [
            {"type": "filter_out", "values": [85.0], "nan": True},
            {"type": "median", "window_size": 5, "send_every": 1},
            {"type": "offset", "value": -0.2}, {"type": "calibrate_linear", "points": [[0, 0.1], [40, 40.3]]},
            {"type": "clamp", "min": -40, "max": 85},
            {"type": "or", "filters": [{"type": "delta", "value": 0.1}, {"type": "heartbeat", "interval_ms": 60000}]}]},
        {"name": "humidity", "driver": "bme280", "field": "humidity", "unit": "%RH", "filters": [
            {"type": "skip_initial", "count": 2},
            {"type": "sliding_window_moving_average", "window_size": 15, "send_every": 15},
            {"type": "quantile", "window_size": 5, "send_every": 1, "quantile": 0.9},
            {"type": "delta", "percent": 1}]},
        {"name": "pressure", "driver": "bme280", "field": "pressure", "unit": "Pa", "filters": [
            {"type": "exponential_moving_average", "alpha": 0.2, "send_every": 10},
            {"type": "multiply", "value": 1.0}, {"type": "throttle_average", "interval_ms": 30000},
            {"type": "timeout", "time_ms": 120000}]},
        {"name": "probe", "driver": "ntc", "pin": 26, "unit": "Cel", "filters": [
            {"type": "min", "window_size": 8, "send_every": 4}, {"type": "max", "window_size": 4, "send_every": 4},
            {"type": "throttle", "interval_ms": 10000}, {"type": "debounce", "time_ms": 3000}]}],
    "rules": [
        {"name": "hot", "sensor": "temperature", "type": "above", "threshold": 22.5, "hysteresis": 0.3,
         "hold_ms": 2000, "actuator": "relay"},
        {"name": "freeze", "sensor": "probe", "type": "below", "threshold": 2.0, "hysteresis": 0.5,
         "source": "filtered", "actuator": "relay", "action": "off", "fail_safe": "off"},
        {"name": "surge", "sensor": "temperature", "type": "rate", "threshold": 5.0, "direction": "rise"},
        {"name": "stuck", "sensor": "humidity", "type": "stale", "stuck_ms": 60000, "missing_ms": 10000,
         "stuck_epsilon": 0.0001, "actuator": "relay", "action": "off"}],
})


def build(flash, period_s=600, mqtt_port=None):
    from shared import config as C
    site = json.loads(SITE_JSON)
    if mqtt_port:
        site["mqtt"] = {"host": "127.0.0.1", "port": mqtt_port, "keepalive": 30}
        site["ble"] = {"enabled": True, "bind_key": "231d39c1d7cc1ab1aee224cd096db932", "interval_ms": 5000}
    cfg = C.validate_config(C.merge(C.DEFAULTS, A.load_json("boards/pico_w.json"), site))
    del site
    del C
    A.forget_config_module()  # as board_main does after boot validation
    clock = simapp.VirtualClock()
    machine.set_clock(clock.now_ms)
    gc.collect()
    m = gc.mem_alloc()
    sc = scenario.preset("spikes", 3)
    sc.series["temperature"].period_s = period_s
    simapp.sim_attach(cfg, sc, clock)
    store = None
    dev = None
    if flash != "-":
        dev = flashdev.FlashDev(cfg["hw"]["fs_bytes"] // 4096, path=flash)
    gc.collect()
    SIM_OBJECTS[0] = gc.mem_alloc() - m  # simulated chips, scenario and flash device buffers
    if dev is not None:
        flashdev.mount(dev, "/flash", format=True)
        store = A.make_store(cfg, "/flash/log")
    return A.App(cfg, store, clock=clock), clock


def run_mem(n, flash, mqtt_port=None):
    """n samples; peak gc.mem_alloc() and the live set every 1000 samples (with MQTT links when a port is given)."""
    gc.collect()
    base = gc.mem_alloc()
    app, clock = build(flash, mqtt_port=mqtt_port)
    if mqtt_port:
        import network
        w = network.WLAN(network.STA_IF)
        w.active(True)
        w.connect("bench")
        app.uplinks = A.build_links(app, "/tmp/fogline-bench-config.json", True, True)
    gc.collect()
    built = gc.mem_alloc()
    m = {"peak": 0, "live": 0}

    def track(i):
        a = gc.mem_alloc()
        if a > m["peak"]:
            m["peak"] = a
        if i % 1000 == 999:
            gc.collect()
            a = gc.mem_alloc()
            if a > m["live"]:
                m["live"] = a
            if app.store is not None and not mqtt_port:
                # stand-in for the gateway's ack so the log keeps cycling through its segments
                for ln in ("up", "alert"):
                    app.store.ack_upto(ln, app.store.durable_seq(ln))

    if mqtt_port:
        async def main():
            tasks = [asyncio.create_task(u.run()) for u in app.uplinks]
            for i in range(n):
                app.sample_once()
                clock.advance(app.cfg["sample_ms"])
                track(i)
                await asyncio.sleep_ms(1 if i % 4 == 0 else 0)  # real time for the links to work in
            for _ in range(200):  # let the uplink drain what the gateway has not acked yet
                if app.store.depth("up") == 0 and app.store.depth("alert") == 0:
                    break
                await asyncio.sleep_ms(20)
                track(1)
            for t in tasks:
                t.cancel()
        asyncio.run(main())
    else:
        for i in range(n):
            app.sample_once()
            clock.advance(app.cfg["sample_ms"])
            track(i)
    st = app.node.stats
    sim = SIM_MODULES + SIM_OBJECTS[0]
    out = {"samples": n, "store_errors": st["store_errors"], "sim_bytes": sim,
           "firmware_live_peak": m["live"] - sim, "peak_alloc": m["peak"], "live_peak": m["live"], "baseline": base,
           "after_build": built, "heap_total": gc.mem_alloc() + gc.mem_free(), "kept": st["kept"],
           "alerts": st["alerts"], "store": app.store is not None, "mqtt": bool(mqtt_port), "sensing": st}
    if mqtt_port and app.store is not None:
        out["acked_up"] = app.store.acked("up")
        out["uplink_msgs"] = app.uplink.stats["msgs"]
    return out


def run_loop(n, flash):
    app, clock = build(flash, period_s=40)
    pin = app.pins["relay"][1]
    devs = app.node.devices
    mark = [0, 0]
    orig = devs[0].measure

    def timed():
        mark[0] = time.ticks_us()  # the crossing sample's read starts here (incl. simulated chip)
        r = orig()
        mark[1] = time.ticks_us()  # value converted: from here on it is firmware only
        return r
    devs[0].measure = timed
    lat = []
    lat2 = []
    changes = pin.changes
    t0 = time.ticks_us()
    for i in range(n):
        app.sample_once()
        clock.advance(app.cfg["sample_ms"])
        if pin.changes != changes:
            changes = pin.changes
            if len(lat) < 2000:
                lat.append(time.ticks_diff(pin.last_change_us, mark[0]))
                lat2.append(time.ticks_diff(pin.last_change_us, mark[1]))
    dt = time.ticks_diff(time.ticks_us(), t0)
    lat.sort()
    lat2.sort()
    k = len(lat)
    return {"samples": n, "samples_per_s": n * 1e6 / dt, "us_per_sample": dt / n, "actuations": k,
            "act_p50_us": lat[k // 2] if k else None, "act_p99_us": lat[min(k - 1, k * 99 // 100)] if k else None,
            "act_max_us": lat[-1] if k else None,
            "value_p50_us": lat2[k // 2] if k else None, "value_p99_us": lat2[min(k - 1, k * 99 // 100)] if k else None, "store": app.store is not None}


if __name__ == "__main__":
    mode, n, flash = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    port = int(sys.argv[4]) if len(sys.argv) > 4 else None
    try:
        out = run_mem(n, flash, port) if mode == "mem" else run_loop(n, flash)
        out["ok"] = not out.get("store_errors")  # a MemoryError caught around the store counts as a failure
    except MemoryError:
        out = {"ok": False, "error": "MemoryError"}
    print(json.dumps(out))
