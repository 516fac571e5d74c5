"""MQTT 3.1.1 client for MicroPython asyncio: QoS 0/1, keepalive, LWT, reconnect with backoff."""

import asyncio
import random
from time import ticks_ms, ticks_diff
from micropython import const

from firmware.mqttpkt import (CONNACK, PUBLISH, PUBACK, SUBACK, PINGRESP, PINGREQ, DISCONNECT,
                              connect_packet, publish_header, subscribe_packet, puback_packet,
                              parse_publish, PacketReader)

_TICK_MS = const(50)


class MQTTClient:
    """Keeps one MQTT session alive in run(); publish/subscribe from other tasks."""

    def __init__(self, client_id, host, port=1883, keepalive_s=30, clean=True, user=None,
                 password=None, will=None, max_packet=3072, max_inflight=8, retry_ms=5000,
                 backoff_min_ms=250, backoff_max_ms=30000, connect_timeout_ms=5000,
                 link_up=None, on_message=None, on_connect=None, ssl=None, server_hostname=None):
        self.client_id, self.host, self.port, self.keepalive_s = client_id, host, port, keepalive_s
        self.clean, self.user, self.password, self.will = clean, user, password, will
        self.max_inflight, self.retry_ms, self.connect_timeout_ms = max_inflight, retry_ms, connect_timeout_ms
        self.backoff_min_ms, self.backoff_max_ms = backoff_min_ms, backoff_max_ms
        self.link_up, self.on_message, self.on_connect = link_up, on_message, on_connect
        self.ssl, self.server_hostname = ssl, server_hostname  # an SSLContext: TLS to the broker (links.tls_context)
        self.rx = PacketReader(max_packet)
        self.subs = {}
        self.inflight = {}  # pid -> [topic, payload, retain, sent_ms]
        self.connected = False
        self.last_error = None
        self.stats = {"connects": 0, "conn_fail": 0, "disconnects": 0, "tx_msgs": 0,
                      "tx_bytes": 0, "rx_msgs": 0, "rx_bytes": 0, "resends": 0,
                      "dropped_inflight": 0, "pings": 0, "protocol_errors": 0}
        self._pid = 0
        self._r = self._w = None
        self._rtask = None
        self._rdead = False
        self._stop = False
        self._last_tx = self._last_rx = 0
        self._ping_ms = None
        self._wlock = asyncio.Lock()
        # Link quality for `state` (PLACEMENT): last PUBACK round trip and an integer EWMA (1/8) of
        # QoS 1 publishes not acknowledged in time (per mille); updated without allocating.
        self.rtt_ms = None
        self.loss_pm = 0

    @property
    def oversized(self):
        """Incoming packets dropped for exceeding max_packet."""
        return self.rx.oversized

    def _next_pid(self):
        while True:
            self._pid = self._pid % 65535 + 1
            if self._pid not in self.inflight:
                return self._pid

    async def _send(self, *parts):
        w = self._w
        if w is None:
            raise OSError("mqtt: not connected")
        # One write per packet: a header and payload in two segments meet Nagle + delayed ACK
        # (~40 ms per message on Linux).
        buf = parts[0] if len(parts) == 1 else b"".join(parts)
        # One drain at a time: the stream allows a single task waiting to write.
        async with self._wlock:
            if w is not self._w:
                raise OSError("mqtt: not connected")
            w.write(buf)
            self.stats["tx_bytes"] += len(buf)
            await w.drain()
        self._last_tx = ticks_ms()

    async def _packet(self):
        while True:
            seen = self.rx.oversized
            p = self.rx.next()
            if self.rx.oversized != seen:
                self._oversized()
            if p is not None:
                self._last_rx = ticks_ms()
                return p
            sp = self.rx.space()
            n = await self._r.readinto(sp)
            if not n:
                raise OSError("mqtt: connection closed")
            self.rx.commit(n)
            self.stats["rx_bytes"] += n

    def _oversized(self):
        # Tell the subscriber its message was dropped (payload None) so it can report it.
        self.last_error = "mqtt: dropped a packet over %d bytes" % self.rx.max_packet
        t = self.rx.oversized_topic
        cb = self.subs.get(t) if t else None
        if cb and cb[1]:
            try:
                cb[1](t, None, False)
            except Exception as e:
                self.last_error = "on_message: %r" % (e,)

    async def _connect(self):
        self.rx.reset()
        if self.ssl is None:
            conn = asyncio.open_connection(self.host, self.port)
        else:
            conn = asyncio.open_connection(self.host, self.port, ssl=self.ssl,
                                           server_hostname=self.server_hostname or self.host)
        self._r, self._w = await asyncio.wait_for_ms(conn, self.connect_timeout_ms)
        try:
            # TCP_NODELAY (IPPROTO_TCP 6, option 1 on Linux and lwIP): back-to-back small packets
            # would otherwise wait for the peer's delayed ACK (~40 ms), alerts included.
            self._w.s.setsockopt(6, 1, 1)
        except (AttributeError, OSError):
            pass
        await self._send(connect_packet(self.client_id, self.keepalive_s, self.clean,
                                        self.user, self.password, self.will))
        hdr, body = await asyncio.wait_for_ms(self._packet(), self.connect_timeout_ms)
        if hdr != CONNACK or len(body) != 2:
            raise ValueError("mqtt: expected CONNACK")
        if body[1]:
            raise ValueError("mqtt: connection refused, code %d" % body[1])
        session = body[0] & 1
        self.connected = True
        self.stats["connects"] += 1
        self._ping_ms = None
        if not session:
            # A fresh session forgot our packet ids: the owner resends from its own store.
            self.stats["dropped_inflight"] += len(self.inflight)
            for _ in self.inflight:
                self.loss_pm += (1000 - self.loss_pm) >> 3
            self.inflight.clear()
        for topic in self.subs:
            await self._send(subscribe_packet(self._next_pid(), topic, self.subs[topic][0]))
        for pid in self.inflight:
            await self._resend(pid)
        if self.on_connect:
            self.on_connect(self)

    async def _resend(self, pid):
        m = self.inflight[pid]
        m[3] = ticks_ms()
        self.stats["resends"] += 1
        await self._send(publish_header(m[0], len(m[1]), 1, m[2], True, pid), m[1])

    async def _read_loop(self):
        try:
            while True:
                hdr, body = await self._packet()
                t = hdr & 0xF0
                if t == PUBLISH:
                    topic, payload, qos, pid, retained = parse_publish(hdr, body)
                    self.stats["rx_msgs"] += 1
                    if qos:
                        await self._send(puback_packet(pid))
                    cb = self.subs.get(topic)
                    cb = cb[1] if cb and cb[1] else self.on_message
                    if cb:
                        try:
                            cb(topic, payload, retained)
                        except Exception as e:  # a handler bug must not kill the link
                            self.last_error = "on_message: %r" % (e,)
                elif t == PUBACK and len(body) == 2:
                    m = self.inflight.pop(body[0] << 8 | body[1], None)
                    if m is not None:
                        self.rtt_ms = ticks_diff(ticks_ms(), m[3])
                        self.loss_pm -= self.loss_pm >> 3
                elif t == SUBACK:
                    if len(body) >= 3 and body[2] == 0x80:
                        self.last_error = "mqtt: subscription refused"
                elif t == PINGRESP:
                    self._ping_ms = None
                else:
                    self.stats["protocol_errors"] += 1
        except Exception as e:  # any failure ends this connection; run() reconnects
            if not isinstance(e, asyncio.CancelledError):
                self.last_error = "mqtt read: %r" % (e,)
        self._rdead = True

    async def _serve(self):
        ka = self.keepalive_s * 1000
        self._rdead = False
        self._rtask = asyncio.create_task(self._read_loop())
        while not self._stop:
            await asyncio.sleep_ms(_TICK_MS)
            if self._rdead:
                return
            if self.link_up and not self.link_up():
                self.last_error = "mqtt: link down"
                return
            now = ticks_ms()
            if self._ping_ms is not None:
                # No PINGRESP within half a keepalive: the path is dead even if TCP looks open.
                if ticks_diff(now, self._ping_ms) > ka // 2:
                    self.last_error = "mqtt: ping timeout"
                    return
            elif ka and ticks_diff(now, self._last_tx) >= ka // 2:
                self._ping_ms = now
                self.stats["pings"] += 1
                await self._send(PINGREQ)
            for pid in list(self.inflight):
                m = self.inflight.get(pid)
                if m and ticks_diff(now, m[3]) >= self.retry_ms:
                    self.loss_pm += (1000 - self.loss_pm) >> 3  # no PUBACK within retry_ms: counts as lost
                    await self._resend(pid)

    async def _close(self):
        if self.connected:
            self.stats["disconnects"] += 1
        self.connected = False
        if self._rtask:
            self._rtask.cancel()
            self._rtask = None
        w = self._w
        self._w = self._r = None
        if w:
            try:
                w.close()
                await w.wait_closed()
            except Exception:
                pass

    async def run(self):
        """Connect, serve and reconnect forever with jittered exponential backoff."""
        delay = self.backoff_min_ms
        while not self._stop:
            if self.link_up and not self.link_up():
                await asyncio.sleep_ms(100)
                continue
            try:
                await self._connect()
                delay = self.backoff_min_ms
                await self._serve()
            except Exception as e:
                if isinstance(e, asyncio.CancelledError):
                    raise
                if not self.connected:
                    self.stats["conn_fail"] += 1
                self.last_error = "mqtt: %r" % (e,)
            await self._close()
            if self._stop:
                break
            # Full jitter in [delay/2, delay] so a fleet does not reconnect in lockstep.
            await asyncio.sleep_ms(delay // 2 + random.getrandbits(20) % (delay // 2 + 1))
            delay = min(delay * 2, self.backoff_max_ms)

    async def wait_connected(self, timeout_ms=None):
        """Wait until connected; False on timeout."""
        t0 = ticks_ms()
        while not self.connected:
            if timeout_ms is not None and ticks_diff(ticks_ms(), t0) >= timeout_ms:
                return False
            await asyncio.sleep_ms(20)
        return True

    async def publish(self, topic, payload, qos=0, retain=False):
        """Send a PUBLISH; returns its packet id (0 for QoS 0). OSError if not connected."""
        if not self.connected:
            raise OSError("mqtt: not connected")
        pid = 0
        if qos:
            while len(self.inflight) >= self.max_inflight:
                await asyncio.sleep_ms(5)
                if not self.connected:
                    raise OSError("mqtt: not connected")
            pid = self._next_pid()
            self.inflight[pid] = [topic, payload, retain, ticks_ms()]
        self.stats["tx_msgs"] += 1
        await self._send(publish_header(topic, len(payload), qos, retain, False, pid), payload)
        return pid

    async def wait_puback(self, pid, timeout_ms):
        """True once pid is acknowledged (or dropped with its session), False on timeout."""
        t0 = ticks_ms()
        while pid in self.inflight:
            if ticks_diff(ticks_ms(), t0) >= timeout_ms:
                return False
            await asyncio.sleep_ms(5)
        return True

    async def subscribe(self, topic, qos=1, callback=None):
        """Subscribe now if connected and after every reconnect; callback(topic, payload, retained).

        payload is None when a message on this topic exceeded max_packet and was dropped.
        """
        self.subs[topic] = (qos, callback)
        if self.connected:
            await self._send(subscribe_packet(self._next_pid(), topic, qos))

    def link_quality(self):
        """`state` link fields: loss (fraction of QoS 1 publishes not acked in time), rtt_ms, reconnects."""
        c = self.stats["connects"]
        return {"loss": self.loss_pm / 1000, "rtt_ms": self.rtt_ms, "reconnects": c - 1 if c > 1 else 0}

    def set_max_packet(self, n):
        """New incoming size limit; takes effect with the next connection."""
        self.rx = PacketReader(n)
        self.drop()

    def drop(self):
        """Force the current connection down (e.g. Wi-Fi lost); run() reconnects."""
        self._rdead = True

    async def disconnect(self):
        """Send DISCONNECT (no LWT) and stop run()."""
        self._stop = True
        if self.connected:
            try:
                await self._send(DISCONNECT)
            except Exception:
                pass
        await self._close()
