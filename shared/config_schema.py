"""Field checkers for the node config (used by shared/config.py; pure, both runtimes).

Every failure raises ValueError("field.path: reason").
"""

try:
    from micropython import const
except ImportError:
    def const(x):
        return x

MAX_FILTERS = const(16)
MAX_WINDOW = const(64)
DRIVERS = {"bme280": ("temperature", "pressure", "humidity"), "sht4x": ("temperature", "humidity"),
           "ntc": ("temperature",)}

_WINDOW = ("median", "quantile", "min", "max", "sliding_window_moving_average")
_NAME_CH = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.:"
_HEX = "0123456789abcdefABCDEF"


def _j(path, k):
    return path + "." + k if path else k


def _err(path, reason):
    raise ValueError(path + ": " + reason)


def _is_num(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _num(d, k, path, lo=None, hi=None, required=True, default=None, integer=False):
    if k not in d or d[k] is None:
        if required:
            _err(_j(path, k), "required")
        return default
    v = d[k]
    if integer:
        if not isinstance(v, int) or isinstance(v, bool):
            _err(_j(path, k), "must be an integer")
    elif not _is_num(v):
        _err(_j(path, k), "must be a number")
    if v != v or v in (float("inf"), float("-inf")):
        _err(_j(path, k), "must be finite")
    if lo is not None and v < lo:
        _err(_j(path, k), "must be >= " + str(lo))
    if hi is not None and v > hi:
        _err(_j(path, k), "must be <= " + str(hi))
    return v


def _int(d, k, path, lo=None, hi=None, required=True, default=None):
    return _num(d, k, path, lo, hi, required, default, True)


def _str(d, k, path, maxlen=64, required=True, nullable=False, minlen=0):
    if k not in d or d[k] is None:
        if required and not nullable:
            _err(_j(path, k), "required")
        return None
    v = d[k]
    if not isinstance(v, str):
        _err(_j(path, k), "must be a string")
    if len(v) > maxlen:
        _err(_j(path, k), "longer than " + str(maxlen))
    if len(v) < minlen:
        _err(_j(path, k), "shorter than " + str(minlen))
    return v


def _bool(d, k, path, default=False):
    v = d.get(k, default)
    if v is not True and v is not False:
        _err(_j(path, k), "must be true or false")
    return v


def _dict(d, k, path):
    v = d.get(k)
    if not isinstance(v, dict):
        _err(_j(path, k), "must be an object")
    return v


def _known(d, keys, path):
    for k in d:
        if k not in keys:
            _err(_j(path, str(k)), "unknown field")


def _name(v, path):
    if not isinstance(v, str) or not v or len(v) > 32:
        _err(path, "must be a name of 1-32 characters")
    for ch in v:
        if ch not in _NAME_CH:
            _err(path, "invalid character " + repr(ch))
    return v


def _hexkey(d, k, path, nbytes_min, nbytes_max):
    v = d.get(k)
    if v is None:
        return None
    if not isinstance(v, str) or len(v) % 2 or not nbytes_min * 2 <= len(v) <= nbytes_max * 2:
        _err(_j(path, k), "must be hex of %d-%d bytes" % (nbytes_min, nbytes_max))
    for ch in v:
        if ch not in _HEX:
            _err(_j(path, k), "must be hex")
    return v


_FILTER_KEYS = {
    "offset": ("value",), "multiply": ("value",), "calibrate_linear": ("points", "method"),
    "clamp": ("min", "max", "ignore_out_of_range"), "filter_out": ("values", "nan"),
    "median": ("window_size", "send_every", "send_first_at"),
    "quantile": ("window_size", "send_every", "send_first_at", "quantile"),
    "min": ("window_size", "send_every", "send_first_at"), "max": ("window_size", "send_every", "send_first_at"),
    "sliding_window_moving_average": ("window_size", "send_every", "send_first_at"),
    "exponential_moving_average": ("alpha", "send_every", "send_first_at"),
    "throttle": ("interval_ms",), "throttle_average": ("interval_ms",), "heartbeat": ("interval_ms",),
    "delta": ("value", "percent"), "debounce": ("time_ms",), "timeout": ("time_ms", "value"),
    "skip_initial": ("count",), "or": ("filters",),
}


def validate_filter(f, path, depth=0):
    """Check one filter spec (ValueError naming the field)."""
    if isinstance(f, list):
        if depth > 2 or not f or len(f) > MAX_FILTERS:
            _err(path, "sub-chain must have 1-%d filters (nesting <= 2)" % MAX_FILTERS)
        for i in range(len(f)):
            validate_filter(f[i], path + "[" + str(i) + "]", depth + 1)
        return
    if not isinstance(f, dict):
        _err(path, "must be an object")
    t = f.get("type")
    if t not in _FILTER_KEYS:
        _err(path + ".type", "unknown filter type " + repr(t))
    _known(f, ("type",) + _FILTER_KEYS[t], path)
    if t in ("offset", "multiply"):
        _num(f, "value", path)
    elif t == "calibrate_linear":
        pts = f.get("points")
        if not isinstance(pts, list) or not 2 <= len(pts) <= 16:
            _err(path + ".points", "must be a list of 2-16 [from, to] pairs")
        for i in range(len(pts)):
            p = pts[i]
            if not isinstance(p, (list, tuple)) or len(p) != 2 or not _is_num(p[0]) or not _is_num(p[1]):
                _err(path + ".points[" + str(i) + "]", "must be [from, to] numbers")
        if f.get("method", "least_squares") not in ("least_squares", "exact"):
            _err(path + ".method", "must be least_squares or exact")
        xs = [p[0] for p in pts]
        if min(xs) == max(xs):
            _err(path + ".points", "need two different 'from' values")
    elif t == "clamp":
        lo = _num(f, "min", path, required=False)
        hi = _num(f, "max", path, required=False)
        if lo is not None and hi is not None and lo > hi:
            _err(path + ".min", "greater than max")
        _bool(f, "ignore_out_of_range", path)
    elif t == "filter_out":
        vs = f.get("values", [])
        if not isinstance(vs, list) or len(vs) > 16 or not all(_is_num(x) for x in vs):
            _err(path + ".values", "must be a list of up to 16 numbers")
        _bool(f, "nan", path)
    elif t in _WINDOW:
        _int(f, "window_size", path, 1, MAX_WINDOW, required=False, default=5)
        e = _int(f, "send_every", path, 1, 100000, required=False, default=5)
        _int(f, "send_first_at", path, 1, e, required=False, default=1)
        if t == "quantile":
            _num(f, "quantile", path, 0, 1, required=False)
    elif t == "exponential_moving_average":
        a = _num(f, "alpha", path, 0, 1, required=False, default=0.1)
        if a <= 0:
            _err(path + ".alpha", "must be > 0")
        e = _int(f, "send_every", path, 1, 100000, required=False, default=15)
        _int(f, "send_first_at", path, 1, e, required=False, default=1)
    elif t == "throttle":
        _int(f, "interval_ms", path, 0, 86400000)
    elif t in ("throttle_average", "heartbeat"):
        _int(f, "interval_ms", path, 1, 86400000)
    elif t == "delta":
        v = _num(f, "value", path, required=False)
        p = _num(f, "percent", path, required=False)
        if (v is None) == (p is None):
            _err(path, "give exactly one of value, percent")
        if (v if v is not None else p) <= 0:
            _err(path + (".value" if v is not None else ".percent"), "must be > 0")
    elif t == "debounce":
        _int(f, "time_ms", path, 1, 86400000)
    elif t == "timeout":
        _int(f, "time_ms", path, 1, 86400000)
        _num(f, "value", path, required=False)
    elif t == "skip_initial":
        _int(f, "count", path, 0, 100000)
    elif t == "or":
        br = f.get("filters")
        if depth > 2 or not isinstance(br, list) or not 1 <= len(br) <= 8:
            _err(path + ".filters", "must be a list of 1-8 filters (nesting <= 2)")
        for i in range(len(br)):
            validate_filter(br[i], path + ".filters[" + str(i) + "]", depth + 1)


_RULE_KEYS = ("name", "sensor", "type", "source", "threshold", "hysteresis", "delay_ms", "hold_ms",
              "direction", "missing_ms", "stuck_ms", "stuck_epsilon", "actuator", "action", "fail_safe",
              "severity")


def _validate_rule(r, path, sensors, actuators):
    if not isinstance(r, dict):
        _err(path, "must be an object")
    _known(r, _RULE_KEYS, path)
    _name(r.get("name"), path + ".name")
    if r.get("sensor") not in sensors:
        _err(path + ".sensor", "no sensor named " + repr(r.get("sensor")))
    t = r.get("type")
    if t not in ("above", "below", "rate", "stale"):
        _err(path + ".type", "must be above, below, rate or stale")
    if r.get("source", "raw") not in ("raw", "filtered"):
        _err(path + ".source", "must be raw or filtered")
    if t != "stale":
        _num(r, "threshold", path, -1e9, 1e9)
        _num(r, "hysteresis", path, 0, 1e9, required=False)
    if t == "rate" and r.get("direction", "both") not in ("rise", "fall", "both"):
        _err(path + ".direction", "must be rise, fall or both")
    for k in ("delay_ms", "hold_ms", "missing_ms", "stuck_ms"):
        _int(r, k, path, 0, 86400000, required=False)
    _num(r, "stuck_epsilon", path, 0, 1e9, required=False)
    if t == "stale" and not r.get("missing_ms") and not r.get("stuck_ms"):
        _err(path, "stale rule needs missing_ms or stuck_ms")
    a = r.get("actuator")
    if a is not None and a not in actuators:
        _err(path + ".actuator", "no actuator named " + repr(a) + " on this board")
    if r.get("action", "on") not in ("on", "off"):
        _err(path + ".action", "must be on or off")
    if r.get("fail_safe", "keep") not in ("on", "off", "keep"):
        _err(path + ".fail_safe", "must be on, off or keep")
    if r.get("severity", "critical") not in ("critical", "warning", "info"):
        _err(path + ".severity", "must be critical, warning or info")


def _validate_sensor(s, path):
    if not isinstance(s, dict):
        _err(path, "must be an object")
    _known(s, ("name", "driver", "field", "unit", "filters", "addr", "bus", "pin", "r_fixed", "r0", "t0_c",
               "beta", "oversample"), path)
    _name(s.get("name"), path + ".name")
    drv = s.get("driver")
    if drv not in DRIVERS:
        _err(path + ".driver", "unknown driver " + repr(drv))
    fld = s.get("field", DRIVERS[drv][0])
    if fld not in DRIVERS[drv]:
        _err(path + ".field", "driver " + drv + " has no field " + repr(fld))
    _str(s, "unit", path, 8, required=False)
    if drv == "bme280":
        _int(s, "addr", path, 0x76, 0x77, required=False)
        _int(s, "bus", path, 0, 3, required=False)
    elif drv == "sht4x":
        _int(s, "addr", path, 0x44, 0x46, required=False)
        _int(s, "bus", path, 0, 3, required=False)
    else:
        _int(s, "pin", path, 0, 64)
        for k in ("r_fixed", "r0", "beta"):
            _num(s, k, path, 1, 1e7, required=False)
        _num(s, "t0_c", path, -50, 150, required=False)
        _int(s, "oversample", path, 1, 64, required=False)
    fs = s.get("filters", [])
    if not isinstance(fs, list) or len(fs) > MAX_FILTERS:
        _err(path + ".filters", "must be a list of up to %d filters" % MAX_FILTERS)
    for i in range(len(fs)):
        validate_filter(fs[i], path + ".filters[" + str(i) + "]")


# Every key the node applies (firmware/links.py, firmware/uplink.reconfigure), with the ranges it can honour:
# the gateway's twin and the node check pushes against this one table.
_UPLINK = (("min_pack", 1, 200), ("max_pack", 1, 200), ("window", 1, 32), ("linger_ms", 0, 600000),
           ("ack_timeout_ms", 100, 600000), ("backoff_min_ms", 10, 600000), ("backoff_max_ms", 10, 3600000),
           ("retry_ms", 100, 600000), ("max_packet", 256, 65536), ("qos", 0, 1))


def _validate_uplink(up):
    if not isinstance(up, dict):
        _err("uplink", "must be an object")
    _known(up, [k[0] for k in _UPLINK], "uplink")
    for k, lo, hi in _UPLINK:
        _int(up, k, "uplink", lo, hi, required=False)
    if up.get("min_pack", 10) > up.get("max_pack", 50):
        _err("uplink.min_pack", "greater than max_pack")
    if up.get("backoff_min_ms", 10) > up.get("backoff_max_ms", 3600000):
        _err("uplink.backoff_min_ms", "greater than backoff_max_ms")
