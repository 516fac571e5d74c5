"""Workload placement component: decide, apply through the twin / gateway runner, report.

    [placement]                       # see gateway/placement/score.py for every knob and the formula
    enabled = true
    [[placement.workloads]]
    name = "t-smooth"; kind = "filter"; node = "n1"; sensor = "temperature"
    filters = [{ type = "median", window_size = 5, send_every = 5 }]
    heap_bytes = 2048; cpu_us = 40

On every node `state` (capabilities changed) and every interval_s, each workload is scored
(gateway/placement/score.py, pure). Applying a decision:
  on the node     its sensor's filter chain / its rules go into the node's desired config, pushed by
                  the twin (signed, versioned, retained); the node applies it and reports the version;
  on the gateway  the node's config is pushed without it (raw readings come up) and GatewayRunner
                  runs it on the ingested readings under a CPU-time cap.
A workload's filters replace the sensor's chain on the node (the sensor list comes from the twin
file, else the board file). Decisions, per-candidate scores and reasons go to
<data_dir>/placement.json (`fogline placement`) and retained to fogline/<site>/_gw/<gw>/placement.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from pathlib import Path
from typing import Any, Callable

from fogline.gateway.placement import health as health_mod
from fogline.gateway.placement.fragment import node_fragment
from fogline.gateway.placement.run import GatewayRunner
from fogline.gateway.placement.score import (NO_STATE, Decision, PlacementConfig, decide, gateway_candidate,
                                     node_candidate)
from fogline.shared import cbor, topics
from fogline.gateway.aio import cancel_and_wait

log = logging.getLogger(__name__)


class Placement:
    """Gateway component: `await start(services)`, `await stop()`; `await evaluate()` re-decides now."""
    name = "placement"

    def __init__(self, cfg: PlacementConfig, site: str, gw_id: str, data_dir: str | Path, twin: Any = None,
                 clock: Any = time.time, health_source: Callable[[], dict[str, Any]] | None = None):
        """health_source: the gateway host's health (fogline.gateway.placement.health.snapshot of data_dir by default)."""
        cfg.validate()
        self.cfg = cfg
        self.site = site
        self.gw_id = gw_id
        self.data_dir = Path(data_dir)
        self.twin = twin
        self.clock = clock
        self.workloads = cfg.parsed_workloads()
        self.path = Path(cfg.decisions_file) if cfg.decisions_file else self.data_dir / "placement.json"
        self.runner = GatewayRunner(cfg.gw_cpu_ms_per_s)
        self.current: dict[str, str | None] = {}
        self.decisions: dict[str, dict[str, Any]] = {}
        self.node_errors: dict[str, str] = {}
        self.svc: Any = None  # fogline.gateway.services.Services once started
        self._task: asyncio.Task | None = None
        self._lock = asyncio.Lock()
        self._health: tuple[float, dict[str, Any]] = (0.0, {})
        self._health_source = health_source or (lambda: health_mod.snapshot(self.data_dir))
        self.counters = {"evaluations": 0, "decisions": 0, "moves": 0, "pushes": 0, "push_errors": 0,
                         "config_errors": 0, "unplaced": 0, "score_us_total": 0.0}
        self.events: list[dict[str, Any]] = []  # last moves (bounded) with timestamps, for the report
        self._load()

    # -- component -------------------------------------------------------------------------
    async def start(self, services: Any) -> None:
        from fogline.gateway import services as services_mod
        self.svc = svc = services_mod.of(services)
        svc.on_state(self._on_state)
        svc.on_readings(self.runner.on_readings)
        self.runner.alerts.append(self._on_gateway_rule)
        self._apply_runner()
        self._task = asyncio.create_task(self._loop(), name="placement")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._save()

    def _on_state(self, node: str, _st: Any, _dev: Any = None) -> None:
        if any(w.node == node for w in self.workloads):
            asyncio.ensure_future(self.evaluate([node]))

    async def _loop(self) -> None:
        while True:
            try:
                await self.evaluate()
            except Exception:
                log.exception("event=placement_evaluate_failed")
            await asyncio.sleep(self.cfg.interval_s)

    # -- deciding --------------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        t, h = self._health
        now = time.monotonic()
        if now - t > 1.0:
            h = self._health_source()
            self._health = (now, h)
        return h

    def decide_all(self, nodes: list[str] | None = None) -> list[Decision]:
        """Pure part over the current view: one Decision per workload (of `nodes`, default all)."""
        now = self.clock()
        reg = self.svc.registry if self.svc is not None else None
        h = self.health()
        out = []
        gid = f"gateway:{self.gw_id}"
        declared = sum(x.heap_bytes for x in self.workloads if self.current.get(x.name) == gid)
        for w in self.workloads:
            if nodes is not None and w.node not in nodes:
                continue
            if self.owner(w.node) != self.gw_id:
                continue
            dev = reg.devices.get(w.node) if reg is not None else None
            nc = node_candidate(dev, now)
            if dev is None:
                nc.name, nc.id = w.node, f"node:{w.node}"
            gc_ = gateway_candidate(self.gw_id, h, declared)
            t0 = time.perf_counter()
            d = decide(w, [nc, gc_], self.cfg, self.current.get(w.name))
            self.counters["score_us_total"] += (time.perf_counter() - t0) * 1e6
            if (d.placed == gid) != (d.previous == gid) and not self._waiting(d):
                declared += w.heap_bytes if d.placed == gid else -w.heap_bytes  # the cap holds within one pass
            out.append(d)
        return out

    def owner(self, node: str) -> str:
        """Gateway that places node's workloads: this one, or the node's primary in a cluster."""
        if self.svc is None:
            return self.gw_id
        try:
            return self.svc.primary_of(node) or self.gw_id
        except Exception:  # a cluster view being rebuilt: keep placing
            return self.gw_id

    async def evaluate(self, nodes: list[str] | None = None) -> list[Decision]:
        """Decide, apply what moved (node configs through the twin, gateway runner), persist, publish."""
        async with self._lock:
            decisions = self.decide_all(nodes)
            self.counters["evaluations"] += 1
            touched: set[str] = set()
            now = self.clock()
            released = False
            for w in self.workloads:
                other = self.owner(w.node)
                if other != self.gw_id and (nodes is None or w.node in nodes):
                    # another gateway is the node's primary: it places (and runs) this workload now
                    released |= self.current.pop(w.name, None) is not None
                    self.decisions[w.name] = {"workload": w.name, "node": w.node, "kind": w.kind, "placed": None,
                                              "reason": f"node {w.node} is served by gateway {other}, which places it",
                                              "scores": [], "ts": now}
            if released:
                self._apply_runner()
            moved: list[Decision] = []
            for d in decisions:
                self.counters["decisions"] += 1
                if d.placed is None:
                    self.counters["unplaced"] += 1
                if d.changed and not self._waiting(d):
                    touched.add(d.node)
                    moved.append(d)
                    self.current[d.workload] = d.placed
                rec = d.as_dict()
                rec["ts"] = now
                rec["placed"] = self.current.get(d.workload)
                if self._waiting(d):
                    rec["reason"] = f"waiting for the node's first state (would be: {d.reason})"
                self.decisions[d.workload] = rec
            failed = {node for node in sorted(touched) if not await self._apply_node(node)}
            for d in moved:
                if d.node in failed:
                    # the node's config cannot follow: keep the old placement (no double or lost processing)
                    if d.previous is None:
                        self.current.pop(d.workload, None)
                    else:
                        self.current[d.workload] = d.previous
                    rec = self.decisions[d.workload]
                    rec["placed"] = d.previous
                    rec["reason"] = f"not moved ({self.node_errors.get(d.node)}); {d.reason}"
                    continue
                self.counters["moves"] += 1
                self.events.append({"ts": now, "workload": d.workload, "from": d.previous, "to": d.placed,
                                    "reason": d.reason})
                del self.events[:-50]
                log.info("event=placement_move workload=%s from=%s to=%s reason=%s", d.workload, d.previous,
                         d.placed, d.reason)
            if touched:
                self._apply_runner()
            for d in decisions:
                nt = self.twin.nodes.get(d.node) if self.twin is not None else None
                rec = self.decisions[d.workload]
                rec["config_version"] = nt.desired_version if nt else None
                rec["node_reports"] = nt.reported_version if nt else None
                rec["config_error"] = self.node_errors.get(d.node) or (nt.invalid if nt else None)
            if touched or released or nodes is None:
                # file, metrics and the retained message on a move, else once per interval_s: a state
                # message from each of many nodes must not rewrite the whole report each time
                self._save()
                self._export()
                await self._publish()
            return decisions

    def _on_gateway_rule(self, workload: str, node: str, rule: str, active: bool, value: float, t: float) -> None:
        log.warning("event=placement_rule workload=%s node=%s rule=%s active=%s value=%s t=%s", workload, node, rule,
                    active, value, t)

    def _export(self) -> None:
        m = self.svc.metrics if self.svc is not None else None
        if m is None:
            return
        where: dict[str, int] = {"node": 0, "gateway": 0, "none": 0}
        for w in self.workloads:
            c = self.current.get(w.name)
            where[c.split(":")[0] if c else "none"] += 1
        for k, v in where.items():
            m.set("placement_workloads", v, where=k)
        m.set("placement_moves", self.counters["moves"])
        for name, st in self.runner.stats().items():
            for k in ("in", "out", "alerts", "shed"):
                m.set(f"placement_gateway_{k}", st.get(k, 0), workload=name)

    def _waiting(self, d: Decision) -> bool:
        # Nothing moves before the node's first state: a pushed version must be above the one it runs.
        return any(s.candidate == f"node:{d.node}" and s.reason == NO_STATE for s in d.scores)

    async def _apply_node(self, node: str) -> bool:
        """Push node's desired config with the workloads placed on it; False (reason in node_errors) if not."""
        if self.twin is None:
            self.node_errors[node] = "no twin: node configs cannot be pushed"
            return False
        mine = [w for w in self.workloads if w.node == node]
        here = [w for w in mine if self.current.get(w.name) == f"node:{node}"]
        from fogline.gateway.twin.doc import board_fragment
        nt = self.twin.nodes.get(node)
        dev = self.svc.registry.devices.get(node) if self.svc is not None and self.svc.registry else None
        board = (nt.board if nt else None) or (dev.board if dev else None)
        frag, err = node_fragment(node, here, mine, self.twin.bases.get(node), board_fragment(board),
                                  dev.sensors if dev else None)
        if err:
            self.node_errors[node] = err
            self.counters["config_errors"] += 1
            log.warning("event=placement_config_error node=%s error=%s", node, err)
            return False
        try:
            nt = await self.twin.set_overlay(node, frag)
        except Exception as e:
            self.counters["push_errors"] += 1
            self.node_errors[node] = f"push: {e}"
            log.exception("event=placement_push_failed node=%s", node)
            return False
        if nt.invalid:  # the twin refused the composed config (validator, size): the node keeps its old one
            self.counters["config_errors"] += 1
            self.node_errors[node] = f"twin: {nt.invalid}"
            return False
        self.node_errors.pop(node, None)
        self.counters["pushes"] += 1
        log.info("event=placement_pushed node=%s version=%s workloads_on_node=%s", node, nt.desired_version,
                 ",".join(w.name for w in here) or "-")
        return True

    def _apply_runner(self) -> None:
        gid = f"gateway:{self.gw_id}"
        self.runner.set_workloads([w for w in self.workloads if self.current.get(w.name) == gid])

    # -- reporting -------------------------------------------------------------------------
    def report(self) -> dict[str, Any]:
        n = max(1, self.counters["decisions"])
        return {"gw": self.gw_id, "site": self.site, "ts": self.clock(), "current": dict(self.current),
                "decisions": self.decisions, "gateway_workloads": self.runner.stats(),
                "counters": {**self.counters, "score_us_per_decision": round(self.counters["score_us_total"] / n, 2)},
                "events": self.events[-20:], "node_errors": dict(self.node_errors)}

    def _save(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps(self.report(), indent=1, default=str))
            os.replace(tmp, self.path)
        except OSError as e:
            log.error("event=placement_save_failed path=%s error=%s", self.path, e)

    def _load(self) -> None:
        # Current placements survive a restart, so hysteresis and stickiness hold across it.
        try:
            old = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return
        names = {w.name for w in self.workloads}
        cur = old.get("current") if isinstance(old, dict) else None
        if isinstance(cur, dict):
            self.current = {k: v for k, v in cur.items() if k in names and (v is None or isinstance(v, str))}

    async def _publish(self) -> None:
        if not self.cfg.publish or self.svc is None or not self.svc.connected:
            return
        rep = self.report()
        msg = {"gw": self.gw_id, "ts": rep["ts"], "current": rep["current"],
               "decisions": {k: {"placed": v.get("placed"), "reason": v.get("reason"),
                                 "scores": [{"candidate": s["candidate"], "score": s["score"],
                                             "feasible": s["feasible"], "reason": s["reason"]}
                                            for s in v.get("scores", [])]}
                             for k, v in rep["decisions"].items()}}
        try:
            await self.svc.publish(topics.gateway(self.site, self.gw_id, "placement"), cbor.dumps(msg), 1, True)
        except Exception as e:
            log.warning("event=placement_publish_failed error=%s", e)


def attach(gw: Any, cfg: Any | None = None,
           health_source: Callable[[], dict[str, Any]] | None = None) -> Placement | None:
    """Add placement to a Gateway when [placement] enabled; reuses the gateway's twin or adds one."""
    cfg = cfg or gw.config
    pc = cfg.section("placement")
    if isinstance(pc, dict):
        from fogline.gateway import config as config_mod
        pc = config_mod.build_section("placement", PlacementConfig, pc)
    if not pc.enabled:
        return None
    from fogline.gateway.twin.core import twin_of
    twin = twin_of(gw, cfg)
    p = Placement(pc, cfg.site.id, cfg.site.gateway_id, cfg.site.data_dir, twin, health_source=health_source)
    gw.add_component(p)
    gw.placement = p
    return p
