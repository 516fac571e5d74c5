"""Per-pack paths give what the per-reading ones give: Aggregator.add_many vs add, HotTier.add_pack vs add."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from fogline.gateway.aggregate.core import Aggregator
from fogline.gateway.store.tiers import HotTier
from fogline.gateway.ingest.validate import Reading

_reading = st.tuples(st.sampled_from(["temp", "hum"]), st.floats(-50, 50, allow_nan=False),
                     st.floats(0, 400, allow_nan=False) | st.integers(0, 400))
_packs = st.lists(st.tuples(st.sampled_from(["n1", "n2"]), st.lists(_reading, min_size=1, max_size=12),
                            st.floats(0, 120)), min_size=1, max_size=30)


def _run(packs, lengths, many: bool) -> list:
    out: list = []
    agg = Aggregator(lengths, 5.0, out.append, idle_close_s=30.0, allowed_lateness_s=20.0)
    wall = 1000.0
    for i, (node, recs, dwall) in enumerate(packs):
        wall += dwall
        ms, vs, ts = [r[0] for r in recs], [r[1] for r in recs], [1000.0 + r[2] + i for r in recs]
        if many:
            agg.add_many(node, ms, ["Cel"] * len(ms), vs, ts, wall)
        else:
            for m, v, t in zip(ms, vs, ts):
                agg.add(node, m, "Cel", v, t, wall)
        if i % 7 == 6:
            agg.close_idle(wall)
        agg.flush_late()
    agg.flush()
    return out + [sorted(agg.take_reopen()), agg.late_readings, agg.corrections]


@settings(max_examples=300, deadline=None)
@given(_packs, st.sampled_from([(10.0, 60.0, 900.0), (10.0,), (5.0, 7.0), (10.0, 30.0, 45.0)]))
def test_add_many_delivers_the_same_windows_as_add_per_reading(packs, lengths):
    assert _run(packs, lengths, True) == _run(packs, lengths, False)


def test_a_pack_spanning_window_ends_fires_them_in_order():
    out: list = []
    agg = Aggregator([10.0, 60.0], 0.0, out.append, idle_close_s=30.0)
    ts = [float(t) for t in range(0, 130)]
    agg.add_many("n1", ["temp"] * len(ts), ["Cel"] * len(ts), [float(t) for t in ts], ts, 0.0)
    short = [(w.start, w.count) for w in out if w.length == 10.0]
    assert short == [(float(s), 10) for s in range(0, 120, 10)]
    assert [(w.start, w.count, w.mean) for w in out if w.length == 60.0] == [(0.0, 60, 29.5), (60.0, 60, 89.5)]


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 6), st.lists(st.lists(st.tuples(st.sampled_from(["t", "h"]), st.floats(-5, 5)), max_size=15),
                                   max_size=8))
def test_hot_tier_add_pack_keeps_what_add_per_reading_keeps(size, packs):
    a, b = HotTier(size), HotTier(size)
    t = 0.0
    for recs in packs:
        ms, vs, ts = [m for m, _ in recs], [v for _, v in recs], [t + i for i in range(len(recs))]
        t += len(recs)
        a.add_pack("n", ms, ts, vs)
        for i, (m, v) in enumerate(recs):
            b.add(Reading("n", "up", i + 1, m, None, v, ts[i]))
    for m in ("t", "h"):
        assert a.query("n", m, -1, 1e9) == b.query("n", m, -1, 1e9)
        assert a.oldest("n", m) == b.oldest("n", m)
