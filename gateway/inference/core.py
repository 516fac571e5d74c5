"""Local inference: window sets -> anomaly score -> summary / anomaly / raw decision.

    eng = InferenceEngine(cfg.section("inference"), sink=on_decisions, data_dir=cfg.site.data_dir)
    eng.start()                       # loads CURRENT from the registry, else the bundled model
    gw.on_window(eng.submit)          # each closed aggregate Window; decisions go to `sink`
    ...every second: eng.flush()      # scores sets whose missing metrics never came
    cloud model message: eng.handle_model_message(payload)   # CBOR {"manifest", "model"}
    eng.raw_fetch = gw.query_hot      # optional: "raw" decisions carry the window's raw readings

A node's windows of one interval (one per metric, length `window_s`) form a set; the set is
scored once, when every metric the node reports has arrived, when a later window of that node
arrives, or `set_timeout_s` after its first window. Windows for an already-scored interval are
counted as late and not scored again. Scoring and the model swap share one lock, so every set is
scored by exactly one model and a reload never drops or repeats a set; a model that fails
verification is refused (ModelError, counted, logged) and the previous one keeps serving.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from fogline.gateway.inference.config import InferenceConfig
from fogline.gateway.inference.decisions import ACTIONS, Decision, confidence, model_topic, outbox_sink, relay_sink
from fogline.gateway.inference.features import NodeFeatures, normalise, window_stats
from fogline.gateway.inference.slot import ModelSlot
from fogline.gateway.inference.rescore import LateSet, LateSets
from fogline.gateway.inference.registry import LoadedModel, ModelError, ModelRegistry

log = logging.getLogger(__name__)
__all__ = ["ACTIONS", "Decision", "InferenceConfig", "InferenceEngine", "ModelError", "confidence", "model_topic",
           "outbox_sink", "relay_sink"]

DEFAULT_ALIASES = {"temp": "temperature", "t": "temperature", "hum": "humidity", "rh": "humidity",
                   "press": "pressure", "p": "pressure", "vib": "vibration", "vibration_rms": "vibration"}
FORGET_AFTER = 3


@dataclass
class _Set:
    first_seen: float
    windows: dict[str, Any] = field(default_factory=dict)
    late: LateSet | None = None  # a re-score of a set decided before (or late for its interval)


class InferenceEngine(ModelSlot):
    """Groups windows into per-node sets, scores them with the current model and decides."""

    def __init__(self, cfg: InferenceConfig | None = None, sink: Callable[[list[Decision]], Any] | None = None,
                 data_dir: str | Path = "fogline-data", clock: Callable[[], float] = time.monotonic):
        self.cfg = cfg or InferenceConfig()
        self.sink = sink
        self.clock = clock
        # raw_fetch(node, metric, since, until) -> [(t, value)]: the raw readings a "raw" decision
        # forwards (e.g. Gateway.query_hot); None = window statistics only.
        self.raw_fetch: Callable[[str, str, float, float], list[tuple[float, float]]] | None = None
        reg = Path(self.cfg.registry_dir)
        self.registry = ModelRegistry(reg if reg.is_absolute() else Path(data_dir) / reg)
        self.aliases = {**DEFAULT_ALIASES, **self.cfg.metric_aliases}
        self.model: LoadedModel | None = None
        self._lock = threading.RLock()
        self._load_lock = threading.Lock()
        self._pending: dict[str, dict[float, _Set]] = {}
        self._known: dict[str, set[str]] = {}
        self._missing: dict[str, dict[str, int]] = {}
        self._done_upto: dict[str, float] = {}
        self._features: dict[str, NodeFeatures] = {}
        self.late = LateSets(self.cfg.rescore_keep_sets)
        self.counters = {"windows_in": 0, "windows_other_length": 0, "windows_late": 0, "windows_duplicate": 0,
                         "windows_nonfinite": 0,
                         "sets_scored": 0, "sets_incomplete": 0, "summary": 0, "anomaly": 0, "raw": 0,
                         "model_loads": 0, "model_rejected": 0, "score_errors": 0, "sink_errors": 0,
                         "raw_fetch_errors": 0, "windows_updated": 0, "sets_rescored": 0, "late_anomalies": 0,
                         "retractions": 0}
        self.last_error: str | None = None

    # ------------------------------------------------------------------ windows
    def submit(self, window: Any) -> list[Decision]:
        """Feed one closed Window; returns (and sinks) the decisions it completed."""
        return self.submit_many((window,))

    def submit_many(self, windows: Iterable[Any]) -> list[Decision]:
        """Feed several windows; sets they complete are scored in one batch."""
        ready: list[tuple[str, float, _Set, bool]] = []
        with self._lock:
            now = self.clock()
            for w in windows:
                self._add(w, now, ready)
            decisions = self._score(ready)
        self._deliver(decisions)
        return decisions

    def flush(self, force: bool = False) -> list[Decision]:
        """Score sets waiting longer than set_timeout_s (all of them when force, e.g. on shutdown)."""
        ready: list[tuple[str, float, _Set, bool]] = []
        with self._lock:
            now = self.clock()
            for node, sets in list(self._pending.items()):
                for start in sorted(sets):
                    if start in sets and (force or now - sets[start].first_seen >= self.cfg.set_timeout_s):
                        ready.extend(self._take(node, start, upto=start))
            # windows that corrected sets scored before: one re-score per set and flush
            ready.extend((ls.node, ls.start, _Set(now, ls.windows, ls), True) for ls in self.late.take())
            decisions = self._score(ready)
        self._deliver(decisions)
        return decisions

    def pending(self) -> int:
        with self._lock:
            return sum(len(s) for s in self._pending.values())

    def _add(self, w: Any, now: float, ready: list) -> None:
        self.counters["windows_in"] += 1
        if abs((w.end - w.start) - self.cfg.window_s) > 1e-6:
            self.counters["windows_other_length"] += 1
            return
        if not math.isfinite(w.min + w.max + w.mean + w.last + w.stddev):
            self.counters["windows_nonfinite"] += 1
            log.warning("event=window_nonfinite node=%s metric=%s start=%s", w.node, w.metric, w.start)
            return
        node, start = str(w.node), float(w.start)
        if start <= self._done_upto.get(node, -np.inf):
            self.counters["windows_late"] += 1  # re-scored at the next flush
            if not self.late.add(w):
                self.counters["windows_duplicate"] += 1
            return
        sets = self._pending.setdefault(node, {})
        s = sets.get(start)
        if s is None:
            s = sets[start] = _Set(now)
        metric = str(w.metric)  # the node's own name; aliases map it to the model's at scoring
        if metric in s.windows:
            if w.count > s.windows[metric].count:  # a correction before the set was scored: the newer one
                s.windows[metric] = w
                self.counters["windows_updated"] += 1
            else:
                self.counters["windows_duplicate"] += 1
            return
        s.windows[metric] = w
        known = self._known.setdefault(node, set())
        known.add(metric)
        earlier = [st for st in sets if st < start]
        if earlier:
            ready.extend(self._take(node, max(earlier), upto=max(earlier)))
        if node in self._done_upto and known <= set(s.windows):
            ready.extend(self._take(node, start, upto=start))
        if sum(len(v) for v in self._pending.values()) > self.cfg.max_pending_sets:
            oldest = min(((st, n) for n, v in self._pending.items() for st in v), default=None)
            if oldest:
                ready.extend(self._take(oldest[1], oldest[0], upto=oldest[0]))

    def _take(self, node: str, start: float, upto: float) -> list[tuple[str, float, _Set, bool]]:
        """Remove every pending set of node with start <= upto, oldest first, marking them done."""
        sets = self._pending.get(node, {})
        out = []
        known = self._known.get(node, set())
        for st in sorted(x for x in sets if x <= upto):
            s = sets.pop(st)
            complete = known <= set(s.windows)
            miss = self._missing.setdefault(node, {})
            for k in known:
                miss[k] = 0 if k in s.windows else miss.get(k, 0) + 1
            if not complete:
                self.counters["sets_incomplete"] += 1
                # a metric missing from FORGET_AFTER sets in a row stopped: stop waiting for it
                known -= {k for k, n in miss.items() if n >= FORGET_AFTER}
            out.append((node, st, s, complete))
            self._done_upto[node] = max(self._done_upto.get(node, -np.inf), st)
        if not sets:
            self._pending.pop(node, None)
        return out

    def _score(self, ready: Sequence[tuple[str, float, _Set, bool]]) -> list[Decision]:
        """Features, one model call and decisions for the ready sets (caller holds the lock)."""
        if not ready:
            return []
        m = self.model
        if m is None:
            raise ModelError("inference: no model loaded (call start())")
        fcfg = m.manifest["features"]
        rows = []
        ctxs: list[NodeFeatures] = []
        for node, _st, s, _c in ready:
            nf = self._features.get(node)
            if nf is None:
                nf = self._features[node] = NodeFeatures(metrics=tuple(fcfg["metrics"]), scales=fcfg["scales"],
                                                         floors=fcfg["floors"])
            if s.late is not None:  # a re-score: in the set's own context, the node's live one stays as it is
                nf = s.late.ctx if s.late.ctx is not None else nf.copy()
            ctxs.append(nf.copy())
            stats: dict[str, tuple[float, ...]] = {}
            for k, w in s.windows.items():
                stats.setdefault(self.aliases.get(k, k), window_stats(w))  # two names for one metric: first wins
            rows.append(nf.vector(stats))
        x = normalise(np.array(rows), m.mean, m.std)
        try:
            scores = m.run(x)
        except Exception as e:  # a model that verified but fails on real rows: refuse loudly, keep data
            self.counters["score_errors"] += 1
            log.exception("event=score_failed model=%s", m.ident)
            scores = np.full(len(rows), np.nan, dtype=np.float32)
            self.last_error = f"score failed: {e}"
        thr = self.cfg.threshold if self.cfg.threshold is not None else m.threshold
        cmin = self.cfg.confidence_min if self.cfg.confidence_min is not None else m.confidence_min
        out = []
        names = m.manifest["input"]["features"]
        for i, ((node, st, s, _c), sc) in enumerate(zip(ready, scores)):
            sc = float(sc)
            if not np.isfinite(sc):  # unsure by definition: send the raw window
                action, label, conf = "raw", "normal", 0.0
            else:
                conf = confidence(sc, thr)
                label = "anomaly" if sc >= thr else "normal"
                action = "raw" if conf < cmin else ("anomaly" if label == "anomaly" else "summary")
            self.counters[action] += 1
            ws = tuple(s.windows.values())
            raw = self._raw(node, st, ws) if action == "raw" else None
            why = ()
            if action != "summary":  # the most unusual features, for whoever looks at the event
                top = np.argsort(-np.abs(x[i]))[:3]
                why = tuple(f"{names[j]}={float(x[i, j]):+.1f}" for j in top if abs(x[i, j]) >= 3.0)
            lt = s.late
            prev = lt.prev_action if lt is not None else None
            d = Decision(node, st, st + self.cfg.window_s, sc, label, conf, action, m.ident, ws, raw, why,
                         correction=lt is not None and prev is not None,
                         late=lt is not None and action == "anomaly" and prev != "anomaly",
                         retract=prev == "anomaly" and action != "anomaly")
            if lt is not None:
                self.counters["sets_rescored"] += 1
                self.counters["late_anomalies"] += d.late
                self.counters["retractions"] += d.retract
            self.late.remember(node, st, s.windows, ctxs[i], action)
            out.append(d)
        self.counters["sets_scored"] += len(out)
        return out

    def _raw(self, node: str, start: float, windows: tuple[Any, ...]) -> dict[str, list] | None:
        if self.raw_fetch is None:
            return None
        try:
            return {w.metric: list(self.raw_fetch(node, w.metric, w.start, w.end)) for w in windows}
        except Exception:  # the stats still go upstream; the missing readings are counted
            self.counters["raw_fetch_errors"] += 1
            log.exception("event=raw_fetch_failed node=%s start=%s", node, start)
            return None

    def _deliver(self, decisions: list[Decision]) -> None:
        if decisions and self.sink is not None:
            try:
                self.sink(decisions)
            except Exception:
                self.counters["sink_errors"] += 1
                log.exception("event=decision_sink_failed n=%d", len(decisions))

    def stats(self) -> dict[str, Any]:
        """Counters, the serving model and the last refusal."""
        m = self.model
        return {**self.counters, "model": m.ident if m else None, "model_sha256": m.manifest["sha256"] if m else None,
                "pending_sets": self.pending(), "last_error": self.last_error}
