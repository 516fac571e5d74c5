"""The cloud consumer: shared MQTT subscriptions in, one database transaction per batch, acks after commit.

paho runs its network thread with `manual_ack=True`; each message is handed to the asyncio loop
(call_soon_threadsafe). A writer task takes whatever arrived (up to `batch_max` messages), decodes and
writes it in one transaction on the database thread, and only after COMMIT sends the PUBACKs. A crash
before the commit leaves the messages unacknowledged: the broker delivers them again (to this session
when it comes back) and the idempotent upserts absorb any that did commit. The database being down
holds the batch and retries it with backoff; nothing is acked meanwhile, so the broker stops sending
once `receive_maximum` messages wait.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from fogline.gateway.cloudsvc.config import BrokerConfig, DbConfig
from fogline.gateway import mqttclient
from fogline.gateway.cloudsvc.db_pg import TransientDbError
from fogline.gateway.cloudsvc.rows import Batch
from fogline.gateway.ops.metrics import Metrics
from fogline.gateway.aio import cancel_and_wait, wait_event

log = logging.getLogger(__name__)


def topic_filters(cfg: BrokerConfig) -> list[str]:
    """The subscriptions: $share/<group>/fogline/+/<lane> for each lane (plain filters when not shared)."""
    pre = f"$share/{cfg.group}/" if cfg.shared else ""
    return [f"{pre}fogline/+/{lane}" for lane in cfg.lanes]


class Consumer:
    """One consumer process's MQTT session and write loop (`await start()`, `await stop()`)."""

    def __init__(self, broker: BrokerConfig, db: DbConfig, backend: Any, metrics: Metrics | None = None):
        self.cfg = broker
        self.dbcfg = db
        self.backend = backend
        self.metrics = metrics or Metrics()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="cloud-db")  # the only thread touching the writer
        self.pending: list[tuple[int, int, int, str, bytes]] = []  # generation, mid, qos, topic, payload
        self.have = asyncio.Event()
        self.connected = asyncio.Event()
        self.subscribed = asyncio.Event()  # the broker acknowledged the subscriptions (SUBACK)
        self.gen = 0  # connection generation: acks for messages of an earlier connection are not sent
        self.task: asyncio.Task | None = None
        self.writing = False  # a batch is between the queue and its acks
        self.on_written: Any = None  # optional callback(batch, counts) on the loop after each commit
        self.client_id = broker.client_id or f"{broker.group}-{socket.gethostname()}-{os.getpid()}"
        self.client = self._make_client()
        for name, text in (("cloud_messages", "MQTT messages received"),
                           ("cloud_rows", "rows written (new), by kind"),
                           ("cloud_duplicates", "rows already stored (absorbed re-deliveries), by kind"),
                           ("cloud_dead_letters", "undecodable messages or envelopes stored as dead letters"),
                           ("cloud_batches", "transactions committed"),
                           ("cloud_db_retries", "batches retried after a database error")):
            self.metrics.describe(name, text)

    def _make_client(self) -> mqtt.Client:
        c = mqttclient.from_config(self.cfg, self.client_id, manual_ack=True, clean_session=False)
        c.on_connect = self._t_connect
        c.on_disconnect = self._t_disconnect
        c.on_message = self._t_message
        c.on_subscribe = lambda *_a: self._call(self._subscribed)
        return c

    # -- paho thread -> loop ---------------------------------------------------------------------
    def _call(self, fn: Any, *a: Any) -> None:
        assert self.loop is not None
        try:
            self.loop.call_soon_threadsafe(fn, *a)
        except RuntimeError:
            pass  # loop closed during shutdown

    def _t_connect(self, client: mqtt.Client, _u: Any, _f: Any, rc: Any, _p: Any = None) -> None:
        if rc.is_failure:
            log.warning("event=cloud_consumer_connect_failed reason=%s", rc)
            return
        client.subscribe([(f, 1) for f in topic_filters(self.cfg)])
        self._call(self._connected)

    def _t_disconnect(self, _c: Any, _u: Any, _f: Any, rc: Any, _p: Any = None) -> None:
        self._call(self._disconnected, str(rc))

    def _t_message(self, _c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        self._call(self._got, msg.mid, msg.qos, msg.topic, bytes(msg.payload))

    # -- loop side -------------------------------------------------------------------------------
    def _connected(self) -> None:
        self.gen += 1
        self.connected.set()
        log.info("event=cloud_consumer_connected client_id=%s filters=%s", self.client_id,
                 ",".join(topic_filters(self.cfg)))

    def _subscribed(self) -> None:
        self.subscribed.set()
        log.info("event=cloud_consumer_subscribed client_id=%s", self.client_id)

    def _disconnected(self, reason: str) -> None:
        self.connected.clear()
        log.warning("event=cloud_consumer_disconnected reason=%s pending=%d", reason, len(self.pending))

    def _got(self, mid: int, qos: int, topic: str, payload: bytes) -> None:
        self.pending.append((self.gen, mid, qos, topic, payload))
        self.metrics.inc("cloud_messages")
        self.have.set()

    async def start(self) -> None:
        """Open the database (waiting while it is down), connect, start the write loop."""
        self.loop = asyncio.get_running_loop()
        await self._db(self.backend.open)
        kw: dict[str, Any] = {}
        if self.cfg.protocol == "5":
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = int(self.cfg.session_expiry_s)
            props.ReceiveMaximum = int(self.cfg.receive_maximum)
            kw = {"clean_start": False, "properties": props}
        self.client.connect_async(self.cfg.host, self.cfg.port, keepalive=self.cfg.keepalive, **kw)
        self.client.loop_start()
        self.task = asyncio.create_task(self._write_loop(), name="cloud-writer")

    async def wait_subscribed(self, timeout: float) -> bool:
        """True once the broker holds the subscriptions (messages published from then on reach the group)."""
        return await wait_event(self.subscribed, timeout)

    async def stop(self) -> None:
        """Write and ack what arrived, then disconnect."""
        if self.task is not None:
            deadline = time.monotonic() + 30
            while (self.pending or self.writing) and self.connected.is_set() and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            await cancel_and_wait(self.task)
        self.client.disconnect()
        await asyncio.get_running_loop().run_in_executor(None, self.client.loop_stop)
        await asyncio.get_running_loop().run_in_executor(self.pool, self.backend.close)
        self.pool.shutdown(wait=True)

    async def _db(self, fn: Any, *a: Any) -> Any:
        """Run fn on the database thread; while the database is down, retry with backoff."""
        assert self.loop is not None
        delay = self.dbcfg.retry_min_s
        while True:
            try:
                return await self.loop.run_in_executor(self.pool, fn, *a)
            except TransientDbError as e:
                self.metrics.inc("cloud_db_retries")
                log.warning("event=cloud_db_unavailable error=%s retry_s=%.1f", str(e).strip()[:200], delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.dbcfg.retry_max_s)

    async def _write_loop(self) -> None:
        while True:
            await self.have.wait()
            msgs = self.pending[:self.dbcfg.batch_max]
            del self.pending[:len(msgs)]
            if not self.pending:
                self.have.clear()
            if not msgs:
                continue
            self.writing = True
            batch = Batch()
            for _g, _m, _q, topic, payload in msgs:
                batch.add_message(topic, payload)
            try:
                counts = await self._db(self.backend.write, batch)
            except Exception:  # not the database being away: some row it refuses; find it, keep the rest
                log.exception("event=cloud_batch_refused messages=%d (writing them one by one)", len(msgs))
                batch, counts = await self._write_each(msgs)
            self._account(batch, counts)
            for gen, mid, qos, _t, _p in msgs:
                if gen == self.gen and qos > 0:  # a message of an earlier connection is being re-delivered
                    self.client.ack(mid, qos)
            self.writing = False
            if self.on_written is not None:
                self.on_written(batch, counts)

    async def _write_each(self, msgs: list[tuple[int, int, int, str, bytes]]) -> tuple[Batch, dict[str, int]]:
        """Write messages one per transaction; one the database refuses becomes a dead letter (with the reason)."""
        total = Batch()
        counts: dict[str, int] = {}
        for _g, _m, _q, topic, payload in msgs:
            one = Batch()
            one.add_message(topic, payload)
            try:
                got = await self._db(self.backend.write, one)
            except Exception as e:
                one = Batch(dead=[(topic, f"database refused: {e}"[:200], payload)])
                got = await self._db(self.backend.write, one)
            for k, v in got.items():
                counts[k] = counts.get(k, 0) + v
            for f in ("readings", "alerts", "health", "dead"):
                getattr(total, f).extend(getattr(one, f))
            total.windows.update(one.windows)
            total.decisions.update(one.decisions)
            total.messages += 1
            total.wire_bytes += len(topic) + len(payload)
        return total, counts

    def _account(self, b: Batch, counts: dict[str, int]) -> None:
        m = self.metrics
        m.inc("cloud_batches")
        offered = {"readings": len(b.readings), "alerts": len(b.alerts), "windows": len(b.windows),
                   "decisions": len(b.decisions), "health": len(b.health)}
        for kind, n in offered.items():
            new = counts.get(kind, 0)
            if new:
                m.inc("cloud_rows", new, kind=kind)
            if kind in ("readings", "alerts", "health") and n > new:
                m.inc("cloud_duplicates", n - new, kind=kind)
        if b.dead:
            m.inc("cloud_dead_letters", len(b.dead))
            log.warning("event=cloud_dead_letters n=%d first=%s", len(b.dead), b.dead[0][1])
        now = time.time()
        for a in b.alerts:
            m.set("cloud_alert_latency_s", round(now - a[8], 4))
