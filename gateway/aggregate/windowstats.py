"""Window statistics: the delivered `Window` (summary wire body) and the running accumulator behind it."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Sequence

from fogline.shared import summary as wire

INF = math.inf
_new = object.__new__


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
    correction: bool = False  # an earlier revision of this window was delivered

    @classmethod
    def make(cls, node: str, metric: str, start: float, end: float, count: int, min: float, max: float,
             mean: float, last: float, stddev: float, unit: str | None, correction: bool) -> "Window":
        """Window(...) without the frozen __init__'s setattr per field (a window fires every few readings)."""
        w = _new(cls)
        w.__dict__.update(node=node, metric=metric, start=start, end=end, count=count, min=min, max=max, mean=mean,
                          last=last, stddev=stddev, unit=unit, correction=correction)
        return w

    @property
    def length(self) -> float:
        return self.end - self.start

    @property
    def rev(self) -> int:
        """Revision (shared/summary.py): the number of readings summarised; grows with each correction."""
        return self.count

    def as_dict(self) -> dict:
        """The summary wire body: statistics, window key fields and revision."""
        return wire.stamp({"node": self.node, "metric": self.metric, "start": self.start, "end": self.end,
                           "count": self.count, "min": self.min, "max": self.max, "mean": self.mean,
                           "last": self.last, "stddev": self.stddev, "unit": self.unit}, self.rev, self.correction)


@dataclass(slots=True)
class _Acc:
    start: float
    end: float
    unit: str | None
    count: int = 0
    mean: float = 0.0
    m2: float = 0.0        # Welford sum of squared deviations
    min: float = INF
    max: float = -INF
    last: float = 0.0
    last_t: float = -INF
    sent: int = 0          # count at the last delivery (0 = never delivered)
    keep_until: float = 0.0  # wall clock: a re-opened window stays in memory at least until then
    merged_into: tuple = ()  # longer lengths already holding these readings (re-opened from the store)

    def stats(self) -> tuple[int, float, float, float, float, float, float]:
        """(count, mean, m2, min, max, last, last_t): what add() updates, for a caller's loop to update in locals."""
        return self.count, self.mean, self.m2, self.min, self.max, self.last, self.last_t

    def set_stats(self, count: int, mean: float, m2: float, lo: float, hi: float, last: float,
                  last_t: float) -> None:
        """Take back the statistics stats() handed out."""
        self.count, self.mean, self.m2 = count, mean, m2
        self.min, self.max, self.last, self.last_t = lo, hi, last, last_t

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


def acc_of(start: float, end: float, unit: str | None, points: Iterable[tuple[float, float]]) -> _Acc:
    """An accumulator over (t, value) points (a window recomputed from the store)."""
    a = _Acc(start, end, unit)
    for t, v in sorted(points):
        a.add(float(v), float(t))
    return a


def lateness_for(lengths: Sequence[float], allowed: Sequence[float] | float | None) -> dict[float, float]:
    """Allowed lateness per window length: one value for all, one per length, or None = max(length, 60 s)."""
    if allowed is None or (not isinstance(allowed, (int, float)) and len(allowed) == 0):
        return {ln: max(ln, 60.0) for ln in lengths}
    if isinstance(allowed, (int, float)):
        return {ln: float(allowed) for ln in lengths}
    if len(allowed) == 1:
        return {ln: float(allowed[0]) for ln in lengths}
    if len(allowed) != len(lengths):
        raise ValueError("aggregate.allowed_lateness_s: give one value, or one per windows_s entry")
    return {ln: float(a) for ln, a in zip(lengths, allowed)}
