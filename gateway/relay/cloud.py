"""Cloud MQTT link (paho-mqtt 2.x, MQTT 3.1.1 or 5) and the cloud message envelope.

TLS (CA, optional client cert/key) is on by default; plaintext needs `allow_plaintext = true`.
QoS 1 on a persistent session (fixed client id, clean_session/clean_start False). paho runs
its network thread; every callback is handed to the asyncio loop with call_soon_threadsafe,
and `publish()` returns an asyncio future that resolves on PUBACK.

Envelope (CBOR map) of one outbox row: {"k": "<gw>:<id>", "gw", "id", "lane", "ts", "body"}
where body is the producer's CBOR item, embedded as is. A bundle of rows of one lane:
{"k": "<gw>:b<first>-<last>", "gw", "lane", "n", "z": zlib(CBOR array of row envelopes)}.
The cloud de-duplicates by the row keys (`decode_cloud_message` yields them).
"""

from __future__ import annotations

import asyncio
import logging
import time
import zlib
from typing import Any, Callable

import cbor2
import paho.mqtt.client as mqtt
from paho.mqtt.properties import Properties
from paho.mqtt.packettypes import PacketTypes

from fogline.gateway import mqttclient
from fogline.gateway.relay.cloud_config import CloudConfig
from fogline.gateway.aio import wait_event

log = logging.getLogger(__name__)


class CloudError(Exception):
    """A publish failed: not connected, refused PUBACK (MQTT 5), or lost."""


class CloudLink:
    """One MQTT connection with QoS 1 publish futures; usable for the cloud or the site broker."""

    def __init__(self, cfg: CloudConfig, loop: asyncio.AbstractEventLoop | None = None,
                 on_connect: Callable[[], None] | None = None, on_disconnect: Callable[[str], None] | None = None):
        cfg.check()
        self.cfg = cfg
        self.loop = loop
        self._on_connect_cb = on_connect
        self._on_disconnect_cb = on_disconnect
        self.connected = asyncio.Event()
        self._stopping = False
        self._futs: dict[int, asyncio.Future] = {}
        self._subs: dict[str, Callable[[str, bytes], None]] = {}
        self.counters = {"connects": 0, "disconnects": 0, "published": 0, "acked": 0, "refused": 0,
                         "connect_failures": 0, "received": 0}
        self.client = mqttclient.from_config(cfg, cfg.client_id or "fogline-gw", clean_session=False,
                                             max_inflight=cfg.max_inflight)
        self.client.on_connect = self._t_connect
        self.client.on_connect_fail = self._t_connect_fail
        self.client.on_disconnect = self._t_disconnect
        self.client.on_publish = self._t_publish
        self.client.on_message = self._t_message

    # -- paho thread -> loop -----------------------------------------------------------------
    def _call(self, fn: Callable, *a: Any) -> None:
        assert self.loop is not None
        try:
            self.loop.call_soon_threadsafe(fn, *a)
        except RuntimeError:
            pass  # loop closed during shutdown

    def _t_connect(self, _c, _u, _flags, rc, _props=None) -> None:
        # The outbox owns retries: drop paho's own copies before it re-sends them on this
        # connection, or each in-flight row would reach the cloud twice (same key, but wasted bytes).
        self.client.drop_out_messages()
        self._call(self._connected, not rc.is_failure, str(rc))

    def _t_connect_fail(self, _c, _u) -> None:
        self._call(self._connected, False, "connect_failed")

    def _t_disconnect(self, _c, _u, _flags, rc, _props=None) -> None:
        self._call(self._disconnected, str(rc))

    def _t_publish(self, _c, _u, mid, rc, _props=None) -> None:
        self._call(self._published, mid, rc.is_failure, str(rc))

    def _t_message(self, _c, _u, msg) -> None:
        self._call(self._message, msg.topic, bytes(msg.payload))

    # -- loop side ---------------------------------------------------------------------------
    def _connected(self, ok: bool, reason: str) -> None:
        if not ok:
            self.counters["connect_failures"] += 1
            log.warning("event=cloud_link_connect_failed host=%s port=%s reason=%s",
                        self.cfg.host, self.cfg.port, reason)
            if self._on_disconnect_cb:
                self._on_disconnect_cb(reason)
            return
        self.counters["connects"] += 1
        self.connected.set()
        log.info("event=cloud_link_connected host=%s port=%s", self.cfg.host, self.cfg.port)
        for topic in self._subs:
            self.client.subscribe(topic, qos=1)
        if self._on_connect_cb:
            self._on_connect_cb()

    def _disconnected(self, reason: str) -> None:
        was = self.connected.is_set()
        self.connected.clear()
        if self._stopping:
            log.info("event=cloud_link_stopped reason=%s", reason)
        elif was:
            self.counters["disconnects"] += 1
            log.warning("event=cloud_link_disconnected reason=%s inflight=%d", reason, len(self._futs))
        # Fail the futures: the outbox rows go again with the same key (paho's copies are dropped).
        futs, self._futs = self._futs, {}
        for f in futs.values():
            if not f.done():
                f.set_exception(CloudError(f"disconnected: {reason}"))
        if self._on_disconnect_cb and not self._stopping:
            self._on_disconnect_cb(reason)

    def _published(self, mid: int, refused: bool, reason: str) -> None:
        f = self._futs.pop(mid, None)
        if f is None or f.done():
            return
        if refused:
            self.counters["refused"] += 1
            f.set_exception(CloudError(f"PUBACK refused: {reason}"))
        else:
            self.counters["acked"] += 1
            f.set_result(time.monotonic())

    def _message(self, topic: str, payload: bytes) -> None:
        self.counters["received"] += 1
        for filt, handler in self._subs.items():
            if mqtt.topic_matches_sub(filt, topic):
                try:
                    handler(topic, payload)
                except Exception:  # a bad handler must not kill the link
                    log.exception("event=cloud_link_handler_error topic=%s", topic)

    # -- API ---------------------------------------------------------------------------------
    async def start(self) -> None:
        """Connect in the background (paho reconnects with backoff)."""
        self.loop = self.loop or asyncio.get_running_loop()
        kw: dict[str, Any] = {}
        if self.cfg.protocol == "5":
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = int(self.cfg.session_expiry_s)
            kw = {"clean_start": False, "properties": props}
        self.client.connect_async(self.cfg.host, self.cfg.port, keepalive=self.cfg.keepalive, **kw)
        self.client.loop_start()

    async def wait_connected(self, timeout: float | None = None) -> bool:
        return await wait_event(self.connected, timeout)

    def publish(self, topic: str, payload: bytes, retain: bool = False, qos: int = 1) -> asyncio.Future:
        """Publish; the future resolves (monotonic ack time) on PUBACK or fails with CloudError."""
        assert self.loop is not None, "start() first"
        fut = self.loop.create_future()
        if not self.connected.is_set():
            fut.set_exception(CloudError("not connected"))
            return fut
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        self.counters["published"] += 1
        if info.rc != mqtt.MQTT_ERR_SUCCESS and info.rc != mqtt.MQTT_ERR_QUEUE_SIZE:
            if info.rc == mqtt.MQTT_ERR_NO_CONN:
                # paho keeps it queued for the session; we fail it so the outbox owns the retry
                pass
            fut.set_exception(CloudError(f"publish rc={info.rc}"))
            return fut
        if qos == 0:
            fut.set_result(time.monotonic())
        else:
            # The PUBACK callback is scheduled on this loop, so it cannot run before this line.
            self._futs[info.mid] = fut
        return fut

    def subscribe(self, topic: str, handler: Callable[[str, bytes], None]) -> None:
        """Subscribe (QoS 1, renewed on reconnect); handler(topic, payload) runs on the loop."""
        self._subs[topic] = handler
        if self.connected.is_set():
            self.client.subscribe(topic, qos=1)

    async def stop(self) -> None:
        """Disconnect cleanly and stop paho's thread."""
        self._stopping = True
        self.client.disconnect()
        await asyncio.get_running_loop().run_in_executor(None, self.client.loop_stop)
        self.connected.clear()
        for f in self._futs.values():
            if not f.done():
                f.set_exception(CloudError("stopped"))
        self._futs.clear()

    def stats(self) -> dict[str, Any]:
        return {"connected": self.connected.is_set(), "inflight": len(self._futs), **self.counters}


# -- envelope --------------------------------------------------------------------------------
def _cbor_head(major: int, n: int) -> bytes:
    mt = major << 5
    if n < 24:
        return bytes([mt | n])
    if n < 256:
        return bytes([mt | 24, n])
    if n < 65536:
        return bytes([mt | 25]) + n.to_bytes(2, "big")
    if n < 2**32:
        return bytes([mt | 26]) + n.to_bytes(4, "big")
    return bytes([mt | 27]) + n.to_bytes(8, "big")


def envelope(gateway_id: str, row_id: int, lane: str, created: float, body: bytes) -> bytes:
    """CBOR map of one row; the producer's CBOR body is spliced in without re-encoding."""
    head = cbor2.dumps({"k": f"{gateway_id}:{row_id}", "gw": gateway_id, "id": row_id, "lane": lane,
                        "ts": round(created, 3)})
    # head is a 5-entry map (0xA5): rewrite its header to 6 entries and append "body": <item>.
    return b"\xa6" + head[1:] + cbor2.dumps("body") + body


def bundle(gateway_id: str, lane: str, envelopes: list[bytes], first: int, last: int, level: int = 6) -> bytes:
    """One compressed message holding many row envelopes of one lane."""
    arr = _cbor_head(4, len(envelopes)) + b"".join(envelopes)
    return cbor2.dumps({"k": f"{gateway_id}:b{first}-{last}", "gw": gateway_id, "lane": lane,
                        "n": len(envelopes), "z": zlib.compress(arr, level)})


def decode_cloud_message(payload: bytes) -> list[dict[str, Any]]:
    """Cloud side: the row envelopes in a message (one, or all of a bundle). ValueError if malformed."""
    try:
        m = cbor2.loads(payload)
        if not isinstance(m, dict) or "k" not in m:
            raise ValueError("not an envelope")
        if "z" in m:
            items = cbor2.loads(zlib.decompress(m["z"]))
            if not isinstance(items, list) or len(items) != m.get("n"):
                raise ValueError("bundle count mismatch")
            return items
        return [m]
    except ValueError:
        raise
    except Exception as e:  # cbor2/zlib raise several types
        raise ValueError(f"cloud message: {e}") from e
