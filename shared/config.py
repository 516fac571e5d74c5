"""Node configuration: defaults, board + site merge, pure validation (both runtimes).

    cfg = validate_config(merge(DEFAULTS, board, site))   # raises ValueError("field.path: reason")

A board file (boards/<name>.json) and a site file are config fragments of the
same shape; dicts merge key by key, lists and scalars replace. Used by the
firmware (boot, pushed configs) and the gateway (before pushing a config).
"""

from . import cbor
from .config_schema import (_err, _int, _num, _str, _bool, _dict, _known, _name, _hexkey, _validate_rule,
                                  _validate_sensor, _validate_uplink)
from .config_schema import DRIVERS, MAX_FILTERS, MAX_WINDOW, validate_filter  # noqa: F401 (public API)

try:
    from micropython import const
except ImportError:
    def const(x):
        return x

MAX_CONFIG_BYTES = const(8192)
from .topics import MAX_PUSH_BYTES  # noqa: E402,F401 (public API: the push size limit)
MAX_SENSORS = const(16)
MAX_RULES = const(16)

DEFAULTS = {
    "version": 1,
    "node": {"id": "node1", "site": "site1", "board": "esp32_devkitc"},
    "sample_ms": 1000,
    "watchdog_ms": 8000,
    "deepsleep_ms": 0,
    "awake_ms": 0,
    "wifi": {"ssid": "", "password": ""},
    "mqtt": {"host": "127.0.0.1", "port": 1883, "keepalive": 60, "user": None, "password": None},
    "hw": {
        "i2c": [{"id": 0, "scl": 22, "sda": 21, "freq": 400000}],
        "actuators": {},
        "fs_bytes": 2097152,
        "radios": ["wifi", "ble"],
    },
    "sensors": [],
    "rules": [],
    "log": {"capacity_bytes": 262144, "segment_bytes": 16384, "sync_every": 32, "sync_ms": 30000},
    "ble": {"enabled": False, "bind_key": None, "interval_ms": 1000},
    "auth_key": None,
    "ntp": {"enabled": True, "host": "pool.ntp.org", "interval_s": 3600},
}

# Top-level sections other components own; validated there, allowed here.
EXTRA_SECTIONS = ("uplink", "sim", "state_ms", "fw")



def merge(*layers):
    """Deep-merge dict layers left to right (later wins; lists replace); inputs untouched."""
    out = {}
    for layer in layers:
        if layer:
            out = _merge2(out, layer)
    return out


def _merge2(a, b):
    r = dict(a)
    for k in b:
        v = b[k]
        if isinstance(v, dict) and isinstance(r.get(k), dict):
            r[k] = _merge2(r[k], v)
        else:
            r[k] = _copy(v)
    return r


def _copy(v):
    if isinstance(v, dict):
        return {k: _copy(v[k]) for k in v}
    if isinstance(v, list):
        return [_copy(x) for x in v]
    return v


def _validate_power(hw):
    # power source and optional battery gauge (placement inputs) (ADC pin behind a divider), reported in `state`
    if hw.get("power", "usb") not in ("usb", "battery", "mains"):
        _err("hw.power", "must be usb, battery or mains")
    b = hw.get("battery")
    if b is not None:
        p = "hw.battery"
        _known(_dict(hw, "battery", "hw"), ("pin", "divider", "empty_mv", "full_mv"), p)
        _int(b, "pin", p, 0, 64)
        _num(b, "divider", p, 1, 20, required=False)
        if _int(b, "empty_mv", p, 500, 60000, False, 3300) >= _int(b, "full_mv", p, 500, 60000, False, 4200):
            _err(p + ".empty_mv", "must be below full_mv")


def validate_config(cfg):
    """Return cfg if valid, else raise ValueError('field.path: reason')."""
    if not isinstance(cfg, dict):
        _err("config", "must be an object")
    try:
        size = len(cbor.dumps(cfg))
    except (ValueError, TypeError) as e:
        _err("config", "not encodable: " + str(e))
    if size > MAX_CONFIG_BYTES:
        _err("config", "%d bytes, over the %d byte limit" % (size, MAX_CONFIG_BYTES))
    _known(cfg, tuple(DEFAULTS) + EXTRA_SECTIONS, "")
    _int(cfg, "version", "", 0, 2147483647)
    node = _dict(cfg, "node", "")
    _known(node, ("id", "site", "board"), "node")
    _name(node.get("id"), "node.id")
    _name(node.get("site"), "node.site")
    _str(node, "board", "node", 32)
    _int(cfg, "sample_ms", "", 10, 3600000)
    _int(cfg, "watchdog_ms", "", 0, 120000, required=False)
    if cfg.get("watchdog_ms") and cfg["watchdog_ms"] < 2 * cfg["sample_ms"]:
        _err("watchdog_ms", "must be at least twice sample_ms (or 0 = off)")
    _int(cfg, "deepsleep_ms", "", 0, 86400000, required=False)
    _int(cfg, "awake_ms", "", 0, 600000, required=False)
    w = _dict(cfg, "wifi", "")
    _known(w, ("ssid", "password"), "wifi")
    _str(w, "ssid", "wifi", 32)
    _str(w, "password", "wifi", 64)
    m = _dict(cfg, "mqtt", "")
    _known(m, ("host", "port", "keepalive", "user", "password", "cafile", "certfile", "keyfile"), "mqtt")
    _str(m, "host", "mqtt", 253, minlen=1)
    _int(m, "port", "mqtt", 1, 65535)
    _int(m, "keepalive", "mqtt", 0, 65535)
    _str(m, "user", "mqtt", 64, nullable=True)
    _str(m, "password", "mqtt", 128, nullable=True)
    for k in ("cafile", "certfile", "keyfile"):  # TLS to the broker (files on the node's filesystem)
        _str(m, k, "mqtt", 128, nullable=True)
    if bool(m.get("certfile")) != bool(m.get("keyfile")):
        _err("mqtt.keyfile", "certfile and keyfile go together")
    if m.get("certfile") and not m.get("cafile"):
        _err("mqtt.cafile", "a client certificate needs the CA to check the broker")
    hw = _dict(cfg, "hw", "")
    _known(hw, ("i2c", "actuators", "fs_bytes", "radios", "mcu", "led", "adc_pins", "heap_bytes", "power",
                "battery"), "hw")
    _validate_power(hw)
    buses = hw.get("i2c", [])
    if not isinstance(buses, list) or len(buses) > 4:
        _err("hw.i2c", "must be a list of up to 4 buses")
    for i in range(len(buses)):
        p = "hw.i2c[" + str(i) + "]"
        if not isinstance(buses[i], dict):
            _err(p, "must be an object")
        _known(buses[i], ("id", "scl", "sda", "freq"), p)
        _int(buses[i], "id", p, 0, 3)
        _int(buses[i], "scl", p, 0, 64)
        _int(buses[i], "sda", p, 0, 64)
        _int(buses[i], "freq", p, 10000, 1000000, required=False)
    acts = hw.get("actuators", {})
    if not isinstance(acts, dict) or len(acts) > 8:
        _err("hw.actuators", "must be an object of up to 8 actuators")
    for k in acts:
        p = "hw.actuators." + str(k)
        _name(k, p)
        a = acts[k]
        if not isinstance(a, dict):
            _err(p, "must be an object")
        _known(a, ("pin", "active_high", "idle"), p)
        _int(a, "pin", p, 0, 64)
        _bool(a, "active_high", p, True)
        _int(a, "idle", p, 0, 1, required=False)
    _int(hw, "fs_bytes", "hw", 65536, 1 << 30)
    sensors = cfg.get("sensors")
    if not isinstance(sensors, list) or len(sensors) > MAX_SENSORS:
        _err("sensors", "must be a list of up to %d sensors" % MAX_SENSORS)
    names = []
    for i in range(len(sensors)):
        _validate_sensor(sensors[i], "sensors[" + str(i) + "]")
        if sensors[i]["name"] in names:
            _err("sensors[" + str(i) + "].name", "duplicate name")
        names.append(sensors[i]["name"])
    rules = cfg.get("rules")
    if not isinstance(rules, list) or len(rules) > MAX_RULES:
        _err("rules", "must be a list of up to %d rules" % MAX_RULES)
    rnames = []
    for i in range(len(rules)):
        _validate_rule(rules[i], "rules[" + str(i) + "]", names, acts)
        if rules[i]["name"] in rnames or rules[i]["name"] in names:
            _err("rules[" + str(i) + "].name", "duplicate name")
        rnames.append(rules[i]["name"])
    lg = _dict(cfg, "log", "")
    _known(lg, ("capacity_bytes", "segment_bytes", "sync_every", "sync_ms"), "log")
    cap = _int(lg, "capacity_bytes", "log", 8192, hw["fs_bytes"] * 9 // 10)
    _int(lg, "segment_bytes", "log", 1024, cap // 2)
    _int(lg, "sync_every", "log", 1, 100000)
    _int(lg, "sync_ms", "log", 0, 86400000)
    b = _dict(cfg, "ble", "")
    _known(b, ("enabled", "bind_key", "interval_ms"), "ble")
    _bool(b, "enabled", "ble")
    _hexkey(b, "bind_key", "ble", 16, 16)
    _int(b, "interval_ms", "ble", 20, 10240)
    _hexkey(cfg, "auth_key", "", 16, 64)
    _int(cfg, "state_ms", "", 100, 86400000, required=False)
    n = _dict(cfg, "ntp", "")
    _known(n, ("enabled", "host", "interval_s"), "ntp")
    _bool(n, "enabled", "ntp")
    _str(n, "host", "ntp", 253, minlen=1)
    _int(n, "interval_s", "ntp", 60, 604800)
    up = cfg.get("uplink")
    if up is not None:
        _validate_uplink(up)
    return cfg
