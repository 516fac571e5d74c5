"""Relay leases of one gateway: which nodes' data it relays to the cloud, and what its peers hold.

A lease is announced retained on `topics.gateway(site, gw, "lease")` as {"ts", "leases": {node:
expiry}} and renewed each heartbeat. Peers' expiries are converted to local monotonic time through
the sender's own ts (`cluster.decode_lease`), so clock skew does not stretch them; a dead gateway's
leases do not count. The rules themselves are the pure `cluster.may_take_lease` / `must_yield_lease`.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Collection

import cbor2

from fogline.gateway.cluster.core import ClusterConfig, decode_lease, may_take_lease, must_yield_lease


class LeaseBook:
    """This gateway's leases (node -> expiry, wall clock; since when) and the peers' (local expiry)."""

    def __init__(self, me: str, cfg: ClusterConfig):
        self.me, self.cfg = me, cfg
        self.mine: dict[str, float] = {}
        self.since: dict[str, float] = {}
        self.peer: dict[str, dict[str, float]] = {}
        self._release_at: dict[str, float] = {}
        self.valid_until = 0.0  # monotonic: our announcement is good until then
        self.counters = {"lease_taken": 0, "lease_released": 0, "lease_yielded": 0}

    def on_peer(self, gw: str, data: Any, rx: float) -> None:
        """A peer's retained lease message (ValueError if malformed)."""
        self.peer[gw] = decode_lease(data, rx) if data is not None else {}

    def holders(self, live: Collection[str]) -> dict[str, dict[str, float]]:
        """node -> {live peer: local expiry}."""
        out: dict[str, dict[str, float]] = {}
        for g, ls in self.peer.items():
            if g in live and g != self.me:
                for n, exp in ls.items():
                    out.setdefault(n, {})[g] = exp
        return out

    def held(self, node: str, now: float) -> bool:
        return node in self.mine and now < self.valid_until

    def update(self, now: float, active: Collection[str], primary_of: Callable[[str], str | None],
               live: Collection[str]) -> None:
        """Take free leases of served nodes, yield conflicts, release (after handoff_s) what we no longer serve."""
        holders = self.holders(live)
        wall = time.time()
        for node in sorted(active):
            if node not in self.mine and may_take_lease(node, self.me, primary_of(node), holders.get(node, {}), now):
                self.mine[node] = wall + self.cfg.lease_s
                self.since[node] = wall
                self.counters["lease_taken"] += 1
        for node in list(self.mine):
            if must_yield_lease(node, self.me, holders.get(node, {}), now):
                self.drop(node)
                self.counters["lease_yielded"] += 1
                continue
            if primary_of(node) != self.me or node not in active:
                if now >= self._release_at.setdefault(node, now + self.cfg.handoff_s):
                    self.drop(node)
                    self.counters["lease_released"] += 1
                    continue
            else:
                self._release_at.pop(node, None)
            self.mine[node] = wall + self.cfg.lease_s

    def drop(self, node: str) -> None:
        self.mine.pop(node, None)
        self.since.pop(node, None)
        self._release_at.pop(node, None)

    def clear(self) -> None:
        for n in list(self.mine):
            self.drop(n)

    def payload(self, now: float) -> bytes:
        """The retained announcement; our leases count as valid for lease_s from now."""
        self.valid_until = now + self.cfg.lease_s
        return cbor2.dumps({"ts": time.time(), "leases": dict(self.mine)})
