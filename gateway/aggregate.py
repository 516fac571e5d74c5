"""Fog-tier aggregation: tumbling windows per node and metric, closed by an event-time watermark.

Each (node, metric, length) series keeps one open window per window start. A node's
watermark is its newest reading time minus `watermark_s`; a window closes (and is
delivered) once the watermark passes its end. Readings for an already-closed window
are late: they stay in the raw store but are not aggregated (counted in
`late_readings`). Windows of an idle node are closed by `close_idle()` after
`idle_close_s` of wall-clock silence, so the last window of a node that went away is
not held forever.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Iterable, Sequence


@dataclass(frozen=True)
class Window:
    """Statistics of one tumbling window [start, end) of one node's metric (times: epoch s)."""
    node: str
    metric: str
    start: float
    end: float
    count: int
    min: float
    max: float
    mean: float
    last: float
    stddev: float          # population standard deviation (0.0 for a single reading)
    unit: str | None = None

    @property
    def length(self) -> float:
        return self.end - self.start

    def as_dict(self) -> dict:
        return {"node": self.node, "metric": self.metric, "start": self.start, "end": self.end,
                "count": self.count, "min": self.min, "max": self.max, "mean": self.mean,
                "last": self.last, "stddev": self.stddev, "unit": self.unit}


@dataclass
class _Acc:
    start: float
    end: float
    unit: str | None
    count: int = 0
    mean: float = 0.0
    m2: float = 0.0        # Welford sum of squared deviations
    min: float = math.inf
    max: float = -math.inf
    last: float = 0.0
    last_t: float = -math.inf

    def merge(self, o: "_Acc") -> None:
        """Fold a shorter window's statistics in (Chan et al. parallel mean/variance)."""
        if o.count == 0:
            return
        n = self.count + o.count
        d = o.mean - self.mean
        self.mean += d * o.count / n
        self.m2 += o.m2 + d * d * self.count * o.count / n
        self.count = n
        if o.min < self.min:
            self.min = o.min
        if o.max > self.max:
            self.max = o.max
        if o.last_t >= self.last_t:
            self.last_t = o.last_t
            self.last = o.last

    def add(self, v: float, t: float) -> None:
        self.count += 1
        d = v - self.mean
        self.mean += d / self.count
        self.m2 += d * (v - self.mean)
        if v < self.min:
            self.min = v
        if v > self.max:
            self.max = v
        if t >= self.last_t:  # 'last' is by reading time, not arrival order
            self.last_t = t
            self.last = v


@dataclass
class _NodeState:
    newest_t: float = -math.inf
    last_wall: float = 0.0
    min_end: float = math.inf  # earliest end of any open window: nothing closes before the watermark passes it
    # (metric, length) -> {start: acc}
    open: dict[tuple[str, float], dict[float, _Acc]] = field(default_factory=dict)
    # (metric, length) -> end of newest closed window (late threshold)
    closed_upto: dict[tuple[str, float], float] = field(default_factory=dict)


class Aggregator:
    """Tumbling windows; `emit(window)` is called for each closed window (in the caller's thread)."""

    def __init__(self, lengths: Iterable[float], watermark_s: float, emit: Callable[[Window], None],
                 idle_close_s: float = 30.0):
        self.lengths = sorted(set(float(x) for x in lengths))
        base = self.lengths[0]
        # Longer windows that are whole multiples of the shortest are built by merging closed short
        # windows (one accumulator update per reading instead of one per length); others directly.
        self.merged = [ln for ln in self.lengths[1:] if (ln / base).is_integer()]
        self.direct = [ln for ln in self.lengths if ln not in self.merged]
        self.base = base
        self.watermark_s = float(watermark_s)
        self.idle_close_s = float(idle_close_s)
        self.emit = emit
        self.nodes: dict[str, _NodeState] = {}
        self.late_readings = 0
        self.windows_emitted = 0
        # (node, metric, length) -> end of the newest window already delivered before a restart:
        # replayed readings rebuild open windows without delivering those again
        self.suppress: dict[tuple[str, str, float], float] = {}

    def add(self, node: str, metric: str, unit: str | None, value: float, t: float, wall: float) -> None:
        """Add one reading (t = reading time, wall = gateway clock now)."""
        st = self.nodes.get(node)
        if st is None:
            st = self.nodes[node] = _NodeState()
        st.last_wall = wall
        v = float(value)
        for ln in self.direct:
            key = (metric, ln)
            start = math.floor(t / ln) * ln
            if start < st.closed_upto.get(key, -math.inf):
                self.late_readings += 1
                continue
            wins = st.open.get(key)
            if wins is None:
                wins = st.open[key] = {}
            acc = wins.get(start)
            if acc is None:
                acc = wins[start] = _Acc(start, start + ln, unit)
                if acc.end < st.min_end:
                    st.min_end = acc.end
            acc.add(v, t)
        if t > st.newest_t:
            st.newest_t = t
            if t - self.watermark_s >= st.min_end:
                self._advance(node, st, t - self.watermark_s)

    def add_many(self, node: str, metrics: Sequence[str], units: Sequence[str | None], values: Sequence[float],
                 times: Sequence[float], wall: float) -> None:
        """Add one pack's readings of a node, as columns (same result as add() per reading, in order)."""
        add = self.add
        for metric, unit, v, t in zip(metrics, units, values, times):
            add(node, metric, unit, v, t, wall)

    def _advance(self, node: str, st: _NodeState, watermark: float) -> None:
        # shortest first: closing a short window feeds the longer ones before they are checked
        for key in sorted(st.open, key=lambda k: k[1]):
            wins = st.open[key]
            if not wins:
                continue
            done = [s for s, a in wins.items() if a.end <= watermark]
            for s in sorted(done):
                self._close(node, key, st, wins.pop(s))
        min_end = math.inf
        for wins in st.open.values():
            for a in wins.values():
                if a.end < min_end:
                    min_end = a.end
        st.min_end = min_end

    def _close(self, node: str, key: tuple[str, float], st: _NodeState, acc: _Acc) -> None:
        if acc.end > st.closed_upto.get(key, -math.inf):
            st.closed_upto[key] = acc.end
        if key[1] == self.base:
            for ln in self.merged:
                pkey = (key[0], ln)
                pstart = math.floor(acc.start / ln) * ln
                if pstart < st.closed_upto.get(pkey, -math.inf):
                    self.late_readings += acc.count
                    continue
                wins = st.open.get(pkey)
                if wins is None:
                    wins = st.open[pkey] = {}
                p = wins.get(pstart)
                if p is None:
                    p = wins[pstart] = _Acc(pstart, pstart + ln, acc.unit)
                    if p.end < st.min_end:
                        st.min_end = p.end
                p.merge(acc)
        if self.suppress and acc.end <= self.suppress.get((node, key[0], key[1]), -math.inf):
            return  # delivered before the restart
        std = math.sqrt(acc.m2 / acc.count) if acc.count > 1 else 0.0
        w = Window(node, key[0], acc.start, acc.end, acc.count, acc.min, acc.max, acc.mean,
                   acc.last, std, acc.unit)
        self.windows_emitted += 1
        self.emit(w)

    def close_idle(self, wall: float) -> int:
        """Close every open window of nodes silent for idle_close_s; returns windows closed."""
        n = 0
        for node, st in self.nodes.items():
            if st.open and wall - st.last_wall >= self.idle_close_s:
                n += self._flush_node(node, st)
        return n

    def flush(self) -> int:
        """Close every open window now (clean shutdown); returns windows closed."""
        return sum(self._flush_node(node, st) for node, st in self.nodes.items())

    def _flush_node(self, node: str, st: _NodeState) -> int:
        n = 0
        for ln in self.lengths:  # shortest first, so merged windows are complete when they close
            for key in [k for k in st.open if k[1] == ln]:
                wins = st.open[key]
                for s in sorted(wins):
                    self._close(node, key, st, wins.pop(s))
                    n += 1
        st.min_end = math.inf
        return n

    def open_count(self) -> int:
        return sum(len(w) for st in self.nodes.values() for w in st.open.values())
