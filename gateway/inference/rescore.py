"""Re-scoring of corrected windows: the sets a node's model decided recently, and late windows waiting for them.

A window that arrives for a set the engine already scored (a correction, or a window late for
its set) waits here until the engine's next flush; then the set is scored again with its newest
windows, in the feature context it was first scored in (so the node's context is not moved twice).
Per node only the last `keep` decided sets are kept; an older set is re-scored from the late
windows alone, in the node's current context, and its previous decision is unknown.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from fogline.gateway.inference.features import NodeFeatures


@dataclass
class _Decided:
    windows: dict[str, Any]   # metric -> Window the set was scored with
    ctx: NodeFeatures         # feature context before it was scored
    action: str               # what went upstream: summary | anomaly | raw


@dataclass
class LateSet:
    """One set to score again: its windows (newest revisions), the context and the decision before."""
    node: str
    start: float
    windows: dict[str, Any]
    ctx: NodeFeatures | None   # None: not kept any more, score in the node's current context (a copy)
    prev_action: str | None    # None: unknown (never scored, or forgotten)


class LateSets:
    """Bounded memory of decided sets per node plus the late windows waiting for a re-score."""

    def __init__(self, keep: int = 16):
        self.keep = max(1, int(keep))
        self.decided: dict[str, OrderedDict[float, _Decided]] = {}
        self.waiting: dict[tuple[str, float], dict[str, Any]] = {}

    def remember(self, node: str, start: float, windows: dict[str, Any], ctx: NodeFeatures, action: str) -> None:
        """The set (node, start) was scored with these windows in context ctx and sent as action."""
        od = self.decided.setdefault(node, OrderedDict())
        od[start] = _Decided(dict(windows), ctx, action)
        od.move_to_end(start)
        while len(od) > self.keep:
            od.popitem(last=False)

    def add(self, w: Any) -> bool:
        """A window for a set already scored; False if an equal or newer revision is already waiting."""
        ws = self.waiting.setdefault((str(w.node), float(w.start)), {})
        old = ws.get(str(w.metric))
        if old is not None and old.count >= w.count:
            return False
        ws[str(w.metric)] = w
        return True

    def take(self) -> list[LateSet]:
        """The sets to score again now (every waiting one), oldest first; the waiting list is emptied."""
        out = []
        waiting, self.waiting = self.waiting, {}
        for (node, start), ws in sorted(waiting.items(), key=lambda kv: kv[0][1]):
            d = self.decided.get(node, {}).get(start)
            if d is None:
                out.append(LateSet(node, start, ws, None, None))
                continue
            fresh = {m: w for m, w in ws.items() if m not in d.windows or w.count > d.windows[m].count}
            if fresh:
                out.append(LateSet(node, start, {**d.windows, **fresh}, d.ctx.copy(), d.action))
        return out

    def kept(self) -> int:
        """Decided sets held for re-scoring."""
        return sum(len(od) for od in self.decided.values())
