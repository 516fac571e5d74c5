"""What one gateway knows of its peers: liveness from retained health heartbeats and last wills.

Liveness is judged by local receive time (a peer's clock never matters): a peer is dead once its
last will (or goodbye) says `alive: false`, or dead_after_s after its last heartbeat. A retained
heartbeat replayed at subscribe time may be old, so it counts only until two heartbeats later
unless a live one confirms it. While this gateway is cut off from the broker the view is frozen:
expiry counts from its reconnection.
"""

from __future__ import annotations

from typing import Any

from fogline.gateway.cluster.core import BROKER_QUALITY, ClusterConfig, GatewayView, decode_health


class _Peer:
    __slots__ = ("view", "seen", "alive")

    def __init__(self) -> None:
        self.view = GatewayView({})
        self.seen = 0.0
        self.alive = False


class PeerView:
    """Live peers and what they announced (node link qualities, load class)."""

    def __init__(self, me: str, cfg: ClusterConfig):
        self.me, self.cfg = me, cfg
        self.peers: dict[str, _Peer] = {}

    def on_health(self, g: str, data: Any, retained: bool, now: float) -> tuple[bool, bool, dict[str, Any]]:
        """(view changed, peer just died, its acks) for a health message (ValueError if malformed)."""
        alive, view, acks = decode_health(data)
        p = self.peers.setdefault(g, _Peer())
        was, old = p.alive, p.view
        p.alive, p.view = alive, view
        p.seen = now - max(0.0, self.cfg.dead_after_s - 2 * self.cfg.heartbeat_s) if retained else now
        changed = was != alive or view.load != old.load or view.nodes.keys() != old.nodes.keys()
        return changed, was and not alive, acks

    def expire(self, now: float, since: float) -> list[str]:
        """Peers whose heartbeat is older than dead_after_s (counted from `since` at the earliest): now dead."""
        dead = []
        for g, p in self.peers.items():
            if p.alive and now - max(p.seen, since) > self.cfg.dead_after_s:
                p.alive = False
                dead.append(g)
        return dead

    def live(self) -> set[str]:
        return {g for g, p in self.peers.items() if p.alive} | {self.me}

    def view(self, mine: GatewayView) -> dict[str, GatewayView]:
        v = {g: p.view for g, p in self.peers.items() if p.alive}
        v[self.me] = mine
        return v


def local_view(registry: Any, load: int) -> GatewayView:
    """This gateway's announcement: every approved node with its link quality (BLE RSSI, broker nodes equal)."""
    nodes: dict[str, float] = {}
    for n, d in list(registry.devices.items()):
        if d.approved:
            nodes[n] = (d.rssi if d.rssi is not None else -100.0) if d.link == "ble" else BROKER_QUALITY
    return GatewayView(nodes, load)
