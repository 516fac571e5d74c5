# Rules: hysteresis, hold, delay, rate, stale/stuck fail-safe; actuator in the same tick (MicroPython unix port).
import machine
import scenario
import sim_sensors
from shared.rules import Rule, Rules, Actuator
from firmware.node import Node


def _steps(rule, seq):
    # seq: (value, now_ms) -> list of transitions (True fired, False cleared, None)
    return [rule.step(v, t) for v, t in seq]


def test_above_with_hysteresis():
    r = Rule({"name": "hot", "sensor": "t", "type": "above", "threshold": 30.0, "hysteresis": 2.0})
    got = _steps(r, [(29, 0), (31, 1), (29.5, 2), (28.5, 3), (27.9, 4), (28, 5), (30.1, 6)])
    assert got == [None, True, None, None, False, None, True], got


def test_below_with_hysteresis():
    r = Rule({"name": "cold", "sensor": "t", "type": "below", "threshold": 5.0, "hysteresis": 1.0})
    got = _steps(r, [(6, 0), (4.9, 1), (5.5, 2), (6.0, 3)])
    assert got == [None, True, None, False], got


def test_min_hold_time():
    r = Rule({"name": "hot", "sensor": "t", "type": "above", "threshold": 30.0, "hold_ms": 5000})
    got = _steps(r, [(31, 0), (20, 1000), (20, 4999), (20, 5000)])
    assert got == [True, None, None, False], got
    got = _steps(r, [(31, 6000), (31, 10000), (20, 11000), (31, 12000)])
    assert got == [None, True, None, None], got  # 6000: last change at 5000 is held; 11000: clear held off
    assert r.active


def test_delay_before_firing():
    r = Rule({"name": "hot", "sensor": "t", "type": "above", "threshold": 30.0, "delay_ms": 2000})
    got = _steps(r, [(31, 0), (31, 1000), (29, 1500), (31, 2000), (31, 3999), (31, 4000)])
    assert got == [None, None, None, None, None, True], got


def test_rate_of_change():
    r = Rule({"name": "surge", "sensor": "t", "type": "rate", "threshold": 1.0, "direction": "rise"})
    got = _steps(r, [(20, 0), (20.5, 1000), (22, 2000), (22.2, 3000), (10, 4000)])
    assert got == [None, None, True, False, None], got
    f = Rule({"name": "drop", "sensor": "t", "type": "rate", "threshold": 1.0, "direction": "fall"})
    assert _steps(f, [(20, 0), (18, 1000)]) == [None, True]


def test_missing_sensor_fail_safe():
    r = Rule({"name": "hot", "sensor": "t", "type": "above", "threshold": 30.0, "fail_safe": "on",
              "missing_ms": 2000})
    got = _steps(r, [(25, 0), (None, 1000), (None, 2000), (None, 3000), (25, 4000)])
    assert got == [None, None, True, None, False], got
    k = Rule({"name": "hot", "sensor": "t", "type": "above", "threshold": 30.0})  # fail_safe keep
    assert _steps(k, [(31, 0), (None, 1000), (None, 99000)]) == [True, None, None] and k.active


def test_stale_missing_and_stuck():
    m = Rule({"name": "gone", "sensor": "t", "type": "stale", "missing_ms": 3000})
    got = _steps(m, [(None, 0), (None, 2999), (None, 3000), (21.0, 4000)])
    assert got == [None, None, True, False], got
    s = Rule({"name": "stuck", "sensor": "t", "type": "stale", "stuck_ms": 5000, "stuck_epsilon": 0.001})
    got = _steps(s, [(21.0, 0), (21.0, 4000), (21.0005, 5000), (21.0, 6000), (21.3, 7000)])
    assert got == [None, None, True, None, False], got


def test_actuator_priority_and_polarity():
    machine.reset_sim()
    pin = machine.Pin(26, machine.Pin.OUT)
    act = Actuator("heater", pin, active_high=False, idle=0)
    assert pin.value() == 1  # active-low output idles high
    rules = Rules([{"name": "cold", "sensor": "t", "type": "below", "threshold": 5, "actuator": "heater"},
                   {"name": "gone", "sensor": "t", "type": "stale", "missing_ms": 1000, "actuator": "heater",
                    "action": "off"}], {"t": "Cel"}, {"heater": act})
    cold, gone = rules.rules
    cold.step(4.0, 0)
    gone.step(4.0, 0)
    rules.drive()
    assert act.on == 1 and pin.value() == 0
    cold.step(None, 1000)
    gone.step(None, 1000)  # sensor lost: the fail-safe (stale) rule wins over the threshold rule
    rules.drive()
    assert gone.active and cold.active and act.on == 0 and pin.value() == 1


class _Probe:
    """A filter that notes the actuator pin level at the moment filtering starts."""

    def __init__(self, pin_id):
        self.pin_id = pin_id
        self.seen = []

    def update(self, v, now):
        self.seen.append((now, machine.pin_state(self.pin_id)))
        return v


def _node(series, rules, chain_specs=()):
    machine.reset_sim()
    clock = {"ms": 0}
    dev = sim_sensors.BME280Sim(lambda: series.value(clock["ms"] / 1000.0), lambda: 101325.0, lambda: 50.0)
    machine.attach_i2c(0, dev)
    from firmware.drivers.bme280 import BME280
    drv = BME280(machine.I2C(0))
    cfg = {"hw": {"actuators": {"fan": {"pin": 26, "active_high": True, "idle": 0}}},
           "sensors": [{"name": "temperature", "driver": "bme280", "unit": "Cel",
                        "filters": list(chain_specs)}], "rules": rules}
    recs = []
    node = Node.from_config(cfg, {"temperature": drv}, {"fan": machine.Pin(26, machine.Pin.OUT)},
                            on_record=lambda *a: recs.append(a))
    return node, clock, recs


def test_actuator_set_in_same_tick_as_crossing_sample():
    s = scenario.Series(seed=5, base=25.0, amplitude=10.0, period_s=200, noise=0.05)
    node, clock, recs = _node(s, [{"name": "hot", "sensor": "temperature", "type": "above", "threshold": 30.0,
                                   "hysteresis": 1.0, "actuator": "fan"}],
                              [{"type": "sliding_window_moving_average", "window_size": 10, "send_every": 10}])
    probe = _Probe(26)
    node.channels[0].chain.filters.insert(0, probe)
    crossing = None
    for i in range(200):
        clock["ms"] = i * 1000
        raw = s.value(i)
        node.sample(clock["ms"], 1000 + i)
        if crossing is None and raw > 30.0:
            crossing = i
            # Pin already set when sample() returns, and before the filters saw the value.
            assert machine.pin_state(26) == 1, i
            assert probe.seen[-1] == (clock["ms"], 1), probe.seen[-1]
    assert crossing is not None
    alerts = [r for r in recs if r[0] == "alert"]
    assert alerts[0][1] == "hot" and alerts[0][4] == 1000 + crossing, alerts[0]


def test_rules_match_scenario_ground_truth():
    # Reference model of hysteresis + hold computed from the scenario's own record of what the sensor saw.
    sc = scenario.Scenario({"temperature": scenario.Series(seed=9, base=29.0, amplitude=3.0, period_s=120,
                                                           noise=0.4)}, record=600)
    th, hy, hold = 30.0, 0.5, 3000
    machine.reset_sim()
    clock = {"ms": 0}
    dev = sim_sensors.BME280Sim(lambda: sc.read("temperature", clock["ms"] / 1000.0), lambda: 1e5, lambda: 50.0)
    machine.attach_i2c(0, dev)
    from firmware.drivers.bme280 import BME280
    cfg = {"hw": {"actuators": {"fan": {"pin": 26}}},
           "sensors": [{"name": "temperature", "driver": "bme280", "unit": "Cel"}],
           "rules": [{"name": "hot", "sensor": "temperature", "type": "above", "threshold": th, "hysteresis": hy,
                      "hold_ms": hold, "actuator": "fan"}]}
    node = Node.from_config(cfg, {"temperature": BME280(machine.I2C(0))}, {"fan": machine.Pin(26, machine.Pin.OUT)})
    pins = bytearray(600)
    for i in range(600):
        clock["ms"] = i * 500
        node.sample(clock["ms"], i)
        pins[i] = machine.pin_state(26)
    active, changed, want = False, None, bytearray(600)
    recs = sc.records
    assert len(recs) == 600
    for i in range(600):
        t_s, name, measured, truth, flags = recs[i]
        v = round(measured * 100) / 100.0  # the chip's 0.01 degC resolution
        now = int(t_s * 1000)
        c = 1 if v > th else (0 if v <= th - hy else -1)
        if c >= 0 and c != active and (changed is None or now - changed >= hold):
            active, changed = bool(c), now
        want[i] = 1 if active else 0
    diff = [i for i in range(600) if want[i] != pins[i]]
    assert not diff, "pin differs from reference at samples %r" % diff[:10]
    assert 0 < sum(pins) < 600  # the scenario really crossed both ways
    assert node.rules.rules[0].fired >= 3
