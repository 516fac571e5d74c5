"""Fog-tier aggregation: event-time tumbling windows per node and metric, with allowed lateness.

Each (node, metric, length) series keeps one accumulator per window start. A node's watermark
is its newest reading time minus `watermark_s`; a window fires (is delivered) once the
watermark passes its end, or after `idle_close_s` of wall-clock silence of its node (a window
fired that early opens again when the node's readings for it come, and fires again at the
watermark). A fired window stays in memory for corrections until the watermark passes end +
allowed lateness (per length): a late reading then costs one accumulator update and the window
is delivered again as a correction (same key, higher revision) at the next `flush_late()`
(the gateway calls it once a tick, so a drain sends a window about once a second). A late reading for a
window no longer in memory asks for a re-open: the caller recomputes that window from the
store (`take_reopen()` -> `fogline.gateway.store.late.recompute` -> `reopened()`), so memory stays bounded by
the lateness horizon, not by how late data may come.
"""

from __future__ import annotations

import heapq
import itertools
import math
from operator import itemgetter
from typing import Callable, Iterable, Sequence

from fogline.gateway.aggregate.late import LateWindows, _NodeState
from fogline.gateway.aggregate.windowstats import INF, Window, _Acc, acc_of, lateness_for

__all__ = ["Aggregator", "Window", "acc_of", "lateness_for"]
_LENGTH = itemgetter(1)  # of a (metric, length) key


class Aggregator(LateWindows):
    """Tumbling windows; `emit(window)` is called for each delivered window or correction (caller's thread)."""

    def __init__(self, lengths: Iterable[float], watermark_s: float, emit: Callable[[Window], None],
                 idle_close_s: float = 30.0, allowed_lateness_s: Sequence[float] | float | None = None,
                 max_reopen: int = 100000):
        given = [float(x) for x in lengths]
        self.lengths = sorted(set(given))
        base = self.lengths[0]
        # Longer windows that are whole multiples of the shortest are built by merging fired short
        # windows (one accumulator update per on-time reading instead of one per length); others directly.
        self.merged = [ln for ln in self.lengths[1:] if (ln / base).is_integer()]
        self._merged_set = set(self.merged)
        self._plan = [(ln, ln in self._merged_set) for ln in self.lengths]  # shortest first
        self.base = base
        self.watermark_s = float(watermark_s)
        self.idle_close_s = float(idle_close_s)
        self.lateness = lateness_for(given, allowed_lateness_s)
        self.emit = emit
        self.nodes: dict[str, _NodeState] = {}
        self.late_readings = 0        # readings for windows that had fired already
        self.corrections = 0          # deliveries of a window after its first
        self.reopens = 0              # windows recomputed from the store
        self.reopen_dropped = 0       # re-open requests refused (queue over max_reopen): counted, never silent
        self.windows_emitted = 0
        self.max_reopen = max_reopen
        # (node, metric) -> oldest reading time from which every stored reading went through add()
        # (set from the replay at start; a series not listed was seen whole)
        self.covered_from: dict[tuple[str, str], float] = {}
        # (node, metric, length, start) -> count delivered before a restart (replay: deliver only what changed)
        self.delivered: dict[tuple[str, str, float, float], int] = {}
        self._dirty: dict[tuple[str, str, float, float], _Acc] = {}
        self._reopen: set[tuple[str, str, float, float]] = set()
        self._n = itertools.count()  # tie-breaker of eviction heap entries

    # ------------------------------------------------------------------ readings
    def add(self, node: str, metric: str, unit: str | None, value: float, t: float, wall: float) -> None:
        """Add one reading (t = reading time, wall = gateway clock now)."""
        st = self.nodes.get(node)
        if st is None:
            st = self.nodes[node] = _NodeState()
        st.last_wall = wall
        v = float(value)
        wm = st.newest_t - self.watermark_s
        base_acc: _Acc | None = None  # the open short window holding this reading
        floor = math.floor
        opened = st.open
        for ln, merged in self._plan:
            if merged and base_acc is not None and ln not in base_acc.merged_into:
                continue  # it arrives with its short window's merge (into the open window, or as a correction)
            start = floor(t / ln) * ln
            key = (metric, ln)
            wins = opened.get(key)
            acc = wins.get(start) if wins else None
            if acc is None:
                acc = self._open_for(node, st, key, start, unit, wm)
            if acc is not None:
                acc.add(v, t)
                if base_acc is None and ln == self.base:
                    base_acc = acc
                continue
            if ln == self.base:
                self.late_readings += 1
            self._late(node, st, key, start, unit, v, t)
        if t > st.newest_t:
            st.newest_t = t
            wm = t - self.watermark_s
            if wm >= st.min_end or wm >= st.min_evict:
                self._advance(node, st, wm, wall)

    def add_many(self, node: str, metrics: Sequence[str], units: Sequence[str | None], values: Sequence[float],
                 times: Sequence[float], wall: float) -> None:
        """Add one pack's readings of a node, as columns (same result as add() per reading, in order)."""
        add = self.add
        if len(self._plan) != 1 + len(self.merged):  # a length built directly: every reading takes add()
            for metric, unit, v, t in zip(metrics, units, values, times):
                add(node, metric, unit, v, t, wall)
            return
        # A reading whose short window is open needs only that window's update (add() skips the merged
        # lengths for it, and its own reading cannot fire it: the watermark stays below it), so each
        # metric's open window is looked up once per pack, not per reading; add() takes the others.
        base = self.base
        floor = math.floor
        ws = self.watermark_s
        st = self.nodes.get(node)
        if st is not None:
            st.last_wall = wall
        cache: dict[str, tuple[float, _Acc]] = {}  # metric -> (start, its open short window)
        # The window being updated keeps its statistics in locals (the same operations as _Acc.add, in the
        # same order) and gets them back when the next reading is another window's, or before anything
        # else (add(), _advance()) could look at it.
        cur: _Acc | None = None
        cur_metric: str | None = None
        cur_start = 0.0
        n, mean, m2, lo, hi, last, last_t = 0, 0.0, 0.0, INF, -INF, 0.0, -INF
        for metric, unit, v, t in zip(metrics, units, values, times):
            if st is None:
                add(node, metric, unit, v, t, wall)
                st = self.nodes[node]
                continue
            start = floor(t / base) * base
            if cur is None or start != cur_start or metric != cur_metric:
                if cur is not None:
                    cur.set_stats(n, mean, m2, lo, hi, last, last_t)
                    cur = None
                c = cache.get(metric)
                if c is not None and c[0] == start:
                    acc = c[1]
                else:
                    wins = st.open.get((metric, base))
                    acc = wins.get(start) if wins else None
                    if acc is None or acc.merged_into:  # re-opened from the store: longer windows take it directly
                        add(node, metric, unit, v, t, wall)
                        cache.clear()  # add() may have fired windows
                        continue
                    cache[metric] = (start, acc)
                cur, cur_metric, cur_start = acc, metric, start
                n, mean, m2, lo, hi, last, last_t = acc.stats()
            v = float(v)
            n += 1
            d = v - mean
            mean += d / n
            m2 += d * (v - mean)
            if v < lo:
                lo = v
            if v > hi:
                hi = v
            if t >= last_t:  # 'last' is by reading time, not arrival order
                last_t = t
                last = v
            if t > st.newest_t:
                st.newest_t = t
                wm = t - ws
                if wm >= st.min_end or wm >= st.min_evict:
                    cur.set_stats(n, mean, m2, lo, hi, last, last_t)
                    cur = None
                    self._advance(node, st, wm, wall)
                    cache.clear()
        if cur is not None:
            cur.set_stats(n, mean, m2, lo, hi, last, last_t)

    def _open_for(self, node: str, st: _NodeState, key: tuple[str, float], start: float, unit: str | None,
                  wm: float, due_ok: bool = False) -> _Acc | None:
        """The open window for a reading, or None when the window is due (end <= watermark): a late reading.

        A window fired early (idle close) before the watermark passed it opens again and fires again
        at the watermark, as one correction; due_ok also opens a due window never fired (a merge)."""
        wins = st.open.get(key)
        acc = wins.get(start) if wins else None
        if acc is not None:
            return acc
        end = start + key[1]
        # never fired here, and (after a restart) every stored reading of it came through here
        new = start >= st.fired_upto.get(key, -INF) and start >= self.covered_from.get((node, key[0]), -INF)
        if end <= wm and not (due_ok and new):
            return None
        f = st.fired.get(key)
        acc = f.pop(start, None) if f else None
        if acc is not None:
            self._dirty.pop((node, key[0], key[1], start), None)
            if key[1] == self.base:  # its longer windows hold what it has: from now on they get readings directly
                acc.merged_into = tuple(self.merged)
        elif new or self._unseen(node, st, key, start):
            acc = _Acc(start, end, unit)
        else:
            return None  # dropped from memory: only the store knows it (re-open)
        if wins is None:
            wins = st.open[key] = {}
        wins[start] = acc
        if end < st.min_end:
            st.min_end = end
        return acc

    # ------------------------------------------------------------------ firing and eviction
    def _advance(self, node: str, st: _NodeState, watermark: float, wall: float) -> None:
        if watermark >= st.min_end:
            # shortest first: firing a short window feeds the longer ones before they are checked
            opened = st.open
            for key in sorted(opened, key=_LENGTH):
                wins = opened[key]
                if len(wins) == 1:  # the common case: one open window per series and length
                    a = next(iter(wins.values()))
                    if a.end <= watermark:
                        wins.clear()
                        self._fire(node, key, st, a, watermark)
                else:
                    for s in sorted([s for s, a in wins.items() if a.end <= watermark]):
                        self._fire(node, key, st, wins.pop(s), watermark)
                if not wins:
                    del opened[key]
            st.min_end = min([a.end for w in opened.values() for a in w.values()], default=INF)
        if watermark >= st.min_evict:
            h = st.evict_heap
            while h and h[0][0] <= watermark:
                _, _, key, a = heapq.heappop(h)
                f = st.fired.get(key)
                if f is None or f.get(a.start) is not a:
                    continue  # opened again, or gone already
                if a.keep_until > wall:  # re-opened from the store a moment ago: the drain may go on
                    self._track_evict(st, a, key, watermark + max(self.lateness[key[1]], 1.0))
                    continue
                self._drop(st, key, a)
            st.min_evict = h[0][0] if h else INF

    def _fire(self, node: str, key: tuple[str, float], st: _NodeState, acc: _Acc, wm: float) -> None:
        if acc.end > st.fired_upto.get(key, -INF):
            st.fired_upto[key] = acc.end
        if key[1] == self.base:
            for ln in self.merged:
                self._merge_up(node, st, (key[0], ln), acc, wm)
        st.fired.setdefault(key, {})[acc.start] = acc
        self._track_evict(st, acc, key)
        dk = (node, key[0], key[1], acc.start)
        if self.delivered:
            before = self.delivered.pop(dk, 0)
            if before >= acc.count:  # delivered before the restart, nothing new since
                acc.sent = before
                return
            acc.sent = before
        self._deliver(dk, acc)

    def _merge_up(self, node: str, st: _NodeState, pkey: tuple[str, float], acc: _Acc, wm: float) -> None:
        ln = pkey[1]
        if ln in acc.merged_into:
            return
        pstart = math.floor(acc.start / ln) * ln
        wins = st.open.get(pkey)
        p = wins.get(pstart) if wins else None
        if p is None:
            p = self._open_for(node, st, pkey, pstart, acc.unit, wm, due_ok=True)
        if p is not None:
            p.merge(acc)
            return
        # the longer window fired before this short one (idle close): a correction of it
        f = st.fired.get(pkey)
        p = f.get(pstart) if f else None
        dk = (node, pkey[0], ln, pstart)
        if p is None:
            if len(self._reopen) < self.max_reopen:
                self._reopen.add(dk)
            else:
                self.reopen_dropped += 1
            return
        p.merge(acc)
        self._dirty[dk] = p

    def _deliver(self, dk: tuple[str, str, float, float], acc: _Acc) -> None:
        node, metric = dk[0], dk[1]
        correction = acc.sent > 0
        acc.sent = acc.count
        std = math.sqrt(acc.m2 / acc.count) if acc.count > 1 else 0.0
        w = Window.make(node, metric, acc.start, acc.end, acc.count, acc.min, acc.max, acc.mean, acc.last, std,
                        acc.unit, correction)
        self.windows_emitted += 1
        if correction:
            self.corrections += 1
        self.emit(w)

    def flush_late(self) -> int:
        """Deliver the windows late readings changed since the last call (one correction each); returns how many."""
        if not self._dirty:
            return 0
        dirty, self._dirty = self._dirty, {}
        n = 0
        for dk, acc in dirty.items():
            if acc.count > acc.sent:
                self._deliver(dk, acc)
                n += 1
        return n

    # ------------------------------------------------------------------ idle nodes, shutdown
    def close_idle(self, wall: float) -> int:
        """Fire every open window of nodes silent for idle_close_s; forget fired ones after the lateness too."""
        n = 0
        forget = self.idle_close_s + max(self.lateness.values())
        for node, st in self.nodes.items():
            idle = wall - st.last_wall
            if st.open and idle >= self.idle_close_s:
                n += self._flush_node(node, st)
            if st.fired and idle >= forget:
                self._evict(st, lambda key, a: a.keep_until <= wall)
        return n + self.flush_late()

    def flush(self) -> int:
        """Fire every open window now (clean shutdown); returns windows delivered."""
        return sum(self._flush_node(node, st) for node, st in self.nodes.items()) + self.flush_late()

    def _flush_node(self, node: str, st: _NodeState) -> int:
        n = 0
        for ln in self.lengths:  # shortest first, so merged windows are complete when they fire
            for key in [k for k in st.open if k[1] == ln]:
                wins = st.open.pop(key)
                for s in sorted(wins):
                    self._fire(node, key, st, wins[s], st.newest_t - self.watermark_s)
                    n += 1
        st.min_end = INF
        return n

    def open_count(self) -> int:
        """Windows not fired yet."""
        return sum(len(w) for st in self.nodes.values() for w in st.open.values())
