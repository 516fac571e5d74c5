"""ESPHome-style sensor filters (pure): `update(value, now_ms) -> value | None`.

None stops the chain. NaN is a value (a missing reading can be fed as NaN).
Time-driven filters (heartbeat, throttle_average, debounce, timeout) also
have `tick(now_ms) -> value | None`, which the node calls every iteration:
that is where ESPHome's timers fire. Windows are preallocated `array('f')`
rings, so memory per filter is constant.
"""

from array import array

from .windows import Median, Quantile, Min, Max, SlidingWindowMovingAverage
from .timed import ThrottleAverage, Heartbeat, Debounce, Timeout

NAN = float("nan")


def _isnan(v):
    return v != v


class Offset:
    """v + value."""

    def __init__(self, value=0.0):
        self.k = value

    def update(self, v, now):
        return v + self.k


class Multiply:
    """v * value."""

    def __init__(self, value=1.0):
        self.k = value

    def update(self, v, now):
        return v * self.k


class CalibrateLinear:
    """Least-squares line through [from, to] points, or exact piecewise interpolation."""

    def __init__(self, points, method="least_squares"):
        self.exact = method == "exact"
        pts = sorted([(float(a), float(b)) for a, b in points])
        if self.exact:
            self.xs = array("f", [p[0] for p in pts])
            self.ys = array("f", [p[1] for p in pts])
        else:
            n = len(pts)
            sx = sy = sxx = sxy = 0.0
            for x, y in pts:
                sx += x
                sy += y
                sxx += x * x
                sxy += x * y
            d = n * sxx - sx * sx
            self.m = (n * sxy - sx * sy) / d if d else 1.0
            self.c = (sy - self.m * sx) / n

    def update(self, v, now):
        if not self.exact:
            return self.m * v + self.c
        xs, ys = self.xs, self.ys
        i = 1
        n = len(xs)
        # Extrapolate beyond the ends with the first/last segment, like ESPHome's segments.
        while i < n - 1 and v > xs[i]:
            i += 1
        x0, x1, y0, y1 = xs[i - 1], xs[i], ys[i - 1], ys[i]
        return y0 + (v - x0) * (y1 - y0) / (x1 - x0) if x1 != x0 else y0


class Clamp:
    """Limit to [min, max]; with ignore_out_of_range, drop values outside instead."""

    def __init__(self, min=None, max=None, ignore_out_of_range=False):
        self.lo = -1e38 if min is None else min
        self.hi = 1e38 if max is None else max
        self.drop = ignore_out_of_range

    def update(self, v, now):
        if _isnan(v):
            return v
        if v < self.lo:
            return None if self.drop else self.lo
        if v > self.hi:
            return None if self.drop else self.hi
        return v


class FilterOut:
    """Drop listed values (and NaN when nan=True)."""

    def __init__(self, values=(), nan=False):
        self.values = array("f", values)
        self.nan = nan

    def update(self, v, now):
        if _isnan(v):
            return None if self.nan else v
        for x in self.values:
            if abs(v - x) <= 1e-6 * (abs(x) + 1.0):
                return None
        return v


class ExponentialMovingAverage:
    """acc = alpha * v + (1 - alpha) * acc (first value seeds it); ESPHome send_every cadence."""

    def __init__(self, alpha=0.1, send_every=15, send_first_at=1):
        self.alpha = alpha
        self.acc = NAN
        self.every = send_every
        self.at = send_every - send_first_at

    def update(self, v, now):
        if v == v:
            self.acc = v if self.acc != self.acc else self.alpha * v + (1.0 - self.alpha) * self.acc
        out = v if v != v else self.acc
        self.at += 1
        if self.at >= self.every:
            self.at = 0
            return out
        return None


class Throttle:
    """At most one value per interval (the first passes)."""

    def __init__(self, interval_ms=1000):
        self.ms = interval_ms
        self.last = None

    def update(self, v, now):
        if self.last is None or now - self.last >= self.ms:
            self.last = now
            return v
        return None


class Delta:
    """Pass only changes of at least `value` (absolute) or `percent` of the last passed value."""

    def __init__(self, value=None, percent=None):
        self.d = value
        self.pct = percent
        self.last = NAN

    def update(self, v, now):
        last = self.last
        if v != v:
            if last != last:
                return None
            self.last = v
            return v
        if last != last:
            self.last = v
            return v
        lim = abs(last) * self.pct / 100.0 if self.pct is not None else self.d
        if abs(v - last) >= lim:
            self.last = v
            return v
        return None


class SkipInitial:
    """Drop the first `count` values (sensor warm-up)."""

    def __init__(self, count=1):
        self.left = count

    def update(self, v, now):
        if self.left > 0:
            self.left -= 1
            return None
        return v


class Or:
    """Feed every branch; forward the first branch output (ESPHome `or`)."""

    def __init__(self, branches):
        self.branches = branches

    def update(self, v, now):
        out = None
        for b in self.branches:
            r = b.update(v, now)
            if out is None and r is not None:
                out = r
        return out

    def tick(self, now):
        out = None
        for b in self.branches:
            r = b.tick(now)
            if out is None and r is not None:
                out = r
        return out


class Chain:
    """Filters in order; update() returns the output or None; tick() drives timers."""

    def __init__(self, filters):
        self.filters = filters
        self.timed = [i for i in range(len(filters)) if hasattr(filters[i], "tick")]

    def update(self, v, now, start=0):
        fs = self.filters
        for i in range(start, len(fs)):
            v = fs[i].update(v, now)
            if v is None:
                return None
        return v

    def tick(self, now):
        # A timer firing at filter i feeds the rest of the chain, like ESPHome's output().
        for i in self.timed:
            v = self.filters[i].tick(now)
            if v is not None:
                return self.update(v, now, i + 1)
        return None


TYPES = {
    "offset": Offset,
    "multiply": Multiply,
    "calibrate_linear": CalibrateLinear,
    "clamp": Clamp,
    "filter_out": FilterOut,
    "median": Median,
    "quantile": Quantile,
    "min": Min,
    "max": Max,
    "sliding_window_moving_average": SlidingWindowMovingAverage,
    "exponential_moving_average": ExponentialMovingAverage,
    "throttle": Throttle,
    "throttle_average": ThrottleAverage,
    "heartbeat": Heartbeat,
    "delta": Delta,
    "debounce": Debounce,
    "timeout": Timeout,
    "skip_initial": SkipInitial,
}


def build(spec):
    """One filter from a config dict {"type": ..., params...} (validated by shared.config)."""
    if isinstance(spec, list):
        return Chain([build(s) for s in spec])
    t = spec["type"]
    if t == "or":
        return Or([build(b) if isinstance(b, list) else Chain([build(b)]) for b in spec["filters"]])
    cls = TYPES.get(t)
    if cls is None:
        raise ValueError("unknown filter type: " + str(t))
    kw = {}
    for k in spec:
        if k != "type":
            kw[k] = spec[k]
    return cls(**kw)


def build_chain(specs):
    """A Chain from a list of filter config dicts."""
    return Chain([build(s) for s in specs])
