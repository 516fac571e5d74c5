"""The cluster's heartbeat: every heartbeat_s publish this gateway's health and relay leases, expire silent peers.

A mixin of `ClusterService` (fogline.gateway.cluster.service), which owns the state it reads: the peer
view, the held messages, the nodes served and the lease book. A beat that comes late by more than
dead_after_s means this process was frozen: peers took its nodes meanwhile, so it serves nothing until the
view is rebuilt and the cursors adopted.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

import cbor2

from fogline.gateway.cluster.core import load_class
from fogline.gateway.cluster.view import local_view
from fogline.gateway.placement import health

if TYPE_CHECKING:
    from fogline.gateway.cluster.core import ClusterConfig
    from fogline.gateway.cluster.lease import LeaseBook
    from fogline.gateway.cluster.link import ClusterLink
    from fogline.gateway.cluster.takeover import Held
    from fogline.gateway.cluster.view import PeerView

log = logging.getLogger(__name__)


class Heartbeat:
    """Heartbeat and lease publication of a ClusterService (the attributes below are the service's)."""

    svc: Any  # the gateway's Services (fogline.gateway.services)
    cfg: ClusterConfig
    me: str
    peers: PeerView
    held: Held
    active: set[str]
    leases: LeaseBook
    link: ClusterLink | None
    counters: dict[str, int]
    connected: bool
    connected_at: float
    settled: bool
    stopping: bool
    _load: int | None
    _last_beat: float

    if TYPE_CHECKING:  # the service's methods this half calls
        def _topic(self, kind: str) -> str: ...
        def _peer_dead(self, g: str, why: str) -> None: ...
        def _recompute(self) -> None: ...
        def _catch_up(self, nodes: Any) -> None: ...
        def primary(self, node: str) -> str | None: ...

    async def _tick_loop(self) -> None:
        while True:
            await asyncio.sleep(self.cfg.heartbeat_s)
            try:
                await self._heartbeat()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("event=cluster_tick_failed")

    async def _heartbeat(self) -> None:
        if self.stopping:
            return
        now = time.monotonic()
        cfg = self.cfg
        stalled = now - self._last_beat if self._last_beat else 0.0
        self._last_beat = now
        if stalled > cfg.dead_after_s and self.settled:
            # We were frozen (SIGSTOP, swap storm): peers took our nodes and leases meanwhile, and their
            # silence in our view is our own. Serve nothing until the view is rebuilt and cursors adopted.
            log.warning("event=cluster_resumed gw=%s stalled_s=%.1f", self.me, stalled)
            self.counters["stalls"] += 1
            self.connected_at = now
            self.leases.clear()
            self.active.clear()
        snap = await asyncio.to_thread(health.snapshot, self.svc.data_dir)
        self._load = load_class(snap.get("cpu_pct", 0.0), self._load, cfg.load_step_pct, cfg.load_hysteresis_pct)
        if self.connected:  # frozen while we are cut off: expiry counts from our reconnection
            for g in self.peers.expire(now, self.connected_at):
                self._peer_dead(g, "heartbeat_expired")
        self._recompute()
        self._catch_up(list(self.active))
        self._update_leases(now)
        for k, v in dict(self.counters, held_dropped=self.held.dropped, **self.leases.counters).items():
            self.svc.metrics.set("cluster_" + k, v)
        if not self.connected or not self.settled or self.link is None:
            return
        acks = await self.svc.run_store(lambda s: {n: s.ack_state(n) for n in list(s.nids)})
        view = local_view(self.svc.registry, self._load or 0)
        msg = dict(snap, gw=self.me, alive=True, load=view.load, nodes=view.nodes,
                   acks={n: a for n, a in acks.items() if a}, serving=sorted(self.active))
        self.link.publish(self._topic("health"), cbor2.dumps(msg))
        self._publish_leases(now)

    def _publish_leases(self, now: float) -> None:
        if self.link is not None and self.connected and self.settled:
            self.link.publish(self._topic("lease"), self.leases.payload(now))

    def _update_leases(self, now: float) -> None:
        self.leases.update(now, self.active, self.primary, self.peers.live())
        self.svc.metrics.set("cluster_leases", len(self.leases.mine))
