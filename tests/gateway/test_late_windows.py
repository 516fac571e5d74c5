"""Late data: fired windows corrected in memory within the allowed lateness, re-opened from the real
SQLite store beyond it, revisions that end equal to the stored readings, bounded memory, restart."""

from __future__ import annotations

import math
import random
import statistics

from fogline.gateway.store import late
from fogline.gateway.aggregate.core import Aggregator, Window
from fogline.gateway.store.core import Store
from fogline.gateway.ingest.validate import Message, Reading
from fogline.shared import summary as wire


def _latest(out: list[Window]) -> dict:
    """The cloud's view: the highest revision per window key (shared/summary.py rule)."""
    latest: dict = {}
    for w in out:
        wire.keep_highest(latest, w.as_dict())
    return latest


def _truth(readings, lengths) -> dict:
    """(node, metric, length, start) -> values of every reading in that window."""
    out: dict = {}
    for node, metric, v, t in readings:
        for ln in lengths:
            out.setdefault(wire.key(node, metric, math.floor(t / ln) * ln, math.floor(t / ln) * ln + ln), []).append(v)
    return out


def _assert_final(latest: dict, truth: dict) -> None:
    assert set(latest) == set(truth), (set(truth) - set(latest), set(latest) - set(truth))
    for k, vals in truth.items():
        b = latest[k]
        assert b["count"] == len(vals) and b["rev"] == len(vals), (k, b, len(vals))
        assert b["min"] == min(vals) and b["max"] == max(vals), (k, b)
        assert math.isclose(b["mean"], statistics.fmean(vals), rel_tol=1e-9, abs_tol=1e-9), (k, b)
        assert math.isclose(b["stddev"], statistics.pstdev(vals), rel_tol=1e-6, abs_tol=1e-7), (k, b)


class Site:
    """The gateway's commit -> aggregate -> corrections loop over a real Store (what fogline.gateway.app does)."""

    def __init__(self, path, lengths=(10.0, 60.0, 900.0), lateness=None, watermark_s=2.0):
        self.store = Store(path)
        self.out: list[Window] = []
        self.agg = Aggregator(lengths, watermark_s, self.out.append, idle_close_s=30.0, allowed_lateness_s=lateness)
        self.seq: dict[str, int] = {}
        self.store_reads = 0
        self.saved = 0

    def batch(self, node: str, points: list[tuple[str, float, float]], wall: float, crash: bool = False) -> None:
        first = self.seq.get(node, 0) + 1
        rs = [Reading(node, "up", first + i, m, "Cel", v, t) for i, (m, v, t) in enumerate(points)]
        self.seq[node] = first + len(rs) - 1
        # delivered windows go to the windows table with the next commit, as in fogline.gateway.app
        res = self.store.commit_batch([Message(node, "up", first, rs)], windows=self.out[self.saved:], now=wall)
        self.saved = len(self.out)
        if crash:  # kill -9 right after the commit: acked, never aggregated
            self.restart(wall)
            return
        for r in res.results[0].new:
            self.agg.add(r.node, r.metric, r.unit, r.value, r.t, wall)
        self.agg.flush_late()
        keys = self.agg.take_reopen()
        if keys:
            self.store_reads += len(keys)
            self.agg.reopened(late.recompute(self.store, keys), wall)


    def restart(self, wall: float) -> None:
        """A new gateway process on the same store: replay, recheck, as fogline.gateway.store.late.replay_into does."""
        path, agg = self.store.path, self.agg
        self.store.close()
        self.store = Store(path)
        self.saved = len(self.out)  # windows delivered but not yet in the windows table are lost from it
        self.agg = Aggregator(agg.lengths, agg.watermark_s, self.out.append, idle_close_s=agg.idle_close_s,
                              allowed_lateness_s=[agg.lateness[ln] for ln in agg.lengths])
        rep = late.replay(self.store, self.agg.lengths)
        self.agg.covered_from, self.agg.delivered = rep.covered_from, rep.delivered
        for node, metric, unit, v, t in rep.rows:
            self.agg.add(node, metric, unit, v, t, wall)
        stale = late.recent_windows(self.store, self.agg.lengths, rep.covered_from, 60.0)
        self.store_reads += len(stale)
        self.agg.reopened(late.recompute(self.store, stale), wall)
        self.agg.flush_late()


def test_fired_window_is_corrected_in_memory_with_a_higher_revision():
    out: list[Window] = []
    agg = Aggregator([10.0, 60.0], 1.0, out.append, allowed_lateness_s=[30.0, 120.0])
    for t in range(1000, 1013):
        agg.add("n", "m", None, float(t), float(t), 0)
    assert [(w.start, w.count, w.rev, w.correction) for w in out] == [(1000.0, 10, 10, False)]
    agg.add("n", "m", None, 2000.0, 1004.5, 0)  # window fired: late, within the lateness
    assert agg.late_readings == 1 and agg.take_reopen() == []  # in memory: no store read
    agg.add("n", "m", None, -1.0, 1005.5, 0)
    assert agg.flush_late() == 1  # two late readings, one correction
    c = out[-1]
    assert (c.start, c.count, c.rev, c.correction, c.max, c.min) == (1000.0, 12, 12, True, 2000.0, -1.0)
    assert agg.flush_late() == 0
    assert c.as_dict()["corr"] == 1 and "corr" not in out[0].as_dict()
    # the 60 s window was still open: the late readings went straight into it
    agg.add("n", "m", None, 0.0, 1071.0, 0)
    w60 = [w for w in out if w.length == 60.0]
    assert [(w.start, w.count, w.correction) for w in w60] == [(960.0, 15, False)]


def test_late_reading_beyond_the_lateness_reopens_from_the_store(tmp_path):
    s = Site(tmp_path / "s.sqlite", lengths=(10.0, 60.0), lateness=[20.0, 60.0])
    s.batch("n", [("m", float(i), 1000.0 + i) for i in range(10)], wall=1.0)
    s.batch("n", [("m", float(i), 1100.0 + i) for i in range(200)], wall=2.0)  # watermark far past 1010+20
    assert s.agg.kept_count() <= 2 * (20 // 10 + 1) + 2 * (60 // 60 + 1) + 2  # the horizon, not the history
    before = len(s.out)
    s.batch("n", [("m", 50.0, 1005.0)], wall=3.0)
    assert s.store_reads == 2  # one per length: [1000, 1010) and [960, 1020)
    corr = {(w.length, w.start): w for w in s.out[before:]}
    assert corr[(10.0, 1000.0)].count == 11 and corr[(10.0, 1000.0)].max == 50.0 and corr[(10.0, 1000.0)].correction
    assert corr[(60.0, 960.0)].count == 11
    s.batch("n", [("m", 51.0, 1006.0)], wall=4.0)  # the re-opened window stays in memory a while: O(1)
    assert s.store_reads == 2 and s.out[-1].count == 12


def test_late_window_that_never_had_readings_needs_no_store_read(tmp_path):
    s = Site(tmp_path / "s.sqlite", lengths=(10.0,), lateness=[600.0])
    s.batch("n", [("m", 1.0, 1000.0), ("m", 2.0, 1100.0)], wall=1.0)
    n = len(s.out)
    s.batch("n", [("m", 3.0, 1050.0)], wall=2.0)
    assert s.store_reads == 0 and s.out[n].start == 1050.0 and not s.out[n].correction


def test_random_late_arrival_ends_with_every_window_equal_to_the_stored_readings(tmp_path):
    """Outage-then-drain orders (newest first, shuffled packs, idle closes) against the real store."""
    rnd = random.Random(18)
    s = Site(tmp_path / "s.sqlite", lateness=[30.0, 120.0, 900.0])
    readings = []
    wall = 0.0
    for node in ("a", "b", "c"):
        pts = [(m, round(rnd.gauss(20, 2), 3), 10_000.0 + i * 1.5 + rnd.uniform(0, 1)) for i in range(800)
               for m in ("t", "h")]
        readings += [(node, m, v, t) for m, v, t in pts]
        packs, i = [], 0
        while i < len(pts):
            n = rnd.choice([5, 20, 50])
            packs.append(pts[i:i + n])
            i += n
        # the live packs first (alerts drain first, new readings), then the backlog in random order
        live, backlog = packs[-3:], packs[:-3]
        rnd.shuffle(backlog)
        for p in live + backlog:
            wall += 1.0
            s.batch(node, p, wall)
            if rnd.random() < 0.1:
                wall += 40.0
                s.agg.close_idle(wall)
    s.agg.flush()
    _assert_final(_latest(s.out), _truth(readings, (10.0, 60.0, 900.0)))
    assert s.agg.corrections > 0 and s.store_reads > 0
    assert s.agg.reopen_dropped == 0


def test_restart_delivers_only_changed_windows_and_recovers_a_cut_off_correction(tmp_path):
    db = tmp_path / "s.sqlite"
    s = Site(db, lengths=(10.0, 60.0), lateness=[20.0, 60.0])
    s.batch("n", [("m", float(i), 1000.0 + i) for i in range(100)], wall=1.0)
    s.store.commit_batch([], windows=list(s.out))  # the app writes delivered windows with the next commit
    sent = _latest(s.out)
    # a late reading is committed, then the gateway dies before it delivered the correction
    s.store.commit_batch([Message("n", "up", 101, [Reading("n", "up", 101, "m", "Cel", 77.0, 1003.0)])])
    s.store.close()
    st = Store(db)
    out: list[Window] = []
    agg = Aggregator((10.0, 60.0), 2.0, out.append, allowed_lateness_s=[20.0, 60.0])
    rep = late.replay(st, agg.lengths)
    agg.covered_from, agg.delivered = rep.covered_from, rep.delivered
    for node, metric, unit, v, t in rep.rows:
        agg.add(node, metric, unit, v, t, 5.0)
    stale = late.recent_windows(st, agg.lengths, rep.covered_from)
    agg.reopened(late.recompute(st, stale), 5.0)
    agg.flush()
    # nothing delivered before is delivered again unchanged; the two windows the late reading changed are
    again = [(w.length, w.start) for w in out if w.as_dict() == sent.get(wire.body_key(w.as_dict()))]
    assert again == []
    fixed = {(w.length, w.start): w for w in out if w.start <= 1003.0 < w.end}
    assert fixed[(10.0, 1000.0)].count == 11 and fixed[(10.0, 1000.0)].max == 77.0
    assert fixed[(60.0, 960.0)].count == 21
    st.close()


def test_window_fired_by_idle_close_resumes_and_is_corrected_once():
    """A node silent past idle_close_s gets its open windows fired; when its drain resumes them, each
    fires again at the watermark as one correction, not one per tick."""
    out: list[Window] = []
    agg = Aggregator([10.0, 60.0, 900.0], 2.0, out.append, idle_close_s=30.0)
    for t in range(0, 25):
        agg.add("n", "m", None, 1.0, 9000.0 + t, wall=float(t))
    agg.close_idle(60.0)  # the Wi-Fi went: [9020, 9030), [9000, 9060) and [9000, 9900) fire partial
    fired = {(w.length, w.start): w.count for w in out}
    assert fired[(10.0, 9020.0)] == 5 and fired[(60.0, 9000.0)] == 25 and fired[(900.0, 9000.0)] == 25
    for k, t in enumerate(range(25, 400)):  # the drain, oldest first, one reading a tick
        agg.add("n", "m", None, 2.0, 9000.0 + t, wall=61.0 + k)
        agg.close_idle(61.0 + k)
    agg.flush()
    w900 = [w for w in out if w.length == 900.0]
    assert [(w.count, w.correction) for w in w900] == [(25, False), (400, True)]
    w10 = [w for w in out if (w.length, w.start) == (10.0, 9020.0)]
    assert [(w.count, w.correction) for w in w10] == [(5, False), (10, True)]
    _assert_final(_latest(out), _truth([("n", "m", 1.0 if t < 25 else 2.0, 9000.0 + t) for t in range(400)],
                                       (10.0, 60.0, 900.0)))
    assert agg.late_readings == 0  # none was past the watermark: resumed windows, not late ones


def test_crashes_anywhere_in_a_drain_still_end_with_every_window_equal_to_the_stored_readings(tmp_path):
    """kill -9 right after commits (acked, not aggregated), windows fired early by idle closes, replay."""
    for seed in range(3):
        rnd = random.Random(100 + seed)
        s = Site(tmp_path / f"s{seed}.sqlite", lateness=[30.0, 120.0, 900.0])
        readings = []
        wall = 0.0
        pts = [(m, round(rnd.gauss(20, 2), 3), 20_000.0 + i + rnd.uniform(0, 0.5)) for i in range(1500)
               for m in ("t", "h")]
        readings += [("a", m, v, t) for m, v, t in pts]
        packs = [pts[i:i + 40] for i in range(0, len(pts), 40)]
        live, backlog = packs[-2:], packs[:-2]
        for p in live + backlog:
            wall += 1.0
            s.batch("a", p, wall, crash=rnd.random() < 0.08)
            if rnd.random() < 0.1:
                wall += 40.0
                s.agg.close_idle(wall)
        s.agg.flush()
        _assert_final(_latest(s.out), _truth(readings, (10.0, 60.0, 900.0)))
        s.store.close()
