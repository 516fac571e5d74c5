"""Process-wide counters and gauges with labels; JSON snapshot for `fogline status`, Prometheus text."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any

LabelKey = tuple[tuple[str, str], ...]


def _key(labels: dict[str, Any]) -> LabelKey:
    if len(labels) == 1:
        for k, v in labels.items():
            return ((k, v if isinstance(v, str) else str(v)),)
    return tuple(sorted((k, str(v)) for k, v in labels.items()))


class Metrics:
    """Counters (monotonic) and gauges (set), keyed by name and labels; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counters: dict[str, dict[LabelKey, float]] = {}
        self.gauges: dict[str, dict[LabelKey, float]] = {}
        self.help: dict[str, str] = {}
        self.started = time.time()

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

    def render_prometheus(self, prefix: str = "fogline_") -> str:
        """Prometheus text exposition format 0.0.4."""
        out: list[str] = []
        with self._lock:
            for kind, table in (("counter", self.counters), ("gauge", self.gauges)):
                for name, d in sorted(table.items()):
                    full = prefix + name
                    if name in self.help:
                        out.append(f"# HELP {full} {self.help[name]}")
                    out.append(f"# TYPE {full} {kind}")
                    for k, v in sorted(d.items()):
                        lab = ",".join(f'{a}="{_esc(b)}"' for a, b in k)
                        out.append(f"{full}{{{lab}}} {v}" if lab else f"{full} {v}")
        return "\n".join(out) + "\n"


def _esc(s: str) -> str:
    return s.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def read_snapshot(path: Path) -> dict[str, Any] | None:
    """Load a snapshot written by write_snapshot (None if missing or unreadable)."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
