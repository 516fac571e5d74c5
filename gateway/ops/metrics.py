"""Counters and gauges with labels; JSON snapshot for `fogline status`, Prometheus exposition via prometheus_client.

Increments stay plain dict updates under one lock (they sit on the ingest hot path); prometheus_client renders
them at scrape time through a collector on the instance's own CollectorRegistry (several gateways share a test
process, so nothing goes to the global default registry), together with its process_* metrics.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from fogline.gateway.ops.metric_help import help_for

log = logging.getLogger(__name__)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

LabelKey = tuple[tuple[str, str], ...]


def _key(labels: dict[str, Any]) -> LabelKey:
    if len(labels) == 1:
        for k, v in labels.items():
            return ((k, v if isinstance(v, str) else str(v)),)
    return tuple(sorted((k, str(v)) for k, v in labels.items()))


class Metrics:
    """Counters (monotonic) and gauges (set), keyed by name and labels; thread-safe."""

    def __init__(self, prefix: str = "fogline_") -> None:
        self._lock = threading.Lock()
        self.counters: dict[str, dict[LabelKey, float]] = {}
        self.gauges: dict[str, dict[LabelKey, float]] = {}
        self.help: dict[str, str] = {}
        self.started = time.time()
        self.prefix = prefix
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_Exporter(self))
        ProcessCollector(registry=self.registry)

    def inc(self, name: str, n: float = 1, **labels: Any) -> None:
        """Add n to counter name{labels}."""
        k = _key(labels) if labels else ()
        with self._lock:
            d = self.counters.setdefault(name, {})
            d[k] = d.get(k, 0) + n

    def set(self, name: str, value: float, **labels: Any) -> None:
        """Set gauge name{labels}."""
        k = _key(labels) if labels else ()
        with self._lock:
            self.gauges.setdefault(name, {})[k] = value

    def describe(self, name: str, text: str) -> None:
        """Set the HELP text of name (else metric_help's entry is used)."""
        self.help[name] = text

    def get(self, name: str, **labels: Any) -> float:
        """Current value of a counter or gauge (0 if never set)."""
        k = _key(labels) if labels else ()
        with self._lock:
            for table in (self.counters, self.gauges):
                if name in table and k in table[name]:
                    return table[name][k]
        return 0

    def total(self, name: str) -> float:
        """Sum of a counter over all label sets."""
        with self._lock:
            return sum(self.counters.get(name, {}).values())

    def snapshot(self) -> dict[str, Any]:
        """{"counters": {name: [{labels, value}]}, "gauges": ...} for JSON."""
        with self._lock:
            def dump(t: dict[str, dict[LabelKey, float]]) -> dict[str, list[dict[str, Any]]]:
                return {n: [{"labels": dict(k), "value": v} for k, v in sorted(d.items())]
                        for n, d in sorted(t.items())}
            return {"time": time.time(), "started": self.started, "pid": os.getpid(),
                    "counters": dump(self.counters), "gauges": dump(self.gauges)}

    def write_snapshot(self, path: Path) -> None:
        """Atomically write the JSON snapshot (tmp file + rename)."""
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.snapshot(), indent=1, sort_keys=True))
        os.replace(tmp, path)

    def render_prometheus(self) -> str:
        """Prometheus text exposition format 0.0.4: counters as <prefix><name>_total, gauges, process_*."""
        return generate_latest(self.registry).decode()

    def families(self) -> Iterator[Metric]:
        """The counters and gauges as prometheus_client metric families (what a scrape renders)."""
        with self._lock:
            tables = [(kind, {n: dict(d) for n, d in t.items()})
                      for kind, t in (("counter", self.counters), ("gauge", self.gauges))]
            help_ = dict(self.help)
        for kind, table in tables:
            for name, d in sorted(table.items()):
                full = self.prefix + name
                fam = Metric(full, help_.get(name) or help_for(name), kind)
                sample = full + "_total" if kind == "counter" else full
                for k, v in sorted(d.items()):
                    try:
                        value = float(v)
                    except (TypeError, ValueError):
                        log.warning("event=metric_not_numeric name=%s value=%r", name, v)
                        continue
                    fam.add_sample(sample, dict(k), value)
                yield fam


class _Exporter(Collector):
    """Collector that hands a Metrics' tables to prometheus_client at scrape time."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        return self.metrics.families()


def read_snapshot(path: Path) -> dict[str, Any] | None:
    """Load a snapshot written by write_snapshot (None if missing or unreadable)."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
