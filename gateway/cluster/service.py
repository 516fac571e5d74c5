"""Multi-gateway sites, the live part: heartbeats with a last will, the ingest gate, takeover, relay leases.

Every heartbeat_s the gateway publishes its health (retained: host snapshot, the nodes it hears with
link quality, its load class, its ack cursors, the nodes it serves) and its relay leases over its own
connection (`cluster_link`, which carries the last will), so a kill -9 is seen by every peer at once;
heartbeat expiry by local receive time is the backstop (`cluster_view`). Every gateway computes the
same node -> primary assignment from that view (`cluster.assign`). A gateway commits and acks a
node's up/alert only while it is the node's primary (`gw.set_ingest_gate`); the others hold the
node's latest messages in memory (bounded, counted `cluster_not_primary`) and never ack them, so the
node keeps them in flash. On takeover the new primary first moves its ack cursor over what another
gateway acked, then replays the held messages (`cluster_takeover`): the node gets its next ack
without waiting for its own resend timeout. Relay leases (`cluster_lease`) keep summaries single.
The heartbeat itself (health, leases, peer expiry) is `cluster.beat`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import cbor2

from fogline.gateway.cluster.beat import Heartbeat
from fogline.gateway.cluster.core import ClusterConfig, GatewayView, assign, rank
from fogline.gateway.cluster.lease import LeaseBook
from fogline.gateway.cluster.link import ClusterLink, goodbye
from fogline.gateway.cluster.takeover import LANES, Held, adopt_cursors
from fogline.gateway.cluster.view import PeerView, local_view
from fogline.gateway.services import of as services_of
from fogline.shared import topics

log = logging.getLogger(__name__)


class ClusterService(Heartbeat):
    """Gateway component: attach before `gw.start()` (the gate must hold messages from the first one)."""
    name = "cluster"

    def __init__(self, cfg: ClusterConfig, site: str, me: str):
        self.cfg, self.site, self.me = cfg, site, me
        self.svc: Any = None  # the gateway's Services once started (fogline.gateway.services)
        self.peers = PeerView(self.me, cfg)
        self.held = Held(cfg.hold_max)                     # also the hints: what any gateway acked
        self.assignment: dict[str, tuple[str, str | None]] = {}
        self.active: set[str] = set()                      # nodes served (primary and cursor adopted)
        self.leases = LeaseBook(self.me, cfg)
        self._to_adopt: set[str] = set()
        self._adopt_ev = asyncio.Event()
        self._load: int | None = None
        self._last_view: dict[str, GatewayView] = {}
        self._last_beat = 0.0
        self.connected = False
        self.connected_at = 0.0
        self.settled = False
        self.stopping = False
        self.counters = {k: 0 for k in ("not_primary", "replayed", "takeovers", "handovers", "cursor_skips",
                                        "peers_dead", "bad_messages", "stalls")}
        self._tasks: list[asyncio.Task[Any]] = []
        self.loop: asyncio.AbstractEventLoop | None = None
        self.link: ClusterLink | None = None

    # ------------------------------------------------------------------ gate and relay predicate
    def gate(self, msg: Any) -> bool:
        """True to commit and ack msg; False holds it (this gateway is not the node's primary now)."""
        node = msg.node
        if node in self.active:
            return True
        self.counters["not_primary"] += 1
        if not self.stopping:
            self.held.hold(msg)
            if self.settled and self.primary(node) == self.me:
                self._want_adopt(node)  # a node nobody listed yet, or an adoption under way
        return False

    def may_relay(self, node: str, since: float | None = None) -> bool:
        """Whether this gateway relays node's data now.

        since given (summaries and decisions pass their window start): only while holding the node's
        lease, taken at or before `since` -- a window that began under another gateway's lease is partial
        here and partial there, so neither relays it (counted) rather than both.
        since None (stored readings and alerts): always. Each is stored where it was acked and the cloud
        de-duplicates by (node, lane, seq); holding them back for a lease only delays them (a reading
        stored at two gateways still goes from both once each holds the lease) or strands them on a
        gateway that is never the node's primary again, and widens what a dead gateway takes with it."""
        if since is None:
            return True
        return self.leases.held(node, time.monotonic()) and self.leases.since.get(node, float("inf")) <= since

    def primary(self, node: str) -> str | None:
        """The node's primary gateway in the current view (None before the first view)."""
        a = self.assignment.get(node)
        if a is not None:
            return a[0]
        r = rank(node, self._last_view, self.cfg) if self._last_view else []
        return r[0] if r else None

    # ------------------------------------------------------------------ lifecycle
    async def start(self, services: Any) -> None:
        self.svc = gw = services_of(services)
        self.loop = asyncio.get_running_loop()
        gw.on_state(self._on_state)
        site = self.site
        cid = self.cfg.client_id or f"{gw.config.mqtt_client_id()}-cluster"
        self.link = ClusterLink(self.loop, gw.config.mqtt, cid, max(2, int(self.cfg.dead_after_s)),
                                (self._topic("health"), goodbye(self.me)),
                                [topics.gateway_filter(site, "health"), topics.gateway_filter(site, "lease"),
                                 topics.node_filter(site, "ack")], self._on_message, self._on_subscribed,
                                self._on_disconnected)
        self.link.start()
        self._tasks = [asyncio.create_task(self._tick_loop(), name="cluster-tick"),
                       asyncio.create_task(self._adopt_loop(), name="cluster-adopt")]

    async def stop(self) -> None:
        """Say goodbye (retained alive=false, no leases) so peers take over at once, then disconnect."""
        self.stopping = True
        for t in self._tasks:
            t.cancel()
        self.leases.clear()
        self.active.clear()
        if self.link is not None:
            await self.link.stop([(self._topic("lease"), self.leases.payload(time.monotonic())),
                                  (self._topic("health"), goodbye(self.me))], self.connected)

    def _topic(self, kind: str) -> str:
        return topics.gateway(self.site, self.me, kind)

    # ------------------------------------------------------------------ broker events (on the loop)
    def _on_subscribed(self) -> None:
        self.connected, self.connected_at = True, time.monotonic()
        if not self.settled and self.loop is not None:
            self.loop.call_later(self.cfg.settle_s, self._settle)
        elif self.settled:
            self._spawn(self._heartbeat())

    def _on_disconnected(self) -> None:
        self.connected = False  # the view is frozen meanwhile: node messages cannot reach us either

    def _settle(self) -> None:
        if not self.settled:
            self.settled = True
            log.info("event=cluster_settled gw=%s live=%s", self.me, sorted(self.peers.live()))
            self._recompute()
            # Announce ourselves only now: peers hand nodes over when they see us, and we are ready.
            self._spawn(self._heartbeat())

    def _on_message(self, topic: str, payload: bytes, retained: bool) -> None:
        now = time.monotonic()
        try:
            data = cbor2.loads(payload) if payload else None
            if topic.endswith("/ack") and topic.count("/") == 3:
                _, node, _ = topics.parse_node(topic)
                if isinstance(data, dict):
                    self._hint(node, data)
                return
            _, g, kind = topics.parse_gateway(topic)
            if g == self.me:
                return  # our own retained echo (or our previous incarnation's will)
            if kind == "health":
                changed, died, acks = self.peers.on_health(g, data, retained, now)
                for node, a in acks.items():
                    self._hint(node, a)
                if died:
                    self._peer_dead(g, "last_will_or_goodbye")
                if changed:
                    self._recompute()  # a death is acted on now, not at the next tick
            elif kind == "lease":
                self.leases.on_peer(g, data, now)
        except (ValueError, TypeError, cbor2.CBORDecodeError) as e:
            self.counters["bad_messages"] += 1
            log.info("event=cluster_bad_message topic=%s error=%s", topic, e)

    def _peer_dead(self, g: str, why: str) -> None:
        self.counters["peers_dead"] += 1
        log.warning("event=cluster_peer_dead gw=%s peer=%s why=%s", self.me, g, why)

    def _on_state(self, node: str, st: dict[str, Any], dev: Any) -> None:
        """A node's state says which seq it holds oldest: everything below was acked by some gateway."""
        oldest = getattr(dev, "oldest", None)
        if isinstance(oldest, dict):
            hint: dict[str, Any] = {ln: v - 1 for ln, v in oldest.items() if isinstance(v, int) and v > 1}
            self._hint(node, dict(hint, e=st.get("epoch", 0)))

    def _hint(self, node: str, acks: dict[str, Any]) -> None:
        store = self.svc.store
        ep = acks.get("e", 0)
        if not isinstance(ep, int) or isinstance(ep, bool):
            return
        for lane in LANES:
            n = acks.get(lane)
            if isinstance(n, int) and not isinstance(n, bool) and self.held.hint(node, lane, n, ep) \
                    and node in self.active and store is not None and n > store.ack_state(node).get(lane, 0):
                self._want_adopt(node)  # views differed for a moment: catch the cursor up

    # ------------------------------------------------------------------ assignment and takeover
    def _view(self) -> dict[str, GatewayView]:
        return self.peers.view(local_view(self.svc.registry, self._load or 0))

    def _recompute(self) -> None:
        if not self.settled or self.stopping:
            return
        view = self._last_view = self._view()
        nodes = {n for gv in view.values() for n in gv.nodes} | set(self.held.q) | self.active
        new = assign(view, nodes, self.cfg)
        for node, (prim, _) in new.items():
            if prim == self.me and node not in self.active:
                self._want_adopt(node)
            elif prim != self.me and node in self.active:
                self.active.discard(node)
                self.counters["handovers"] += 1
                log.info("event=cluster_handover gw=%s node=%s to=%s", self.me, node, prim)
        self.assignment = new
        self.svc.metrics.set("cluster_live_gateways", len(view))
        self.svc.metrics.set("cluster_primary_nodes", len(self.active))

    def _want_adopt(self, node: str) -> None:
        self._to_adopt.add(node)
        self._adopt_ev.set()

    async def _adopt_loop(self) -> None:
        while True:
            await self._adopt_ev.wait()
            self._adopt_ev.clear()
            nodes, self._to_adopt = self._to_adopt, set()
            plan = [(n, ln, self.held.hints.get((n, ln), 0), self.held.epochs.get(n, 0)) for n in nodes for ln in LANES]
            try:
                skipped = await self.svc.run_store(adopt_cursors, plan,
                                                  f"cluster: {self.me} took over; acked by another gateway up to %d")
            except Exception:
                log.exception("event=cluster_adopt_failed nodes=%d", len(nodes))
                self._to_adopt |= nodes
                await asyncio.sleep(0.5)
                self._adopt_ev.set()
                continue
            for node, lane, lo, hi in skipped:
                self.counters["cursor_skips"] += 1
                log.info("event=cluster_cursor_adopted node=%s lane=%s lo=%d hi=%d", node, lane, lo, hi)
                ack = self.svc.store.ack_state(node)
                if ack.get(lane, 0) > hi:  # readings stored here above the gap now count: tell the node
                    await self.svc.publish(topics.node(self.site, node, "ack"), self.svc.ack_payload(node, ack), qos=1)
            for node in sorted(nodes):
                if self.stopping or self.primary(node) != self.me or node in self.active:
                    continue
                self.active.add(node)
                self.counters["takeovers"] += 1
                held = self.held.take(node)
                for m in held:
                    self._replay(m)
                log.info("event=cluster_serving gw=%s node=%s replayed=%d", self.me, node, len(held))
            self._catch_up(nodes)  # hints that rose while the store worked must not be missed
            if any(n in self.active and n not in self.leases.mine for n in nodes):
                self._update_leases(time.monotonic())  # take free leases now, not at the next heartbeat
                self._publish_leases(time.monotonic())
            self.svc.metrics.set("cluster_primary_nodes", len(self.active))

    def _catch_up(self, nodes: Any) -> None:
        """Adopt again for served nodes whose cursor is behind what another gateway acked."""
        store = self.svc.store
        if store is None:
            return
        for node in nodes:
            if node in self.active:
                acks = store.ack_state(node)
                if any(self.held.hints.get((node, ln), 0) > acks.get(ln, 0) for ln in LANES):
                    self._want_adopt(node)

    def _replay(self, m: Any) -> None:
        from fogline.gateway.ingest.validate import Rejected
        try:
            self.svc.accept(m)
            self.counters["replayed"] += 1
        except Rejected as e:
            self.svc.reject(e.reason, e.detail, topic=topics.node(self.site, m.node, m.lane), source=m.node,
                           link=m.link, payload=m.raw, rx=m.rx)

    def _spawn(self, coro: Any) -> None:
        t = asyncio.ensure_future(coro)
        self._tasks.append(t)
        t.add_done_callback(lambda x: self._tasks.remove(x) if x in self._tasks else None)

    def stats(self) -> dict[str, Any]:
        """Counters and the current view, for `fogline status` and tests."""
        return {"me": self.me, "settled": self.settled, "connected": self.connected,
                "live": sorted(self.peers.live()),
                "serving": sorted(self.active), "leases": sorted(self.leases.mine), "held": self.held.count(),
                "held_dropped": self.held.dropped, **self.leases.counters, **self.counters}


def attach(gw: Any) -> ClusterService | None:
    """Add the cluster service when [cluster] enabled (before gw.start())."""
    cfg = gw.config.section("cluster")
    if isinstance(cfg, dict):
        from fogline.gateway import config as config_mod
        cfg = config_mod.build_section("cluster", ClusterConfig, cfg)
    if not cfg.enabled:
        return None
    svc = ClusterService(cfg, gw.site, gw.config.site.gateway_id)
    gw.set_ingest_gate(svc.gate)
    gw.set_relay_predicate(svc.may_relay)
    gw.add_component(svc)
    gw.cluster = svc
    return svc
