"""Readings of the ingest path: `Reading` objects, and packs held as columns until a consumer wants objects.

A validated all-good pack (the common case) keeps its readings as columns (`PackReadings`: seqs implied by
the first seq, then metrics, units, values, times lists); the store and the aggregators read the columns, and
`Reading` objects are built only when someone indexes or iterates it (from then on they are the truth: a
consumer may change them, and `columns()` answers None so nobody reads stale columns).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import chain, repeat
from typing import Any, Iterator, overload

Columns = tuple[list[str], list["str | None"], list[float], list[float]]


@dataclass(slots=True)
class Reading:
    """One resolved reading of a node (value is a float; t is epoch seconds)."""
    node: str
    lane: str
    seq: int
    metric: str
    unit: str | None
    value: float
    t: float


class PackReadings(Sequence[Reading]):
    """Readings first..first+n-1 of one node and lane as columns; Reading objects built on first use."""

    __slots__ = ("node", "lane", "first", "metrics", "units", "values", "times", "_objs")

    def __init__(self, node: str, lane: str, first: int, metrics: list[str], units: list[str | None],
                 values: list[float], times: list[float]):
        self.node, self.lane, self.first = node, lane, first
        self.metrics, self.units, self.values, self.times = metrics, units, values, times
        self._objs: list[Reading] | None = None

    def columns(self) -> Columns | None:
        """(metrics, units, values, times) while no Reading was handed out (None after: objects are the truth)."""
        if self._objs is not None:
            return None
        return self.metrics, self.units, self.values, self.times

    def objects(self) -> list[Reading]:
        """The readings as Reading objects (built once)."""
        if self._objs is None:
            n = len(self.metrics)
            self._objs = list(map(Reading, repeat(self.node, n), repeat(self.lane, n),
                                  range(self.first, self.first + n), self.metrics, self.units, self.values,
                                  self.times))
        return self._objs

    def shifted(self, base: int) -> Sequence[Reading]:
        """The same readings with every seq moved by base (a node epoch's offset), sharing the columns."""
        if self._objs is not None:
            return [Reading(r.node, r.lane, r.seq + base, r.metric, r.unit, r.value, r.t) for r in self._objs]
        return PackReadings(self.node, self.lane, self.first + base, self.metrics, self.units, self.values,
                            self.times)

    def __len__(self) -> int:
        return len(self.metrics)

    @overload
    def __getitem__(self, i: int) -> Reading: ...

    @overload
    def __getitem__(self, i: slice) -> list[Reading]: ...

    def __getitem__(self, i: Any) -> Any:
        return self.objects()[i]

    def __iter__(self) -> Iterator[Reading]:
        return iter(self.objects())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (list, PackReadings)):
            return self.objects() == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"PackReadings({self.node!r}, {self.lane!r}, seqs {self.first}..{self.first + len(self) - 1})"


def pack_columns(rs: Sequence[Reading]) -> PackReadings | None:
    """rs itself when it is a pack still held as columns, else None."""
    return rs if type(rs) is PackReadings and rs._objs is None else None


class BatchReadings(Sequence[Reading]):
    """The new readings of one commit, pack after pack, for hooks: objects built only if a hook iterates."""

    __slots__ = ("parts", "_n", "_objs")

    def __init__(self, parts: list[Sequence[Reading]]):
        self.parts = parts
        self._n = sum(map(len, parts))
        self._objs: list[Reading] | None = None

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, i: Any) -> Any:
        if self._objs is None:
            self._objs = list(chain.from_iterable(self.parts))
        return self._objs[i]

    def __iter__(self) -> Iterator[Reading]:
        return iter(self._objs) if self._objs is not None else chain.from_iterable(self.parts)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (list, BatchReadings)):
            return list(self) == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]
