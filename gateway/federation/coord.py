"""Federation coordinator: collects signed updates, aggregates robustly, publishes the next model version.

The coordinator runs on one gateway (or a cloud worker). It refuses forged updates (unknown signer,
bad tag, signer not the topic's gateway), updates on another base version, wrong shapes, duplicates
and NaN/inf; drops norm outliers (fogline.gateway.federation.avg.screen); aggregates; exports ONNX + manifest with
version base+1 (fogline.gateway.federation.local.export) and publishes it signed as the round's `model`.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from fogline.gateway.federation import avg as fedavg, local as fedlocal, wire as fedwire
from fogline.gateway.federation.bus import InProcessBus
from fogline.gateway.federation.core import FederationConfig, Lineage, Member

log = logging.getLogger(__name__)
RESULT_WAIT_S = 5.0


@dataclass
class RoundResult:
    """What one round did (coordinator view, plus member results that arrived)."""
    round: int
    base_version: int
    version: int | None = None
    used: list[str] = field(default_factory=list)
    refused: dict[str, str] = field(default_factory=dict)
    results: dict[str, dict[str, Any]] = field(default_factory=dict)
    seconds: float = 0.0
    bytes: int = 0


class Coordinator:
    """Collects signed updates of a round, aggregates robustly, publishes the next model version."""

    def __init__(self, cfg: FederationConfig, coord_id: str, key: bytes, member_keys: dict[str, bytes],
                 base: tuple[dict[str, Any], bytes], bus: Any, state_dir: Path | None = None) -> None:
        self.cfg, self.id, self.key, self.keys, self.bus = cfg, coord_id, key, member_keys, bus
        self.lineage = Lineage(*base, state_dir=state_dir)
        self.round: RoundResult | None = None
        self.updates: dict[str, fedavg.Update] = {}
        self.counters = {"updates": 0, "refused": 0, "rounds": 0, "models": 0}
        self._t0 = 0.0
        p = cfg.topic_prefix
        bus.subscribe(f"{p}/+/update/+", self.on_message)
        bus.subscribe(f"{p}/+/result/+", self.on_message)

    def start_round(self, rnd: int) -> None:
        """Open round rnd on the current base and tell the members."""
        self.round = RoundResult(rnd, self.lineage.version)
        self.updates = {}
        self._t0 = time.monotonic()
        body = {"round": rnd, "base": self.lineage.version, "base_sha": self.lineage.sha,
                "deadline_s": self.cfg.round_timeout_s}
        self.bus.publish(fedwire.topic(self.cfg.topic_prefix, rnd, "start"),
                         fedwire.seal(self.key, self.id, "start", body))

    def _refuse(self, who: str, why: str) -> None:
        self.counters["refused"] += 1
        if self.round is not None:
            self.round.refused[who] = why
        log.warning("event=fed_update_refused from=%s reason=%s", who, why)

    def on_message(self, topic: str, payload: bytes) -> None:
        """Handle an update or result message (refusals counted and recorded, never raised)."""
        parsed = fedwire.parse_topic(self.cfg.topic_prefix, topic)
        if parsed is None or self.round is None:
            return
        rnd, kind, gw = parsed
        try:
            by, body = fedwire.open_(self.keys, payload, kind)
            if by != gw or body.get("gw") != gw:
                raise fedwire.FedRefused(f"signer {by!r} does not match gateway {gw!r}")
            if kind == "result":  # informational; a late one from an earlier round is just dropped
                if rnd == self.round.round and body.get("round") == rnd:
                    self.round.results[gw] = body
                return
            if rnd != self.round.round or body.get("round") != rnd:
                raise fedwire.FedRefused(f"round {rnd} is not the open round {self.round.round}")
            if self.round.version is not None:
                raise fedwire.FedRefused("round already aggregated")
            if body.get("base") != self.lineage.version or body.get("base_sha") != self.lineage.sha:
                raise fedwire.FedRefused(f"update on base v{body.get('base')} sha {str(body.get('base_sha'))[:12]}, "
                                         f"round base is v{self.lineage.version} sha {self.lineage.sha[:12]}")
            if not isinstance(body.get("steps"), int) or body["steps"] < 0:
                raise fedwire.FedRefused("steps must be an int >= 0")
            if gw in self.updates:
                raise fedwire.FedRefused("duplicate update")
            u = fedavg.Update(gw, fedwire.unpack_tensors(body.get("tensors")), body.get("n"))
            fedavg.check_update(u, self.lineage.shapes, max_samples=max(self.cfg.max_samples, 1) * 100)
        except (fedwire.FedRefused, fedavg.UpdateRefused) as e:
            self._refuse(gw or "?", f"{kind}: {e}")
            return
        except (TypeError, KeyError, ValueError, AttributeError, IndexError) as e:  # signed but malformed
            self._refuse(gw or "?", f"{kind}: malformed ({type(e).__name__}: {e})")
            return
        self.updates[gw] = u
        self.counters["updates"] += 1
        if self.cfg.expected_updates and len(self.updates) >= self.cfg.expected_updates:
            self.finish()

    def finish(self) -> RoundResult:
        """Aggregate what arrived (if >= min_updates), publish the new model; returns the round result."""
        r = self.round
        if r is None:
            raise RuntimeError("federation: no open round")
        if r.version is not None:
            return r
        kept, dropped = fedavg.screen(list(self.updates.values()), self.cfg.max_norm_ratio)
        for gw, why in dropped:
            self._refuse(gw, f"update: {why}")
        r.seconds = round(time.monotonic() - self._t0, 3)
        if len(kept) < max(1, self.cfg.min_updates):
            log.warning("event=fed_round_skipped round=%d updates=%d min=%d", r.round, len(kept), self.cfg.min_updates)
            return r
        delta = fedavg.aggregate(kept, self.cfg.aggregator, self.cfg.trim)
        net = fedlocal.with_deltas(self.lineage.net, delta)
        info = {"round": r.round, "method": self.cfg.aggregator, "base_version": self.lineage.version,
                "gateways": sorted(u.gateway for u in kept), "samples": int(sum(u.samples for u in kept))}
        man, data = fedlocal.export(net, self.lineage.manifest, self.lineage.version + 1, info)
        body = {"round": r.round, "base": self.lineage.version, "version": man["version"], "manifest": json.dumps(man),
                "model": data, "used": info["gateways"], "refused": dict(r.refused)}
        self.lineage.set(man, data)
        r.version, r.used = man["version"], info["gateways"]
        self.counters["rounds"] += 1
        self.counters["models"] += 1
        log.info("event=fed_aggregated round=%d version=%d used=%s refused=%s", r.round, r.version, r.used,
                 sorted(r.refused))
        self.bus.publish(fedwire.topic(self.cfg.topic_prefix, r.round, "model"),
                         fedwire.seal(self.key, self.id, "model", body))
        return r


def run_round(coord: Coordinator, buses: list[Any], rnd: int, members: Sequence[Member] = (),
              progress: Callable[[str], None] | None = None) -> RoundResult:
    """Drive one round: start, pump until updates are in (or timeout), aggregate, pump until results are in."""
    say = progress or (lambda s: None)
    t0 = time.monotonic()
    n0 = [len(b.published) for b in buses]
    coord.start_round(rnd)
    deadline = t0 + coord.cfg.round_timeout_s
    want = coord.cfg.expected_updates or None
    seen = -1
    local = bool(members) and all(isinstance(b, InProcessBus) for b in buses)
    while coord.round.version is None and time.monotonic() < deadline:
        moved = sum(b.pump_once() for b in buses)
        if len(coord.updates) != seen:
            seen = len(coord.updates)
            say(f"round {rnd}: updates {seen}/{want or '?'} refused {len(coord.round.refused)}")
        if want is None and local and all(not m._busy.locked() for m in members) and not moved and seen:
            break  # in-process only: every member has answered
        if not moved:
            time.sleep(0.005)
    r = coord.finish()
    if r.version is None:
        say(f"round {rnd}: no model (updates {len(coord.updates)}, refused {len(r.refused)})")
        return r
    say(f"round {rnd}: aggregated {len(r.used)} updates ({coord.cfg.aggregator}) -> v{r.version}")
    # results are informational (progress, bench): wait briefly for every answering gateway
    n_res = len(members) if local else len(r.used)
    end = time.monotonic() + min(RESULT_WAIT_S, coord.cfg.round_timeout_s)
    while len(r.results) < n_res and time.monotonic() < end:
        if not sum(b.pump_once() for b in buses):
            time.sleep(0.005)
    r.seconds = round(time.monotonic() - t0, 3)
    r.bytes = sum(len(t) + len(p) for b, n in zip(buses, n0) for t, p in b.published[n:])
    for gw, res in sorted(r.results.items()):
        say(f"round {rnd}: {gw} {'adopted' if res.get('adopted') else 'kept current'} v{res.get('version')} "
            f"(score {res.get('score_current')} -> {res.get('score_candidate')})")
    return r
