"""Acks to nodes: each a node's durable cursors, signed with its key; re-announced when the broker is back."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import cbor2

from fogline.shared import auth, topics

log = logging.getLogger(__name__)


class AckSender:
    """Mixin of the Gateway (uses its store, MQTT ingest, verifier, metrics and loop)."""

    store: Any
    mqtt: Any
    metrics: Any
    site: str
    loop: asyncio.AbstractEventLoop
    verifier: Any
    _running: bool

    def _mqtt_ready(self) -> None:
        """Thread-safe: the broker holds our subscriptions again (start, reconnect, worker restart)."""
        try:
            self.loop.call_soon_threadsafe(lambda: self._spawn(self._announce_acks()))
        except RuntimeError:  # loop closed during shutdown
            pass

    async def _announce_acks(self) -> None:
        # The acks of the last commit before a stop or a broker outage may never have reached the broker;
        # a node that heard nothing would wait for its resend timer. Cursors only say what is durable here.
        if self.store is None or not self._running:
            return
        acks = await self._run(self.store.ack_states)
        cl = getattr(self, "cluster", None)
        sent = 0
        for node, ack in acks.items():
            if cl is None or cl.primary(node) in (None, cl.me):
                self._publish_ack(node, ack)
                sent += 1
        self.metrics.inc("acks_announced", sent)
        log.info("event=acks_announced nodes=%d", sent)

    def ack_payload(self, node: str, ack: dict[str, int]) -> bytes:
        """The ack message for node: signed with its key when the gateway has one (shared/auth.py)."""
        keys = getattr(self.verifier, "keys", None) or {}
        return cbor2.dumps(auth.seal_ack(keys.get(node), node, ack))

    def _publish_ack(self, node: str, ack: dict[str, int]) -> None:
        if self.mqtt is None or not ack:
            return
        try:
            self.mqtt.publish(topics.node(self.site, node, "ack"), self.ack_payload(node, ack), qos=1, retain=False)
            self.metrics.inc("acks_sent")
        except Exception:
            self.metrics.inc("ack_publish_errors")
            log.exception("event=ack_publish_failed node=%s", node)
