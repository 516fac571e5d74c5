"""Decisions of the local model and where they go: summary, anomaly (high priority) or raw lane."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from fogline.shared import summary as wire

ACTIONS = ("summary", "anomaly", "raw")


@dataclass(frozen=True)
class Decision:
    """Result for one node window set: score, label, confidence and what goes upstream."""
    node: str
    start: float
    end: float
    score: float
    label: str            # "anomaly" | "normal"
    confidence: float     # 0 at the threshold .. 1 at score 0 or 1
    action: str           # "summary" (confident normal) | "anomaly" (confident anomaly) | "raw" (unsure)
    model: str            # name@vVERSION that scored it
    windows: tuple[Any, ...] = ()
    readings: dict[str, list[tuple[float, float]]] | None = None  # raw (t, value) per metric, "raw" only
    reasons: tuple[str, ...] = ()  # up to 3 most unusual features as "name=z" (|z| >= 3), not for summaries
    correction: bool = False  # a re-score of a set decided before (late windows changed it)
    late: bool = False        # an anomaly found only by a re-score
    retract: bool = False     # the re-score clears the anomaly sent before for this set

    @property
    def lane(self) -> str:
        """Outbox lane: anomaly (high priority; also a retraction, so it passes where the anomaly did), summary, raw."""
        return "anomaly" if self.retract else self.action

    @property
    def rev(self) -> int:
        """Revision (shared/summary.py): readings summarised by the set's windows."""
        return sum(int(w.count) for w in self.windows)

    def as_dict(self) -> dict[str, Any]:
        """Compact plain form for the outbox (CBOR): window stats per metric, key and revision fields."""
        body = self._body()
        wire.stamp(body, self.rev, self.correction)
        if self.late:
            body[wire.LATE] = 1
        if self.retract:
            body[wire.RETRACT] = 1
        return body

    def _body(self) -> dict[str, Any]:
        return {"node": self.node, "start": self.start, "end": self.end, "score": round(self.score, 5),
                "label": self.label, "confidence": round(self.confidence, 4), "action": self.action,
                "model": self.model, **({"reasons": list(self.reasons)} if self.reasons else {}),
                "windows": {w.metric: {"count": w.count, "min": w.min, "max": w.max, "mean": w.mean,
                                       "last": w.last, "stddev": w.stddev, "unit": getattr(w, "unit", None)}
                            for w in self.windows},
                **({"readings": {m: [list(p) for p in pts] for m, pts in self.readings.items()}}
                   if self.readings is not None else {})}


def confidence(score: float, thr: float) -> float:
    """Distance of a score from the threshold, scaled to 0..1 on each side."""
    if score >= thr:
        return min(1.0, (score - thr) / max(1.0 - thr, 1e-9))
    return min(1.0, (thr - score) / max(thr, 1e-9))


def relay_sink(relay: Any, on_relayed: Callable[[Decision, int], Any] | None = None
               ) -> Callable[[list[Decision]], Any]:
    """Sink that puts decisions into the relay's outbox (one transaction per batch).

    on_relayed(decision, row_id) runs for each decision the outbox accepted (tier retention prunes
    the data its windows summarise once the cloud acknowledges that row)."""
    def sink(decisions: list[Decision]) -> Any:
        ids = relay.submit_many([(d.lane, d.as_dict(), False) for d in decisions])
        if on_relayed is not None:
            for d, i in zip(decisions, ids):
                if i is not None:
                    on_relayed(d, i)
        return ids
    return sink


def model_topic(site: str) -> str:
    """Cloud topic the gateway takes new models from: fogline/<site>/model."""
    from fogline.shared import topics
    return topics.cloud(site, "model")


def outbox_sink(outbox: Any) -> Callable[[list[Decision]], Any]:
    """Sink that writes decisions (CBOR maps) straight into a fogline.gateway.relay.outbox.Outbox, one transaction per batch."""
    import cbor2

    def sink(decisions: list[Decision]) -> Any:
        return outbox.put_many([(d.lane, cbor2.dumps(d.as_dict()), False) for d in decisions])
    return sink
