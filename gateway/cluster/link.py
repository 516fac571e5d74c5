"""The cluster's own site-broker connection: a small paho client with a retained last will.

The gateway's ingest connection cannot carry a will (it may live in a worker process), so the
cluster keeps this one: `alive: false` retained on the gateway's health topic is published by the
broker the moment the process dies (kill -9 closes the socket), which every peer sees at once.
paho-mqtt 2.x VERSION2 callbacks are handed to the event loop with call_soon_threadsafe.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Callable

import cbor2
import paho.mqtt.client as mqtt

from fogline.gateway import mqttclient

log = logging.getLogger(__name__)


def goodbye(gw_id: str) -> bytes:
    """The health payload of a gateway that is gone (last will, clean stop)."""
    return cbor2.dumps({"gw": gw_id, "alive": False})


class ClusterLink:
    """Connects in the background (paho reconnects); on_message(topic, payload, retained) runs on the loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, mqtt_cfg: Any, client_id: str, keepalive: int,
                 will: tuple[str, bytes], filters: list[str], on_message: Callable[[str, bytes, bool], None],
                 on_up: Callable[[], None], on_down: Callable[[], None]):
        self.loop, self.m, self.filters = loop, mqtt_cfg, filters
        self.on_message, self.on_up, self.on_down = on_message, on_up, on_down
        self.keepalive = keepalive
        c = mqttclient.from_config(mqtt_cfg, client_id, clean_session=True, will=will)
        c.on_connect = self._on_connect
        c.on_subscribe = lambda *a: self._soon(self.on_up)
        c.on_disconnect = lambda *a: self._soon(self.on_down)
        c.on_message = lambda _c, _u, msg: self._soon(self.on_message, msg.topic, msg.payload, msg.retain)
        self.client = c

    def _soon(self, fn: Any, *args: Any) -> None:  # paho thread -> event loop
        if not self.loop.is_closed():
            try:
                self.loop.call_soon_threadsafe(fn, *args)
            except RuntimeError:
                pass

    def _on_connect(self, client: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if reason.is_failure:
            log.warning("event=cluster_connect_failed reason=%s", reason)
            return
        client.subscribe([(f, 1) for f in self.filters])

    def start(self) -> None:
        self.client.connect_async(self.m.host, self.m.port, keepalive=self.keepalive)
        self.client.loop_start()

    def publish(self, topic: str, payload: bytes, retain: bool = True) -> Any:
        return self.client.publish(topic, payload, qos=1, retain=retain)

    async def stop(self, final: list[tuple[str, bytes]], connected: bool) -> None:
        """Publish the final retained messages (bounded wait), then disconnect without the will."""
        if connected:
            for info in [self.publish(t, p) for t, p in final]:
                await asyncio.to_thread(info.wait_for_publish, 2.0)
        self.client.disconnect()
        await asyncio.to_thread(self.client.loop_stop)
