"""Workload placement scoring (pure: no I/O, no clock): which candidate runs each workload, and why.

A workload (filter chain, rule set or model of one source node) declares its needs (`placement.workload`);
candidates are the source node (capabilities from its `state`) and the gateway (`placement.health` snapshot).

Hard limits (a candidate that breaks one is excluded, with the reason):
  node     no state yet / state older than state_max_age_s / reported offline
           heap_free - heap_bytes < node_heap_reserve      flash_free - flash_bytes < node_flash_reserve
           cpu_us > node_cpu_us_max (per sample)           power = "mains" needed and node is not on mains
           optional workload on a battery node below battery_min_pct (battery_resume_pct to come back:
           hysteresis), model workloads (the firmware has no model runtime)
  gateway  mem_avail - heap_bytes < gw_mem_reserve         rss + heap_bytes > gw_rss_max (0 = off)
           cpu_pct > gw_cpu_max_pct                        declared heap of its workloads > gw_workload_mem_max
           rules driving an actuator (the pin is on the node)
Score of a feasible candidate, each part in 0..1, weights from [placement] weights:
  score = (w_prox*proximity + w_res*resources + w_link*link + w_pow*power) / sum(w) (+ stickiness if current)
  proximity  1 on the source node, proximity_gateway on the gateway (one network hop from the data)
  resources  node: min(heap, flash) headroom after the workload and reserve, as a fraction of free;
             gateway: min(MemAvailable headroom after workload and reserve / MemAvailable, 1 - cpu_pct/100)
  link       1 on the node (its input never crosses the link); gateway: (1 - loss) / (1 + rtt_ms / rtt_ref_ms)
             of the node's uplink (the gateway needs every raw sample over it)
  power      mains power_mains, usb power_usb, battery power_battery * battery% (unknown %: half)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fogline.gateway.placement.workload import KINDS, WEIGHT_KEYS, PlacementConfig, Workload

__all__ = ["KINDS", "NO_STATE", "WEIGHT_KEYS", "Candidate", "Decision", "PlacementConfig", "Score", "Workload",
           "decide", "gateway_candidate", "node_candidate", "score"]
NO_STATE = "no state from the node yet"


@dataclass
class Candidate:
    """Where a workload could run, with the capabilities that matter for scoring."""
    id: str                           # "node:<id>" | "gateway:<id>"
    kind: str                         # node | gateway
    name: str
    known: bool = True                # node: a state has been received
    age_s: float | None = None        # node: seconds since that state
    online: bool | None = None
    heap_free: int | None = None
    flash_free: int | None = None
    power: str | None = None
    battery: float | None = None      # percent
    loss: float | None = None         # node uplink: fraction of publishes not acked in time
    rtt_ms: float | None = None
    mem_total: int = 0                # gateway (0 = unknown)
    mem_avail: int = 0
    rss: int = 0
    cpu_pct: float | None = None
    declared_heap: int = 0            # gateway: heap_bytes of the workloads placed there now


@dataclass
class Score:
    candidate: str
    feasible: bool
    total: float
    parts: dict[str, float]
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return {"candidate": self.candidate, "feasible": self.feasible, "score": round(self.total, 4),
                "parts": {k: round(v, 4) for k, v in self.parts.items()}, "reason": self.reason}


@dataclass
class Decision:
    workload: str
    node: str
    kind: str
    placed: str | None                # candidate id, None when nothing fits
    previous: str | None
    reason: str
    scores: list[Score]

    @property
    def changed(self) -> bool:
        return self.placed != self.previous

    def as_dict(self) -> dict[str, Any]:
        return {"workload": self.workload, "node": self.node, "kind": self.kind, "placed": self.placed,
                "previous": self.previous, "changed": self.changed, "reason": self.reason,
                "scores": [s.as_dict() for s in self.scores]}


def node_candidate(dev: Any, now: float) -> Candidate:
    """Candidate from a fogline.gateway.ingest.devices.Device (or None: never heard from)."""
    if dev is None or not getattr(dev, "last_state", 0):
        name = getattr(dev, "node", "?")
        return Candidate(f"node:{name}", "node", name, known=False)
    link = dev.link_quality if isinstance(getattr(dev, "link_quality", None), dict) else {}
    return Candidate(f"node:{dev.node}", "node", dev.node, True, max(0.0, now - dev.last_state), dev.online,
                     dev.heap_free, dev.flash_free, dev.power, dev.battery, _num(link.get("loss")),
                     _num(link.get("rtt_ms")))


def gateway_candidate(gw_id: str, health: dict[str, Any], declared_heap: int = 0) -> Candidate:
    """Candidate from a fogline.gateway.placement.health snapshot."""
    return Candidate(f"gateway:{gw_id}", "gateway", gw_id, mem_total=int(health.get("mem_total") or 0),
                     mem_avail=int(health.get("mem_avail") or 0), rss=int(health.get("rss") or 0),
                     cpu_pct=_num(health.get("cpu_pct")), declared_heap=declared_heap)


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def _clip(x: float) -> float:
    return 0.0 if x < 0 else (1.0 if x > 1 else x)


def _power_part(source: str | None, battery: float | None, cfg: PlacementConfig) -> float:
    if source == "mains":
        return cfg.power_mains
    if source == "battery":
        return cfg.power_battery * (0.5 if battery is None else _clip(battery / 100.0))
    return cfg.power_usb


def _exclude_node(w: Workload, c: Candidate, cfg: PlacementConfig, current: str | None) -> str | None:
    if w.kind == "model":
        return "node firmware has no model runtime"
    if not c.known:
        return NO_STATE
    if c.age_s is not None and c.age_s > cfg.state_max_age_s:
        return f"state is {c.age_s:.0f} s old (> {cfg.state_max_age_s:.0f} s)"
    if c.online is False:
        return "node offline (last will)"
    mine = current == c.id  # the node's free figures already include this workload
    need_heap = 0 if mine else w.heap_bytes
    need_flash = 0 if mine else w.flash_bytes
    if c.heap_free is None:
        return "heap_free unknown"
    if c.heap_free - need_heap < cfg.node_heap_reserve:
        return f"heap: {c.heap_free} free - {w.heap_bytes} needed < reserve {cfg.node_heap_reserve}"
    if c.flash_free is not None and c.flash_free - need_flash < cfg.node_flash_reserve:
        return f"flash: {c.flash_free} free - {w.flash_bytes} needed < reserve {cfg.node_flash_reserve}"
    if w.cpu_us > cfg.node_cpu_us_max:
        return f"cpu: {w.cpu_us} us/sample > node_cpu_us_max {cfg.node_cpu_us_max}"
    if w.power == "mains" and c.power != "mains":
        return f"needs mains power, node is on {c.power or 'unknown'}"
    if w.optional and c.power == "battery" and c.battery is not None:
        floor = cfg.battery_min_pct if mine else cfg.battery_resume_pct
        if c.battery < floor:
            what = "below" if mine else "not yet back to"
            return f"battery {c.battery:.0f}% {what} {floor:.0f}% (optional workload)"
    return None


def _exclude_gateway(w: Workload, c: Candidate, cfg: PlacementConfig, current: str | None) -> str | None:
    acts = w.actuators()
    if acts:
        return f"drives actuator {acts[0]!r} on the node"
    mine = current == c.id
    need = 0 if mine else w.heap_bytes
    if w.power == "mains" and cfg.gw_power != "mains":
        return f"needs mains power, gateway is on {cfg.gw_power}"
    if c.mem_total and c.mem_avail - need < cfg.gw_mem_reserve:
        return f"memory: {c.mem_avail} available - {w.heap_bytes} needed < reserve {cfg.gw_mem_reserve}"
    if cfg.gw_rss_max and c.rss + need > cfg.gw_rss_max:
        return f"rss: {c.rss} + {w.heap_bytes} > gw_rss_max {cfg.gw_rss_max}"
    if c.declared_heap - (w.heap_bytes if mine else 0) + w.heap_bytes > cfg.gw_workload_mem_max:
        return f"workload memory: {c.declared_heap} placed + {w.heap_bytes} > gw_workload_mem_max {cfg.gw_workload_mem_max}"
    if c.cpu_pct is not None and c.cpu_pct > cfg.gw_cpu_max_pct and not mine:
        return f"cpu {c.cpu_pct:.0f}% > gw_cpu_max_pct {cfg.gw_cpu_max_pct:.0f}%"
    return None


def score(w: Workload, c: Candidate, cfg: PlacementConfig, current: str | None = None,
          node_link: Candidate | None = None) -> Score:
    """Score one candidate; node_link is the source node's candidate (its uplink quality) for the gateway."""
    if c.kind == "node":
        why = _exclude_node(w, c, cfg, current)
        if why is None:
            mine = current == c.id
            heap = (c.heap_free or 0) - (0 if mine else w.heap_bytes) - cfg.node_heap_reserve
            res = _clip(heap / max(1, c.heap_free or 1))
            if c.flash_free:
                fl = c.flash_free - (0 if mine else w.flash_bytes) - cfg.node_flash_reserve
                res = min(res, _clip(fl / max(1, c.flash_free)))
            parts = {"proximity": 1.0, "resources": res, "link": 1.0,
                     "power": _power_part(c.power, c.battery, cfg)}
    else:
        why = _exclude_gateway(w, c, cfg, current)
        if why is None:
            need = 0 if current == c.id else w.heap_bytes
            mem = _clip((c.mem_avail - need - cfg.gw_mem_reserve) / c.mem_avail) if c.mem_avail else 0.5
            cpu = 0.5 if c.cpu_pct is None else _clip(1 - c.cpu_pct / 100.0)
            loss = node_link.loss if node_link and node_link.loss is not None else 0.0
            rtt = node_link.rtt_ms if node_link and node_link.rtt_ms is not None else 0.0
            parts = {"proximity": cfg.proximity_gateway, "resources": min(mem, cpu),
                     "link": _clip(1 - loss) / (1 + rtt / cfg.rtt_ref_ms),
                     "power": _power_part(cfg.gw_power, None, cfg)}
    if why is not None:
        return Score(c.id, False, 0.0, {}, why)
    wsum = sum(cfg.weights.get(k, 0.0) for k in WEIGHT_KEYS)
    total = sum(cfg.weights.get(k, 0.0) * parts[k] for k in WEIGHT_KEYS) / wsum
    if current == c.id:
        total += cfg.stickiness
        parts["stickiness"] = cfg.stickiness
    return Score(c.id, True, total, parts, "fits")


def decide(w: Workload, candidates: list[Candidate], cfg: PlacementConfig, current: str | None = None) -> Decision:
    """Best feasible candidate for w (ties: current, then the node), with every score and a reason."""
    node_c = next((c for c in candidates if c.kind == "node"), None)
    scores = [score(w, c, cfg, current, node_c) for c in candidates]
    ok = [s for s in scores if s.feasible]
    if not ok:
        why = "; ".join(f"{s.candidate}: {s.reason}" for s in scores)
        return Decision(w.name, w.node, w.kind, None, current, f"no candidate fits ({why})", scores)
    ok.sort(key=lambda s: (-round(s.total, 9), s.candidate != current, not s.candidate.startswith("node:")))
    best = ok[0]
    excluded = [s for s in scores if not s.feasible]
    if len(ok) > 1:
        second = ok[1]
        diffs = {k: best.parts.get(k, 0) - second.parts.get(k, 0) for k in WEIGHT_KEYS + ("stickiness",)}
        k = max(diffs, key=lambda k: diffs[k] * (cfg.weights.get(k, 1.0) if k != "stickiness" else 1.0))
        reason = (f"{best.candidate} scores {best.total:.3f} > {second.candidate} {second.total:.3f} "
                  f"(mostly {k}: {best.parts.get(k, 0):.2f} vs {second.parts.get(k, 0):.2f})")
    else:
        reason = f"{best.candidate} is the only candidate that fits ({best.total:.3f})"
    if excluded:
        reason += "; excluded " + "; ".join(f"{s.candidate}: {s.reason}" for s in excluded)
    return Decision(w.name, w.node, w.kind, best.candidate, current, reason, scores)
