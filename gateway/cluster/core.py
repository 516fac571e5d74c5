"""Multi-gateway sites, the pure part: `[cluster]` config, node -> (primary, standby) assignment, relay leases.

Every gateway of a site computes the same assignment from the same health view, so no
election is needed: live gateways that hear a node are ranked by link quality (bucketed),
then load class (published with hysteresis), then a rendezvous hash of (node, gateway), which
spreads nodes and moves only the dead gateway's nodes when membership changes.
A relay lease says which gateway relays a node's data to the cloud (summaries must not be
doubled); see `fogline.gateway.cluster.service` for the MQTT side (heartbeats, last will, ingest gate).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from fogline.gateway.config_check import ConfigError


@dataclass
class ClusterConfig:
    """[cluster] several gateways sharing one site broker (off: a single gateway serves every node)."""
    enabled: bool = False
    heartbeat_s: float = 1.0          # health (and lease renewal) published this often, retained
    dead_after_s: float = 3.0         # a peer is dead this long after its last heartbeat (local receive
                                      # time); its MQTT last will marks a kill -9 dead at once
    lease_s: float = 5.0              # a relay lease lasts this long unless renewed
    handoff_s: float = 2.0            # a gateway that stops being primary keeps the lease this long before
                                      # releasing it (a flapping view does not bounce leases)
    settle_s: float = 1.0             # after (re)connecting, learn the peers' retained health this long
                                      # before serving any node
    load_step_pct: float = 50.0       # CPU % per load class: only a saturated gateway sheds nodes, small
                                      # differences do not move them
    load_hysteresis_pct: float = 10.0 # the published class changes only this far past a boundary
    load_weight: float = 1.0          # quality buckets one load class is worth (0: load is ignored)
    quality_step_db: float = 6.0      # BLE RSSI bucket (RSSI jitter must not move nodes); MQTT nodes equal
    hold_max: int = 16                # messages held per node by a non-primary, replayed on takeover
    client_id: str = ""               # default fogline-<site>-<gateway_id>-cluster

    def validate(self) -> None:
        if self.heartbeat_s <= 0 or self.dead_after_s <= self.heartbeat_s:
            raise ConfigError("cluster.dead_after_s: must be greater than heartbeat_s (> 0)")
        if self.lease_s <= self.heartbeat_s:
            raise ConfigError("cluster.lease_s: must be greater than heartbeat_s")
        if self.handoff_s < 0 or self.settle_s < 0 or self.load_weight < 0:
            raise ConfigError("cluster.handoff_s/settle_s/load_weight: must be >= 0")
        if self.load_step_pct <= 0 or self.quality_step_db <= 0 or self.hold_max < 0:
            raise ConfigError("cluster.load_step_pct/quality_step_db: must be > 0, hold_max >= 0")


BROKER_QUALITY = 0.0  # link quality announced for a node heard on the site broker (BLE RSSI is < 0 dBm)


@dataclass
class GatewayView:
    """What one live gateway announced: node -> link quality it sees, and its load class."""
    nodes: dict[str, float]
    load: int = 0


def rendezvous(node: str, gw: str) -> int:
    """Stable pseudo-random weight of (node, gateway): highest wins among tied gateways."""
    return int.from_bytes(hashlib.blake2b(f"{node}\x00{gw}".encode(), digest_size=8).digest(), "big")


def quality_bucket(q: float | None, step_db: float) -> int:
    """Link quality (dB, higher is better) in steps of step_db; unknown counts as the worst."""
    if q is None or not isinstance(q, (int, float)) or math.isnan(q):
        return -10**6
    return int(math.floor(q / step_db + 0.5))


def load_class(cpu_pct: float, prev: int | None, step: float, hysteresis: float) -> int:
    """CPU percent -> load class; a previous class is kept until cpu is `hysteresis` past its bounds."""
    raw = int(max(0.0, cpu_pct) // step)
    if prev is None or raw == prev:
        return raw
    lo, hi = prev * step, (prev + 1) * step
    if lo - hysteresis < cpu_pct < hi + hysteresis:
        return prev
    return raw


def rank(node: str, view: Mapping[str, GatewayView], cfg: ClusterConfig | None = None) -> list[str]:
    """Live gateways for a node, best first (quality, then load, then rendezvous hash)."""
    cfg = cfg or ClusterConfig()
    cands = [g for g, v in view.items() if node in v.nodes]
    broker = all(view[g].nodes[node] == BROKER_QUALITY for g in cands)
    if broker:  # a site-broker node (or one nobody lists yet): every live gateway hears it equally
        cands = list(view)

    def key(g: str) -> tuple[float, int]:
        v = view[g]
        q = 0 if broker else quality_bucket(v.nodes.get(node), cfg.quality_step_db)
        return (-(q - cfg.load_weight * v.load), -rendezvous(node, g))
    return sorted(cands, key=key)


def assign(view: Mapping[str, GatewayView], nodes: Iterable[str] | None = None,
           cfg: ClusterConfig | None = None) -> dict[str, tuple[str, str | None]]:
    """node -> (primary, standby or None) for every node any live gateway hears (or the given nodes)."""
    if nodes is None:
        nodes = {n for v in view.values() for n in v.nodes}
    out: dict[str, tuple[str, str | None]] = {}
    for n in nodes:
        r = rank(n, view, cfg)
        if r:
            out[n] = (r[0], r[1] if len(r) > 1 else None)
    return out


def may_take_lease(node: str, me: str, primary: str | None, holders: Mapping[str, float], now: float) -> bool:
    """A gateway takes a node's lease only as its primary and when no other live gateway holds it unexpired.

    holders: live gateway -> local expiry time of its lease on this node (dead gateways left out)."""
    if primary != me:
        return False
    return all(exp <= now for g, exp in holders.items() if g != me)


def must_yield_lease(node: str, me: str, holders: Mapping[str, float], now: float) -> bool:
    """Two gateways took the same lease (views differed for a moment): the lower gateway id keeps it."""
    return any(exp > now and g < me for g, exp in holders.items() if g != me)


def decode_health(msg: Any) -> tuple[bool, GatewayView, dict[str, dict[str, int]]]:
    """(alive, view, acks) of a health map; ValueError if it is malformed."""
    if not isinstance(msg, dict) or not isinstance(msg.get("alive"), bool):
        raise ValueError("cluster: health must be a map with a boolean 'alive'")
    if not msg["alive"]:
        return False, GatewayView({}), {}
    nodes = msg.get("nodes", {})
    load = msg.get("load", 0)
    acks = msg.get("acks", {})
    if not isinstance(nodes, dict) or not isinstance(load, int) or not isinstance(acks, dict):
        raise ValueError("cluster: health nodes/acks must be maps, load an integer")
    clean_nodes = {str(n): (float(q) if isinstance(q, (int, float)) else None) for n, q in nodes.items()}
    clean_acks: dict[str, dict[str, int]] = {}
    for n, a in acks.items():
        if isinstance(a, dict):
            clean_acks[str(n)] = {ln: v for ln, v in a.items() if ln in ("up", "alert", "e") and isinstance(v, int)}
    return True, GatewayView(clean_nodes, load), clean_acks  # type: ignore[arg-type]


def decode_lease(msg: Any, rx: float) -> dict[str, float]:
    """node -> local expiry of a lease map {"ts": sender time, "leases": {node: expiry}} received at rx.

    Expiry is converted to the receiver's clock through the sender's own ts, so clock skew between
    gateways does not stretch or shorten a lease (only transit delay does)."""
    if not isinstance(msg, dict) or not isinstance(msg.get("leases"), dict) \
            or not isinstance(msg.get("ts"), (int, float)):
        raise ValueError("cluster: lease must be a map with 'ts' and 'leases'")
    ts = float(msg["ts"])
    return {str(n): rx + (float(e) - ts) for n, e in msg["leases"].items() if isinstance(e, (int, float))}
