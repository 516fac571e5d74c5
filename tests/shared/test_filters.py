# Filter chain vs hand-computed values and ESPHome semantics (CPython and the MicroPython unix port).
from shared import filters as F

NAN = float("nan")


def _close(a, b, tol=1e-4):
    if a is None or b is None:
        return a is b
    if a != a or b != b:
        return a != a and b != b
    return abs(a - b) <= tol * (1 + abs(b))


def _run(f, pairs):
    # pairs: (value, now_ms) -> outputs
    return [f.update(v, t) for v, t in pairs]


def _eq(got, want):
    if len(got) != len(want) or not all(_close(g, w) for g, w in zip(got, want)):
        raise AssertionError("got %r want %r" % (got, want))


def test_offset_multiply_chain():
    c = F.build_chain([{"type": "offset", "value": 1.0}, {"type": "multiply", "value": 2.0},
                       {"type": "clamp", "max": 10.0}])
    _eq([c.update(3.0, 0), c.update(10.0, 1)], [8.0, 10.0])


def test_calibrate_linear_least_squares_and_exact():
    f = F.build({"type": "calibrate_linear", "points": [[0, 0], [1, 1], [2, 3]]})
    # slope 1.5, intercept -1/6 by hand
    _eq([f.update(4.0, 0)], [6.0 - 1.0 / 6.0])
    two = F.build({"type": "calibrate_linear", "points": [[0, 0], [10, 20]]})
    _eq([two.update(5.0, 0)], [10.0])
    ex = F.build({"type": "calibrate_linear", "method": "exact", "points": [[0, 0], [10, 100], [20, 120]]})
    _eq(_run(ex, [(5, 0), (15, 0), (25, 0), (-5, 0)]), [50.0, 110.0, 130.0, -50.0])


def test_clamp_and_ignore_out_of_range():
    c = F.build({"type": "clamp", "min": 0, "max": 10})
    _eq(_run(c, [(-1, 0), (11, 0), (5, 0)]), [0, 10, 5])
    d = F.build({"type": "clamp", "min": 0, "max": 10, "ignore_out_of_range": True})
    _eq(_run(d, [(-1, 0), (11, 0), (5, 0)]), [None, None, 5])


def test_filter_out_value_and_nan():
    f = F.build({"type": "filter_out", "values": [85.0], "nan": True})
    _eq(_run(f, [(85.0, 0), (NAN, 0), (21.5, 0)]), [None, None, 21.5])
    g = F.build({"type": "filter_out", "values": [0]})
    r = g.update(NAN, 0)
    assert r != r  # NaN passes unless nan=True


def test_median_cadence_esphome():
    # window 5, send_every 5, send_first_at 1: first input is emitted, then every 5th
    f = F.build({"type": "median", "window_size": 5, "send_every": 5, "send_first_at": 1})
    out = _run(f, [(v, i) for i, v in enumerate([5, 1, 9, 3, 7, 2])])
    _eq(out, [5, None, None, None, None, 3])  # median of [1, 9, 3, 7, 2]
    even = F.build({"type": "median", "window_size": 4, "send_every": 4, "send_first_at": 4})
    _eq(_run(even, [(1, 0), (2, 0), (3, 0), (10, 0)]), [None, None, None, 2.5])


def test_median_ignores_nan():
    f = F.build({"type": "median", "window_size": 3, "send_every": 1})
    _eq(_run(f, [(1, 0), (NAN, 0), (3, 0)]), [1, 1, 2])


def test_quantile_min_max():
    q = F.build({"type": "quantile", "window_size": 10, "send_every": 10, "send_first_at": 10, "quantile": 0.9})
    out = _run(q, [(float(v), 0) for v in (3, 10, 1, 7, 5, 2, 9, 4, 8, 6)])
    _eq(out[-1:], [9.0])  # ceil(10 * 0.9) - 1 = 8 -> 9th smallest
    mn = F.build({"type": "min", "window_size": 3, "send_every": 1})
    mx = F.build({"type": "max", "window_size": 3, "send_every": 1})
    seq = [(4, 0), (2, 0), (8, 0), (6, 0), (7, 0)]
    _eq(_run(mn, seq), [4, 2, 2, 2, 6])
    _eq(_run(mx, seq), [4, 4, 8, 8, 8])


def test_sliding_window_moving_average():
    f = F.build({"type": "sliding_window_moving_average", "window_size": 3, "send_every": 1})
    _eq(_run(f, [(1, 0), (2, 0), (3, 0), (4, 0)]), [1, 1.5, 2, 3])
    g = F.build({"type": "sliding_window_moving_average", "window_size": 3, "send_every": 1})
    _eq(_run(g, [(1, 0), (NAN, 0), (3, 0)]), [1, 1, 2])
    h = F.build({"type": "sliding_window_moving_average", "window_size": 4, "send_every": 2, "send_first_at": 2})
    _eq(_run(h, [(2, 0), (4, 0), (6, 0), (8, 0)]), [None, 3, None, 5])


def test_exponential_moving_average():
    f = F.build({"type": "exponential_moving_average", "alpha": 0.5, "send_every": 1})
    _eq(_run(f, [(10, 0), (20, 0), (20, 0)]), [10, 15, 17.5])
    g = F.ExponentialMovingAverage()  # ESPHome defaults: alpha 0.1, send_every 15, send_first_at 1
    out = _run(g, [(10.0, i) for i in range(16)])
    assert out[0] == 10.0 and out[1:15] == [None] * 14 and out[15] is not None


def test_throttle_and_throttle_average():
    t = F.build({"type": "throttle", "interval_ms": 1000})
    _eq(_run(t, [(1, 0), (2, 500), (3, 1000), (4, 1999), (5, 2000)]), [1, None, 3, None, 5])
    a = F.build({"type": "throttle_average", "interval_ms": 1000})
    _eq(_run(a, [(1, 0), (3, 400), (100, 1000)]), [None, None, 2])
    _eq([a.tick(1500), a.tick(2000), a.tick(3000)], [None, 100, None])


def test_heartbeat_repeats_latest():
    h = F.build({"type": "heartbeat", "interval_ms": 1000})
    _eq(_run(h, [(1, 0), (2, 500), (3, 1000)]), [None, None, 3])
    _eq([h.tick(1500), h.tick(2000), h.tick(2500), h.tick(3000)], [None, 3, None, 3])


def test_delta_absolute_and_percent():
    d = F.build({"type": "delta", "value": 1.0})
    _eq(_run(d, [(10, 0), (10.5, 0), (11, 0), (10.2, 0), (9.9, 0)]), [10, None, 11, None, 9.9])
    p = F.build({"type": "delta", "percent": 10})
    _eq(_run(p, [(100, 0), (105, 0), (111, 0), (120, 0)]), [100, None, 111, None])


def test_debounce_waits_for_quiet():
    d = F.build({"type": "debounce", "time_ms": 1000})
    _eq(_run(d, [(1, 0), (2, 500)]), [None, None])
    _eq([d.tick(1000), d.tick(1500), d.tick(3000)], [None, 2, None])


def test_timeout_emits_once():
    t = F.build({"type": "timeout", "time_ms": 1000})
    _eq([t.update(5, 0), t.tick(999)], [5, None])
    r = t.tick(1000)
    assert r != r  # NaN
    assert t.tick(5000) is None
    v = F.build({"type": "timeout", "time_ms": 1000, "value": 0.0})
    v.update(5, 0)
    _eq([v.tick(1000)], [0.0])


def test_skip_initial():
    s = F.build({"type": "skip_initial", "count": 2})
    _eq(_run(s, [(1, 0), (2, 0), (3, 0)]), [None, None, 3])


def test_or_forwards_first_branch_output():
    o = F.build({"type": "or", "filters": [{"type": "throttle", "interval_ms": 1000}, {"type": "delta", "value": 5}]})
    _eq(_run(o, [(1, 0), (10, 100), (11, 200), (12, 1000)]), [1, 10, None, 12])


def test_chain_timer_feeds_rest_of_chain():
    c = F.build_chain([{"type": "heartbeat", "interval_ms": 1000}, {"type": "offset", "value": 1}])
    assert c.update(1.0, 0) is None
    _eq([c.tick(1000)], [2.0])


def test_unknown_filter_rejected():
    try:
        F.build({"type": "lambda"})
    except ValueError as e:
        assert "lambda" in str(e)
    else:
        raise AssertionError("unknown filter accepted")
