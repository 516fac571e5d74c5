# The asyncio MQTT client against a scripted peer on real 127.0.0.1 sockets (MicroPython unix port).
# The peer plays broker behaviours mosquitto will not show on demand: silence after CONNACK (dead
# link), a lost PUBACK (DUP resend), a kept session, a refused CONNECT (backoff), oversized packets.
import asyncio
import random
from time import ticks_ms, ticks_diff

from firmware import mqttpkt as m
from firmware.mqtt import MQTTClient
from mp_waits import until

MP_TIMEOUT = 300
WAIT_MS = 30000  # deadline of a wait for a condition: generous, a loaded host is slow, not wrong


class Peer:
    """One scripted broker; behaviour(peer, conn_no, packets) decides replies."""

    def __init__(self, behaviour):
        self.behaviour = behaviour
        self.conns = 0
        self.log = []  # (conn_no, first byte, body bytes, ms)
        self.t0 = ticks_ms()
        self.conn_times = []

    async def start(self):
        for _ in range(50):
            self.port = 20000 + random.getrandbits(15)
            try:
                self.srv = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
                return self
            except OSError:
                pass
        raise OSError("no free port")

    async def _serve(self, r, w):
        self.conns += 1
        no = self.conns
        self.conn_times.append(ticks_diff(ticks_ms(), self.t0))
        rx = m.PacketReader(8192)
        try:
            while True:
                p = rx.next()
                if p is None:
                    sp = rx.space()
                    n = await r.readinto(sp)
                    if not n:
                        break
                    rx.commit(n)
                    continue
                hdr, body = p[0], bytes(p[1])
                self.log.append((no, hdr, body, ticks_diff(ticks_ms(), self.t0)))
                out = self.behaviour(self, no, hdr, body)
                if out == "close":
                    break
                for pkt in out or ():
                    w.write(pkt)
                await w.drain()
        except OSError:
            pass
        w.close()
        await w.wait_closed()  # MicroPython closes the socket here, not in close()

    def close(self):
        self.srv.close()


def _standard(peer, no, hdr, body, connack=b"\x20\x02\x00\x00"):
    t = hdr & 0xF0
    if t == 0x10:
        return [connack]
    if t == 0x30 and hdr & 0x06:
        return [m.puback_packet(body[2 + (body[0] << 8 | body[1])] << 8 | body[3 + (body[0] << 8 | body[1])])]
    if t == 0x80:
        return [bytes((0x90, 3, body[0], body[1], 1))]
    if t == 0xC0:
        return [b"\xd0\x00"]
    return None


def _run(coro):
    return asyncio.run(coro)


def test_ping_timeout_detects_a_dead_link_and_reconnects():
    def silent_first(peer, no, hdr, body):
        if no == 1 and hdr & 0xF0 != 0x10:
            return None  # swallow PINGREQ: the path is dead though TCP stays open
        return _standard(peer, no, hdr, body)

    async def main():
        peer = await Peer(silent_first).start()
        c = MQTTClient("t1", "127.0.0.1", peer.port, keepalive_s=1, backoff_min_ms=50, backoff_max_ms=100)
        task = asyncio.create_task(c.run())
        assert await c.wait_connected(WAIT_MS)
        await until(lambda: peer.conns >= 2, WAIT_MS, "reconnect after the ping timeout")
        assert peer.conns == 2, peer.conns
        assert "ping timeout" in c.last_error, c.last_error
        assert await c.wait_connected(WAIT_MS)
        # the second connection answers pings: it stays up through two of them (counted, not timed)
        pings = c.stats["pings"]
        await until(lambda: c.stats["pings"] >= pings + 2, WAIT_MS, "two answered pings")
        assert peer.conns == 2 and c.stats["pings"] >= pings + 2, (peer.conns, c.stats, c.last_error)
        await c.disconnect()
        task.cancel()
        peer.close()
    _run(main())


def test_lost_puback_is_resent_with_dup_and_same_packet_id():
    def drop_first_puback(peer, no, hdr, body):
        if hdr & 0xF0 == 0x30 and not [1 for e in peer.log[:-1] if e[1] & 0xF0 == 0x30]:
            return None
        return _standard(peer, no, hdr, body)

    async def main():
        peer = await Peer(drop_first_puback).start()
        c = MQTTClient("t2", "127.0.0.1", peer.port, keepalive_s=30, retry_ms=300)
        task = asyncio.create_task(c.run())
        assert await c.wait_connected(WAIT_MS)
        pid = await c.publish("a/b", b"payload-1", qos=1)
        assert pid and pid in c.inflight
        assert await c.wait_puback(pid, WAIT_MS)
        pubs = [e for e in peer.log if e[1] & 0xF0 == 0x30]
        assert len(pubs) == 2, pubs
        assert not pubs[0][1] & 0x08 and pubs[1][1] & 0x08  # DUP only on the resend
        assert pubs[0][2] == pubs[1][2]  # same topic, packet id and payload
        assert pubs[1][3] - pubs[0][3] >= 250
        assert c.stats["resends"] == 1 and not c.inflight
        await c.disconnect()
        task.cancel()
        peer.close()
    _run(main())


def test_kept_session_resends_inflight_after_reconnect():
    def behave(peer, no, hdr, body):
        if no == 1 and hdr & 0xF0 == 0x30:
            return "close"  # connection dies before the PUBACK
        if hdr & 0xF0 == 0x10 and no == 2:
            return [b"\x20\x02\x01\x00"]  # session present
        return _standard(peer, no, hdr, body)

    async def main():
        peer = await Peer(behave).start()
        c = MQTTClient("t3", "127.0.0.1", peer.port, clean=False, keepalive_s=30, backoff_min_ms=50)
        task = asyncio.create_task(c.run())
        assert await c.wait_connected(WAIT_MS)
        pid = await c.publish("x", b"keep me", qos=1)
        assert await c.wait_puback(pid, WAIT_MS), (peer.log, c.stats, c.last_error, c.inflight)
        second = [e for e in peer.log if e[0] == 2 and e[1] & 0xF0 == 0x30]
        assert len(second) == 1 and second[0][1] & 0x08, second
        assert m.connect_packet("t3", 30, False)[9] == 0  # clean session flag off
        assert c.stats["connects"] == 2 and c.stats["dropped_inflight"] == 0
        await c.disconnect()
        task.cancel()
        peer.close()
    _run(main())


def test_refused_connect_backs_off_exponentially_with_jitter():
    def refuse(peer, no, hdr, body):
        if hdr & 0xF0 == 0x10:
            return [b"\x20\x02\x00\x05"]  # not authorised
        return None

    async def main():
        peer = await Peer(refuse).start()
        c = MQTTClient("t4", "127.0.0.1", peer.port, user="u", password="bad",
                       backoff_min_ms=40, backoff_max_ms=320)
        task = asyncio.create_task(c.run())
        # six refusals: about 1 s on an idle host, whatever it takes on a loaded one
        await until(lambda: c.stats["conn_fail"] >= 6, WAIT_MS, "six refused connects")
        task.cancel()
        peer.close()
        gaps = [peer.conn_times[i + 1] - peer.conn_times[i] for i in range(len(peer.conn_times) - 1)]
        assert len(gaps) >= 5, (gaps, c.stats)
        # delay d doubles from 40 to the 320 cap and each wait is at least d/2 (full jitter in
        # [d/2, d]); only lower bounds are asserted, a loaded machine can only make waits longer (the peer
        # notes each connection before it refuses it, so a measured gap is never shorter than the wait)
        d = 40
        for g in gaps:
            assert g >= d // 2 - 5, (gaps, d)
            d = min(d * 2, 320)
        assert not c.connected and c.stats["conn_fail"] == len(peer.conn_times)
        assert "refused" in c.last_error
        first = [e for e in peer.log if e[1] == 0x10][0][2]
        assert first[7] & 0xC0 == 0xC0 and first.endswith(b"\x00\x01u\x00\x03bad")
    _run(main())


def test_oversized_incoming_dropped_counted_and_reported_to_subscriber():
    big = bytes(m.publish_header("cfg/t", 3000, qos=0)) + bytes(3000)
    small = bytes(m.publish_header("cfg/t", 2)) + b"ok"

    def behave(peer, no, hdr, body):
        if hdr & 0xF0 == 0x80:
            return [bytes((0x90, 3, body[0], body[1], 1)), big, small]
        return _standard(peer, no, hdr, body)

    async def main():
        peer = await Peer(behave).start()
        got = []
        c = MQTTClient("t5", "127.0.0.1", peer.port, max_packet=1024)
        task = asyncio.create_task(c.run())
        await c.subscribe("cfg/t", 1, lambda t, p, r: got.append(p))
        assert await c.wait_connected(WAIT_MS)
        await until(lambda: len(got) >= 2, WAIT_MS, "two deliveries to the subscriber")
        assert got == [None, b"ok"], got
        assert c.oversized == 1 and c.connected and c.stats["connects"] == 1
        await c.disconnect()
        task.cancel()
        peer.close()
    _run(main())


def test_link_down_drops_connection_and_waits():
    state = {"up": True, "down_checks": 0}

    def link_up():
        if not state["up"]:
            state["down_checks"] += 1
        return state["up"]

    async def main():
        peer = await Peer(_standard).start()
        c = MQTTClient("t6", "127.0.0.1", peer.port, backoff_min_ms=20, link_up=link_up)
        task = asyncio.create_task(c.run())
        assert await c.wait_connected(WAIT_MS)
        state["up"] = False
        await until(lambda: not c.connected, WAIT_MS, "disconnect on link down")
        # several passes of the connect loop while down (counted, not timed): each would have reconnected
        # a client ignoring link_up
        n = state["down_checks"]
        await until(lambda: state["down_checks"] >= n + 3, WAIT_MS, "3 link checks while down")
        assert not c.connected and peer.conns == 1
        try:
            await c.publish("a", b"x", 1)
            raise AssertionError("published while down")
        except OSError:
            pass
        state["up"] = True
        assert await c.wait_connected(WAIT_MS) and peer.conns == 2
        await c.disconnect()
        task.cancel()
        peer.close()
    _run(main())
