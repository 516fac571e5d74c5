"""Gateway-side execution of placed workloads on ingested readings, under a CPU-time cap.

The filter and rule classes are the firmware's own (shared/filters.py, shared/rules.py: pure
Python that also runs on CPython), so a workload computes the same thing wherever it is placed.

    runner = GatewayRunner(cpu_ms_per_s=50.0)
    runner.set_workloads([w1, w2])      # keeps the state of unchanged workloads
    runner.on_readings(readings)        # gw.on_readings hook: fogline.gateway.ingest.validate.Reading list
    runner.stats() -> {name: {"in", "out", "alerts", "shed", "cpu_ms", "last", "active_rules"}}

CPU cap: each workload gets cpu_ms_per_s of thread CPU time (time.thread_time) per wall second;
once over it, its readings are shed until the next second (counted in "shed", never queued).
Model workloads are scored and placed but executed by the [inference] engine; here they only count.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable

from fogline.shared import filters as fw_filters
from fogline.shared import rules as fw_rules
from fogline.gateway.placement.score import Workload

log = logging.getLogger(__name__)


class _Running:
    """One workload's state on the gateway."""

    def __init__(self, w: Workload):
        self.w = w
        self.key = repr((w.kind, w.sensor, w.filters, w.rules, w.model))
        self.chain = fw_filters.build_chain(w.filters) if w.kind == "filter" else None
        self.rules = fw_rules.Rules(w.rules, {}, {}) if w.kind == "rules" else None
        self.metrics = {w.sensor} if w.kind == "filter" else {r["sensor"] for r in w.rules}
        self.counts = {"in": 0, "out": 0, "alerts": 0, "shed": 0}
        self.cpu_s = 0.0
        self.window = -1
        self.window_cpu = 0.0
        self.last: Any = None


class GatewayRunner:
    """Runs the workloads placed on this gateway."""

    def __init__(self, cpu_ms_per_s: float = 50.0, clock: Callable[[], float] = time.monotonic,
                 cpu: Callable[[], float] = time.thread_time):
        self.budget_s = cpu_ms_per_s / 1000.0
        self.clock = clock
        self.cpu = cpu
        self.running: dict[str, _Running] = {}
        self._by_series: dict[tuple[str, str], list[_Running]] = {}
        self.outputs: list[Callable[[str, str, str, float, float], None]] = []  # (workload, node, metric, v, t)
        self.alerts: list[Callable[[str, str, str, bool, float, float], None]] = []  # (workload, node, rule, on, v, t)

    def set_workloads(self, ws: list[Workload]) -> None:
        """Run exactly these workloads; unchanged ones keep their filter/rule state."""
        new: dict[str, _Running] = {}
        for w in ws:
            old = self.running.get(w.name)
            r = _Running(w)
            new[w.name] = old if old is not None and old.key == r.key and old.w.node == w.node else r
        for name in set(self.running) - set(new):
            log.info("event=placement_gateway_stop workload=%s", name)
        for name in set(new) - set(self.running):
            log.info("event=placement_gateway_start workload=%s node=%s", name, new[name].w.node)
        self.running = new
        idx: dict[tuple[str, str], list[_Running]] = {}
        for r in new.values():
            if r.w.kind == "model":
                continue
            for m in r.metrics:
                idx.setdefault((r.w.node, m), []).append(r)
        self._by_series = idx

    def on_readings(self, readings: list[Any]) -> None:
        """Feed new durable readings (only up-lane readings of a workload's node and metric)."""
        if not self._by_series:
            return
        for rd in readings:
            if rd.lane != "up":
                continue
            rs = self._by_series.get((rd.node, rd.metric))
            if not rs:
                continue
            for r in rs:
                self._feed(r, rd)

    def _feed(self, r: _Running, rd: Any) -> None:
        sec = int(self.clock())
        if sec != r.window:
            r.window, r.window_cpu = sec, 0.0
        if r.window_cpu >= self.budget_s:
            r.counts["shed"] += 1
            return
        c0 = self.cpu()
        r.counts["in"] += 1
        now_ms = int(rd.t * 1000)
        try:
            if r.chain is not None:
                v = r.chain.update(rd.value, now_ms)
                if v is not None:
                    self._out(r, rd, v)
                tv = r.chain.tick(now_ms)
                if tv is not None:
                    self._out(r, rd, tv)
            elif r.rules is not None:
                raw, filt = r.rules.for_sensor(rd.metric)
                for rule in list(raw) + list(filt):
                    tr = rule.step(rd.value, now_ms)
                    if tr is not None:
                        r.counts["alerts"] += 1
                        for cb in self.alerts:
                            cb(r.w.name, rd.node, rule.name, bool(tr), rd.value, rd.t)
        except Exception:  # a bad value must not stop the other workloads
            r.counts.setdefault("errors", 0)
            r.counts["errors"] += 1
            log.exception("event=placement_workload_error workload=%s", r.w.name)
        dt = self.cpu() - c0
        r.window_cpu += dt
        r.cpu_s += dt

    def _out(self, r: _Running, rd: Any, v: float) -> None:
        r.counts["out"] += 1
        r.last = [rd.t, v]
        for cb in self.outputs:
            cb(r.w.name, rd.node, rd.metric, v, rd.t)

    def stats(self) -> dict[str, dict[str, Any]]:
        out = {}
        for name, r in self.running.items():
            st: dict[str, Any] = dict(r.counts)
            st["cpu_ms"] = round(r.cpu_s * 1000, 3)
            st["last"] = r.last
            if r.rules is not None:
                st["active_rules"] = r.rules.active()
            out[name] = st
        return out
