"""MQTT ingest: paho-mqtt 2.x client (VERSION2 callbacks) feeding the asyncio loop in batches.

paho's network thread appends (topic, payload, rx_time) to a deque and schedules one
drain on the loop with `call_soon_threadsafe` (not one per message: at tens of
thousands of messages per second the wake-ups would dominate). paho reconnects on
its own with exponential backoff (`reconnect_delay_set`); we re-subscribe in
`on_connect`. When the loop falls behind by more than `queue_max` messages, the
paho thread pauses, so the broker queues (and, past its own limit, drops: the
nodes re-send anything not acked).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import threading
import time
from typing import Any, Callable

import paho.mqtt.client as mqtt

from fogline.gateway import mqttclient
from fogline.shared import topics

log = logging.getLogger(__name__)

Item = tuple[str, bytes, float]
_RECV_CHUNK = 65536


class BufferedClient(mqtt.Client):
    """paho Client that reads the socket in 64 KiB chunks and skips needless wake-ups of its own select().

    paho reads each packet with 3+ recv() calls (type byte, length bytes, body) and queues each PUBACK
    with a wake-up byte on its socket pair even from its own thread; at tens of thousands of
    messages a second those syscalls (each a GIL release and re-acquire) are most of paho's cost.
    Here recv() serves packets from one chunk, loop_read() goes on while the chunk holds bytes (the
    socket's select() cannot see them), packets queued by paho's own thread write no wake-up byte
    (its next select() waits for writability anyway, as want_write() is then true), and a message
    goes straight to on_message when no per-topic callback was added.
    """

    _rbuf = b""
    _rpos = 0
    _filtered = False  # message_callback_add() used: paho's own topic matching is needed

    def message_callback_add(self, sub: str, callback: Any) -> None:
        self._filtered = True
        super().message_callback_add(sub, callback)

    def _handle_on_message(self, message: mqtt.MQTTMessage) -> None:
        # paho walks its per-topic callback trie for every message, even when it is empty (we use on_message)
        if self._filtered:
            return super()._handle_on_message(message)
        on_message = self.on_message
        if on_message is None:
            return None
        with self._in_callback_mutex:
            try:
                on_message(self, self._userdata, message)
            except Exception as err:
                self._easy_log(mqtt.MQTT_LOG_ERR, "Caught exception in on_message: %s", err)
                if not self.suppress_exceptions:
                    raise
        return None

    def _sock_recv(self, bufsize: int) -> bytes:
        buf, pos = self._rbuf, self._rpos
        if pos >= len(buf):
            buf = super()._sock_recv(_RECV_CHUNK)  # BlockingIOError etc. as paho expects them
            if not buf:
                return buf  # closed by the broker
            pos = 0
        out = buf[pos:pos + bufsize]
        self._rbuf, self._rpos = buf, pos + len(out)
        return out

    def _sock_close(self) -> None:
        self._rbuf, self._rpos = b"", 0  # bytes of a closed connection never reach the next one
        super()._sock_close()

    def loop_read(self, max_packets: int = 1) -> mqtt.MQTTErrorCode:
        rc = super().loop_read(max_packets)
        while rc == mqtt.MQTT_ERR_SUCCESS and self._rpos < len(self._rbuf) and self._sock is not None:
            rc = super().loop_read(max_packets)
        return rc

    def _packet_queue(self, command: int, packet: bytes | bytearray, mid: int, qos: int,
                      info: mqtt.MQTTMessageInfo | None = None) -> mqtt.MQTTErrorCode:
        w = self._sockpairW
        if w is None or self._thread is not threading.current_thread():
            return super()._packet_queue(command, packet, mid, qos, info)
        self._sockpairW = None  # another thread's publish meanwhile is written by our coming select() too
        try:
            return super()._packet_queue(command, packet, mid, qos, info)
        finally:
            self._sockpairW = w


class MqttIngest:
    """Site-broker client: subscribes to up/alert/state of every node, publishes acks."""

    KINDS = ("up", "alert", "state")
    on_ready: Callable[[], None] | None = None  # called on paho's thread each time the subscriptions are held

    def __init__(self, cfg: Any, loop: asyncio.AbstractEventLoop, deliver: Callable[[list[Item]], None],
                 metrics: Any, queue_max: int = 100000):
        self.cfg = cfg
        self.loop = loop
        self.deliver = deliver
        self.metrics = metrics
        self.queue_max = queue_max
        self.site = cfg.site.id
        self._q: collections.deque[Item] = collections.deque()
        self._scheduled = False
        self.connected = threading.Event()
        self._stopping = False
        self.filters = [topics.node_filter(self.site, k) for k in self.KINDS]
        m = cfg.mqtt
        self.client = mqttclient.from_config(m, cfg.mqtt_client_id(), clean_session=m.clean_session,
                                             max_inflight=1000, client_class=BufferedClient)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message

    # ---- paho thread
    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            log.warning("event=mqtt_connect_failed reason=%s", reason)
            self.metrics.inc("mqtt_connect_failures")
            return
        client.subscribe([(f, 1) for f in self.filters])
        self.metrics.inc("mqtt_connects")
        self.metrics.set("mqtt_connected", 1)
        log.info("event=mqtt_connected host=%s port=%s session_present=%s", self.cfg.mqtt.host,
                 self.cfg.mqtt.port, getattr(flags, "session_present", None))

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: Any, reasons: Any, props: Any) -> None:
        # Connected for our purposes once the broker holds the subscriptions (see mqtt_worker).
        self.connected.set()
        if self.on_ready is not None:
            self.on_ready()

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        self.connected.clear()
        self.metrics.set("mqtt_connected", 0)
        if not self._stopping:
            self.metrics.inc("mqtt_disconnects")
            log.warning("event=mqtt_disconnected reason=%s (paho reconnects with backoff)", reason)

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        q = self._q
        if len(q) > self.queue_max:
            self.metrics.inc("ingest_backpressure_waits")
            deadline = time.monotonic() + 2.0
            while len(q) > self.queue_max and time.monotonic() < deadline and not self._stopping:
                time.sleep(0.002)
        q.append((msg.topic, msg.payload, time.time()))
        if not self._scheduled:
            self._scheduled = True
            try:
                self.loop.call_soon_threadsafe(self._drain)
            except RuntimeError:  # loop closed during shutdown
                self._scheduled = False

    # ---- loop thread
    def _drain(self) -> None:
        self._scheduled = False  # before popping: an append racing with us schedules another drain
        q = self._q
        items: list[Item] = []
        pop = q.popleft
        while q:
            items.append(pop())
        if items:
            self.deliver(items)

    def pending(self) -> int:
        return len(self._q)

    def start(self) -> None:
        """Connect in the background (paho retries until the broker is up)."""
        m = self.cfg.mqtt
        self.client.connect_async(m.host, m.port, keepalive=m.keepalive)
        self.client.loop_start()

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> mqtt.MQTTMessageInfo:
        return self.client.publish(topic, payload, qos=qos, retain=retain)

    async def stop(self, flush_timeout: float = 3.0) -> None:
        """Wait (bounded) for our outgoing QoS 1 messages, then disconnect; deliver what arrived."""
        deadline = time.monotonic() + flush_timeout
        while self.connected.is_set() and time.monotonic() < deadline:
            n = len(getattr(self.client, "_out_messages", {}))
            if n == 0:
                break
            await asyncio.sleep(0.01)
        self._stopping = True
        self.client.disconnect()
        await asyncio.to_thread(self.client.loop_stop)
        self._drain()
