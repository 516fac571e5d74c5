"""The late-data half of the Aggregator: fired windows kept for corrections, their eviction, re-opens.

A reading for a fired window updates it in memory (marked dirty, delivered by `flush_late`); a
window no longer in memory is queued for a re-open, which the gateway serves from the store
(`take_reopen()` -> `fogline.gateway.store.late.recompute` -> `reopened()`).
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator

from fogline.gateway.aggregate.windowstats import INF, _Acc

Key = tuple[str, str, float, float]  # (node, metric, length, start)


@dataclass
class _NodeState:
    newest_t: float = -INF
    last_wall: float = 0.0
    min_end: float = INF    # earliest end of any open window: nothing fires before the watermark passes it
    min_evict: float = INF  # earliest end + lateness of any fired window kept for corrections
    # (end + lateness, n, key, acc) of fired windows: the next to leave memory first (stale entries skipped)
    evict_heap: list = field(default_factory=list)
    # (metric, length) -> {start: acc}
    open: dict[tuple[str, float], dict[float, _Acc]] = field(default_factory=dict)
    fired: dict[tuple[str, float], dict[float, _Acc]] = field(default_factory=dict)
    # (metric, length) -> end of the newest fired window: windows starting before it never open again
    fired_upto: dict[tuple[str, float], float] = field(default_factory=dict)
    # (metric, length) -> newest end of a window dropped from memory: at or before it, only the store knows
    evicted_upto: dict[tuple[str, float], float] = field(default_factory=dict)


class LateWindows:
    """Mixin of fogline.gateway.aggregate.core.Aggregator (uses its lateness, covered_from, counters and queues)."""

    nodes: dict[str, _NodeState]
    lateness: dict[float, float]
    idle_close_s: float
    merged: list[float]
    base: float
    covered_from: dict[tuple[str, str], float]
    max_reopen: int
    reopens: int
    reopen_dropped: int
    _merged_set: set[float]
    _dirty: dict[Key, _Acc]
    _reopen: set[Key]
    _n: Iterator[int]

    def _deliver(self, dk: Key, acc: _Acc) -> None:
        raise NotImplementedError

    def _unseen(self, node: str, st: _NodeState, key: tuple[str, float], start: float) -> bool:
        """Never in memory, never evicted, and every stored reading of it came through here: it has none."""
        return start >= self.covered_from.get((node, key[0]), -INF) and start + key[1] > st.evicted_upto.get(key, -INF)

    def _late(self, node: str, st: _NodeState, key: tuple[str, float], start: float, unit: str | None,
              v: float, t: float) -> None:
        """A reading for a fired window: update it in memory, or ask for a re-open from the store."""
        metric, ln = key
        f = st.fired.get(key)
        acc = f.get(start) if f else None
        dk = (node, metric, ln, start)
        if acc is None:
            if self._unseen(node, st, key, start):
                if f is None:
                    f = st.fired[key] = {}
                acc = f[start] = _Acc(start, start + ln, unit)
                self._track_evict(st, acc, key)
            else:
                if dk not in self._reopen:
                    if len(self._reopen) >= self.max_reopen:
                        self.reopen_dropped += 1
                        return
                    self._reopen.add(dk)
                return
        acc.add(v, t)
        self._dirty[dk] = acc

    def _track_evict(self, st: _NodeState, acc: _Acc, key: tuple[str, float], at: float | None = None) -> None:
        e = acc.end + self.lateness[key[1]] if at is None else at
        heapq.heappush(st.evict_heap, (e, next(self._n), key, acc))
        if e < st.min_evict:
            st.min_evict = e

    def _drop(self, st: _NodeState, key: tuple[str, float], a: _Acc) -> None:
        f = st.fired[key]
        del f[a.start]
        if not f:
            del st.fired[key]
        if a.end > st.evicted_upto.get(key, -INF):
            st.evicted_upto[key] = a.end

    def _evict(self, st: _NodeState, gone: Callable[[tuple[str, float], _Acc], bool]) -> None:
        """Drop every fired window for which gone(key, acc) holds (idle nodes); rebuild the eviction heap."""
        for key in list(st.fired):
            for a in [a for a in st.fired[key].values() if gone(key, a)]:
                self._drop(st, key, a)
        st.evict_heap = [(a.end + self.lateness[key[1]], next(self._n), key, a)
                         for key, wins in st.fired.items() for a in wins.values()]
        heapq.heapify(st.evict_heap)
        st.min_evict = st.evict_heap[0][0] if st.evict_heap else INF

    def take_reopen(self) -> list[tuple[str, str, float, float]]:
        """Windows (node, metric, length, start) to recompute from the store; the queue is emptied."""
        out, self._reopen = sorted(self._reopen), set()
        return out

    def reopen_pending(self) -> int:
        """Windows waiting to be recomputed from the store."""
        return len(self._reopen)

    def reopened(self, results: Iterable[tuple[tuple[str, str, float, float], _Acc | None, int]],
                 wall: float) -> int:
        """Recomputed windows back: (key, acc from the store or None, count delivered before); deliver the changed ones.

        The window stays in memory for idle_close_s (wall clock) so the rest of a drain updates it in O(1)."""
        n = 0
        for dk, acc, before in results:
            if acc is None or acc.count == 0:
                continue
            node, metric, ln, start = dk
            st = self.nodes.get(node)
            if st is None:
                st = self.nodes[node] = _NodeState(last_wall=wall)
            acc.sent = before
            acc.keep_until = wall + self.idle_close_s
            st.fired.setdefault((metric, ln), {})[start] = acc
            if ln in self._merged_set:  # the store already has the readings of its open short windows
                for s, a in st.open.get((metric, self.base), {}).items():
                    if start <= s < acc.end:
                        a.merged_into += (ln,)
            self._track_evict(st, acc, (metric, ln))
            self.reopens += 1
            if acc.count > before:
                self._deliver(dk, acc)
                n += 1
        return n

    def kept_count(self) -> int:
        """Fired windows kept in memory for corrections."""
        return sum(len(w) for st in self.nodes.values() for w in st.fired.values())
