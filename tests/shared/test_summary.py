# Summary wire shape (window key + revision); runs on CPython and MicroPython.
from shared import summary


def _w(node="n1", metric="temperature", start=600.0, end=610.0, count=3, **kw):
    b = {"node": node, "metric": metric, "start": start, "end": end, "count": count, "min": 1.0, "max": 2.0,
         "mean": 1.5, "last": 2.0, "stddev": 0.1, "unit": "Cel"}
    b.update(kw)
    return b


def test_key_of_window_and_decision_bodies():
    assert summary.body_key(_w()) == ("n1", "temperature", 10.0, 600.0)
    assert summary.body_key(_w(start=1800.0, end=2700.0)) == ("n1", "temperature", 900.0, 1800.0)
    dec = {"node": "n1", "start": 600.0, "end": 660.0, "windows": {"temperature": {"count": 60}}}
    assert summary.body_key(dec) == ("n1", summary.SET, 60.0, 600.0)
    for not_a_window in ({"kind": "gateway_health", "gw": "gw1"}, {"node": "n1", "start": 1.0}, b"x", None,
                         {"node": 5, "metric": "t", "start": 0.0, "end": 1.0}):
        assert summary.body_key(not_a_window) is None
    # a float subtraction that is not exact still gives the configured length
    assert summary.key("n", "m", 0.1, 10.1)[2] == 10.0


def test_stamp_and_revision():
    b = summary.stamp(_w(), 3, False)
    assert b["rev"] == 3 and "corr" not in b
    c = summary.stamp(_w(count=5), 5, True)
    assert c["rev"] == 5 and c["corr"] == 1
    assert summary.revision({"node": "n"}) == 0 and summary.revision({"rev": "7"}) == 0


def test_keep_highest_revision_whatever_the_arrival_order():
    r1 = summary.stamp(_w(count=3), 3, False)
    r2 = summary.stamp(_w(count=5, mean=1.7), 5, True)
    r3 = summary.stamp(_w(count=9, mean=1.9), 9, True)
    other = summary.stamp(_w(start=610.0, end=620.0, count=2), 2, False)
    for order in ((r1, r2, r3), (r3, r1, r2), (r2, r3, r1, r3)):
        latest = {}
        for b in order + (other,):
            summary.keep_highest(latest, b)
        assert len(latest) == 2
        assert latest[("n1", "temperature", 10.0, 600.0)]["mean"] == 1.9
    latest = {}
    assert summary.keep_highest(latest, r2)
    assert not summary.keep_highest(latest, r2)  # the same revision again (a re-send): kept once
    assert not summary.keep_highest(latest, r1)
    assert not summary.keep_highest(latest, {"kind": "gateway_health"})
