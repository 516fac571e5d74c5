# Node config merge + validation (runs on CPython and MicroPython).
import json

from shared import config as C

_HERE = __file__.rsplit("/", 1)[0] if "/" in __file__ else "."
BOARDS = _HERE + "/../../boards"


def _board(name):
    with open(BOARDS + "/" + name + ".json") as f:
        return json.load(f)


def _site(**over):
    s = {"node": {"id": "n1", "site": "s1", "board": "esp32_devkitc"},
         "sensors": [{"name": "temperature", "driver": "bme280", "field": "temperature", "unit": "Cel",
                      "filters": [{"type": "median", "window_size": 5, "send_every": 1},
                                  {"type": "or", "filters": [{"type": "delta", "value": 0.1},
                                                             {"type": "heartbeat", "interval_ms": 60000}]}]},
                     {"name": "probe", "driver": "ntc", "pin": 34}],
         "rules": [{"name": "hot", "sensor": "temperature", "type": "above", "threshold": 30, "hysteresis": 1,
                    "hold_ms": 1000, "actuator": "relay"},
                   {"name": "gone", "sensor": "temperature", "type": "stale", "missing_ms": 5000,
                    "actuator": "relay", "action": "off"}]}
    for k in over:
        s[k] = over[k]
    return s


def _cfg(**over):
    return C.merge(C.DEFAULTS, _board("esp32_devkitc"), _site(**over))


def _rejects(cfg, field):
    try:
        C.validate_config(cfg)
    except ValueError as e:
        msg = str(e)
        assert msg.startswith(field + ":"), "expected %s, got %s" % (field, msg)
        return msg
    raise AssertionError("accepted invalid config (expected error at %s)" % field)


def test_boards_merge_and_validate():
    for name, fs in (("esp32_devkitc", 2097152), ("pico_w", 848 * 1024), ("esp32_s3", 2097152)):
        b = _board(name)
        cfg = C.validate_config(C.merge(C.DEFAULTS, b, {"node": {"id": "n1", "site": "s1", "board": name}}))
        assert cfg["hw"]["fs_bytes"] == fs, (name, cfg["hw"]["fs_bytes"])
        assert "relay" in cfg["hw"]["actuators"] and cfg["hw"]["i2c"][0]["id"] == 0
        assert "wifi" in cfg["hw"]["radios"] and "ble" in cfg["hw"]["radios"]
        assert [s["name"] for s in cfg["sensors"]] == ["temperature", "humidity", "pressure"]


def test_full_site_config_is_valid():
    cfg = C.validate_config(_cfg())
    assert cfg["node"]["id"] == "n1" and cfg["mqtt"]["port"] == 1883


def test_merge_is_deep_and_copies():
    a = {"x": {"y": 1, "z": [1]}, "k": 1}
    b = {"x": {"y": 2}, "k": None}
    m = C.merge(a, b)
    assert m == {"x": {"y": 2, "z": [1]}, "k": None}
    m["x"]["z"].append(2)
    assert a["x"]["z"] == [1] and a["x"]["y"] == 1


def test_unknown_filter_type_names_the_field():
    s = _site()
    s["sensors"][0]["filters"].append({"type": "lambda", "code": "x"})
    _rejects(C.merge(C.DEFAULTS, _board("esp32_devkitc"), s), "sensors[0].filters[2].type")


def test_filter_params_checked():
    s = _site()
    s["sensors"][0]["filters"][0]["window_size"] = 1000
    _rejects(C.merge(C.DEFAULTS, _board("esp32_devkitc"), s), "sensors[0].filters[0].window_size")
    s = _site()
    s["sensors"][0]["filters"][1]["filters"][0] = {"type": "delta"}
    _rejects(C.merge(C.DEFAULTS, _board("esp32_devkitc"), s), "sensors[0].filters[1].filters[0]")
    s = _site()
    s["sensors"][0]["filters"] = [{"type": "clamp", "min": 5, "max": 1}]
    _rejects(C.merge(C.DEFAULTS, _board("esp32_devkitc"), s), "sensors[0].filters[0].min")
    s = _site()
    s["sensors"][0]["filters"] = [{"type": "offset", "value": "2"}]
    _rejects(C.merge(C.DEFAULTS, _board("esp32_devkitc"), s), "sensors[0].filters[0].value")


def test_ranges_and_types():
    _rejects(_cfg(sample_ms=5), "sample_ms")
    _rejects(_cfg(sample_ms=1.5), "sample_ms")
    _rejects(_cfg(version="3"), "version")
    c = _cfg()
    c["mqtt"]["port"] = 70000
    _rejects(c, "mqtt.port")
    c = _cfg()
    c["ble"]["bind_key"] = "zz" * 16
    _rejects(c, "ble.bind_key")
    c = _cfg()
    c["log"]["capacity_bytes"] = 10 ** 9
    _rejects(c, "log.capacity_bytes")
    c = _cfg()
    c["node"]["id"] = "bad id/+"
    _rejects(c, "node.id")
    _rejects(_cfg(watchdog_ms=1500), "watchdog_ms")


def test_rules_reference_sensors_and_actuators():
    s = _site()
    s["rules"][0]["sensor"] = "nope"
    _rejects(C.merge(C.DEFAULTS, _board("esp32_devkitc"), s), "rules[0].sensor")
    s = _site()
    s["rules"][0]["actuator"] = "valve"
    _rejects(C.merge(C.DEFAULTS, _board("esp32_devkitc"), s), "rules[0].actuator")
    s = _site()
    s["rules"][1] = {"name": "gone", "sensor": "temperature", "type": "stale"}
    _rejects(C.merge(C.DEFAULTS, _board("esp32_devkitc"), s), "rules[1]")
    s = _site()
    s["rules"][0]["threshold"] = float("nan")
    _rejects(C.merge(C.DEFAULTS, _board("esp32_devkitc"), s), "rules[0].threshold")


def test_unknown_and_duplicate_fields():
    _rejects(_cfg(colour="red"), "colour")
    s = _site()
    s["sensors"][1]["name"] = "temperature"
    _rejects(C.merge(C.DEFAULTS, _board("esp32_devkitc"), s), "sensors[1].name")
    s = _site()
    s["sensors"][0]["driver"] = "dht22"
    _rejects(C.merge(C.DEFAULTS, _board("esp32_devkitc"), s), "sensors[0].driver")


def test_sht4x_sensor():
    s = _site()
    s["sensors"].append({"name": "rh2", "driver": "sht4x", "field": "humidity", "addr": 0x44})
    C.validate_config(C.merge(C.DEFAULTS, _board("esp32_devkitc"), s))
    s["sensors"][-1]["addr"] = 0x76
    _rejects(C.merge(C.DEFAULTS, _board("esp32_devkitc"), s), "sensors[2].addr")
    s["sensors"][-1] = {"name": "rh2", "driver": "sht4x", "field": "pressure"}
    _rejects(C.merge(C.DEFAULTS, _board("esp32_devkitc"), s), "sensors[2].field")


def test_size_limit():
    s = _site()
    s["wifi"] = {"ssid": "x", "password": "y"}
    s["sensors"] = [{"name": "t%d" % i, "driver": "ntc", "pin": 34,
                     "filters": [{"type": "calibrate_linear", "points": [[j, j * 1.5] for j in range(16)]}] * 16}
                    for i in range(16)]
    _rejects(C.merge(C.DEFAULTS, _board("esp32_devkitc"), s), "config")


def test_not_a_dict():
    _rejects([1, 2], "config")
    c = _cfg()
    c["mqtt"] = "broker"
    _rejects(c, "mqtt")


def test_uplink_section_is_one_table_for_node_and_gateway():
    # Every key the node applies is accepted (qos, retry_ms and max_packet used to pass one check and fail the other).
    ok = {"min_pack": 5, "max_pack": 40, "window": 2, "linger_ms": 0, "ack_timeout_ms": 5000, "backoff_min_ms": 50,
          "backoff_max_ms": 60000, "retry_ms": 2000, "max_packet": 4096, "qos": 0}
    assert C.validate_config(_cfg(uplink=ok))["uplink"]["qos"] == 0
    for bad, field in (({"max_pack": 0}, "uplink.max_pack"), ({"foo": 1}, "uplink.foo"), ({"window": True}, "uplink.window"),
                       ({"window": 33}, "uplink.window"), ({"qos": 2}, "uplink.qos"), ({"max_packet": 100}, "uplink.max_packet"),
                       ({"min_pack": 30, "max_pack": 20}, "uplink.min_pack"), ({"max_pack": 5}, "uplink.min_pack"),
                       ({"backoff_min_ms": 500, "backoff_max_ms": 100}, "uplink.backoff_min_ms")):
        _rejects(_cfg(uplink=bad), field)
    _rejects(_cfg(uplink=[]), "uplink")
