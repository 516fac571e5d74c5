# Uplink logic on the MicroPython unix port: payload format, windowing, ack handling, resends.
# Real FlashLog on a RAM LittleFS; the MQTT client is replaced by a recorder (the real client
# against mosquitto is exercised in tests/node/test_uplink_mqtt.py).
# Every wait is on a condition (mp_waits.until), never a fixed time: a loaded host only makes it slower.
# "Nothing more was sent" is proved by the uplink's state (window full, nothing pending), not by waiting.
import asyncio
from time import ticks_ms, ticks_diff

from mp_waits import until

from shared import auth, cbor, epoch, senml
from firmware.uplink import Uplink, build_payload, decode_body

UNIX0 = 1764150000
T0 = UNIX0 - senml.NODE_EPOCH  # node seconds, as the node writes record bodies


class Recorder:
    def __init__(self):
        self.connected = True
        self.stats = {"connects": 1}
        self.sent = []
        self.times = []  # ticks_ms of each publish
        self.subs = {}
        self.last_error = None

    async def publish(self, topic, payload, qos=0, retain=False):
        self.sent.append((topic, payload))
        self.times.append(ticks_ms())
        return 1

    async def subscribe(self, topic, qos=1, callback=None):
        self.subs[topic] = callback


_MOUNTED = []


def _store(name):
    if not _MOUNTED:
        import flashdev
        flashdev.mount(flashdev.FlashDev(64), "/fl", format=True)
        _MOUNTED.append(1)
    from firmware.flashlog import FlashLog
    return FlashLog("/fl/" + name, capacity_bytes=64 * 1024, segment_bytes=4096, sync_every=1, sync_ms=0)


def _fill(log, n, lane="up"):
    for i in range(1, n + 1):
        log.append(lane, cbor.dumps([T0 + i, "temp", "Cel", 20.0 + i * 0.5]), i)


def _ack(log, **lanes):
    """An ack for the log's epoch, as the gateway sends it."""
    return cbor.dumps(epoch.ack_map(lanes, log.epoch))


def _window_full(up, lane="up"):
    return len(up._out[lane]) >= up.window


def _unsent(up, log, lane="up"):
    """Records of lane neither acked nor in flight: 0 means the uplink has nothing left to publish."""
    return log.depth(lane) - (up.sent[lane] - up.acked[lane])


def _decode(payload):
    first, pack_bytes, tag = auth.split_pack(payload)
    return first, senml.decode_pack(pack_bytes), tag


def test_payload_is_first_seq_and_senml_pack_with_optional_tag():
    recs = [("temp", "Cel", 20.5, T0 + 1), ("temp", "Cel", 21.0, T0 + 2)]
    p = build_payload("n1", "up", 7, recs)
    first, resolved, tag = _decode(p)
    assert first == 7 and tag is None
    assert resolved == [("n1/temp", "Cel", 20.5, UNIX0 + 1), ("n1/temp", "Cel", 21.0, UNIX0 + 2)]
    assert cbor.loads(auth.split_pack(p)[1])[0][senml.BT] == UNIX0 + 1  # node seconds + NODE_EPOCH, once
    key = bytes(range(16))
    signed = build_payload("n1", "up", 7, recs, key)
    assert auth.open_pack(key, "n1", "up", signed)[0] == 7
    try:
        auth.open_pack(key, "n2", "up", signed)
        raise AssertionError("tag verified for another node")
    except ValueError:
        pass
    assert decode_body(cbor.dumps([T0, "h", "%RH", 40.0])) == ("h", "%RH", 40.0, T0)
    # a body written by firmware that stored Unix seconds still resolves to the same time
    assert decode_body(cbor.dumps([UNIX0, "h", "%RH", 40.0])) == ("h", "%RH", 40.0, T0)
    for bad in (cbor.dumps([1, 2]), cbor.dumps({"a": 1}), b"\xff", cbor.dumps([T0, "x", None, None]),
                cbor.dumps([T0, "x", 5, 1.0]), cbor.dumps(["t", "x", None, 1.0])):
        try:
            decode_body(bad)
            raise AssertionError("accepted %r" % bad)
        except ValueError:
            pass


def test_bytes_per_reading_in_packs_of_50():
    recs = [("temperature", "Cel", 21.0 + (i % 7) * 0.25, T0 + i) for i in range(50)]
    p = build_payload("node-0001", "up", 1000, recs)
    assert len(p) / 50 <= 10, len(p) / 50


def test_alerts_first_window_and_gateway_ack_deletes():
    async def main():
        log = _store("a")
        _fill(log, 120)
        log.append("alert", cbor.dumps([T0, "hot", "Cel", 99.0]), 1)
        c = Recorder()
        up = Uplink(c, log, "s1", "n1", min_pack=10, max_pack=50, window=2, linger_ms=0, ack_timeout_ms=100000)
        task = asyncio.create_task(up.run())
        await until(lambda: _window_full(up), what="window of 2 up packs in flight")
        topics = [t for t, _ in c.sent]  # window full: no further up pack before an ack
        assert topics == ["fogline/s1/n1/alert", "fogline/s1/n1/up", "fogline/s1/n1/up"], topics
        assert [_decode(p)[0] for _, p in c.sent] == [1, 1, 51]
        assert log.depth("up") == 120  # PUBACKs mean nothing: only the gateway's ack deletes
        ack = c.subs["fogline/s1/n1/ack"]
        ack("fogline/s1/n1/ack", _ack(log, up=50, alert=1), False)
        assert log.depth("up") == 70 and log.depth("alert") == 0
        await until(lambda: len(c.sent) >= 4, what="the pack after the ack")
        assert [_decode(p)[0] for _, p in c.sent][-1] == 101 and len(c.sent) == 4
        assert _unsent(up, log) == 0 and up.sent["up"] == 120  # all of it is out: there is no 5th pack
        # an ack beyond anything sent is clamped; garbage acks are counted, not fatal
        ack("fogline/s1/n1/ack", _ack(log, up=10 ** 6), False)
        assert up.acked["up"] == 120
        for bad in (b"\xff", cbor.dumps([1]), _ack(log, up="x"), None):
            ack("fogline/s1/n1/ack", bad, False)
        assert up.stats["bad_acks"] == 4 and up.acked["up"] == 120 and log.depth("up") == 0
        ack("fogline/s1/n1/ack", _ack(log, up=5), False)  # acks never go backwards
        assert up.acked["up"] == 120
        task.cancel()
    asyncio.run(main())


def test_timeout_and_reconnect_resend_the_same_seqs():
    async def main():
        log = _store("b")
        _fill(log, 30)
        c = Recorder()
        # The ack timeout is armed only once the first round is checked (set live, as reconfigure()
        # does): a loaded host must not fire it before the test looks.
        up = Uplink(c, log, "s1", "n1", min_pack=10, max_pack=10, window=3, linger_ms=0, ack_timeout_ms=10 ** 6)
        task = asyncio.create_task(up.run())
        await until(lambda: _window_full(up), what="window of 3 packs in flight")
        assert [_decode(p)[0] for _, p in c.sent] == [1, 11, 21]  # window full: no 4th before an ack
        c.subs["fogline/s1/n1/ack"]("x", _ack(log, up=10), False)
        assert _unsent(up, log) == 0  # 11..30 in flight: only a timeout or a reconnect sends again
        up.ack_timeout_ms = 150
        await until(lambda: len(c.sent) >= 5, what="resend after the ack timeout")
        up.ack_timeout_ms = 10 ** 6  # from here only the reconnect may resend
        firsts = [_decode(p)[0] for _, p in c.sent]
        assert firsts[3:5] == [11, 21], firsts
        assert up.stats["timeouts"] >= 1 and up.stats["resent_records"] >= 20
        # each timeout restarted the up lane once; the first connect's rewind (nothing sent yet) and the
        # empty alert lane restarted nothing
        assert up.stats["restarts"] == up.stats["timeouts"], up.stats
        resent = [p for _, p in c.sent if _decode(p)[0] == 11]
        assert resent[0] == resent[1]  # byte-identical resend
        n, timeouts = len(c.sent), up.stats["timeouts"]
        c.stats["connects"] += 1  # a reconnect rewinds at once
        await until(lambda: len(c.sent) > n, what="resend after the reconnect")
        assert _decode(c.sent[n][1])[0] == 11 and up.stats["timeouts"] == timeouts
        assert up.stats["restarts"] == timeouts + 1, up.stats
        task.cancel()
    asyncio.run(main())


def test_undecodable_record_keeps_its_seq_slot():
    async def main():
        log = _store("e")
        _fill(log, 2)
        log.append("up", cbor.dumps([T0 + 3, "x", None, None]), 3)  # value the codec cannot carry
        _fill(log, 0)
        log.append("up", cbor.dumps([T0 + 4, "temp", "Cel", 1.5]), 4)
        c = Recorder()
        up = Uplink(c, log, "s1", "n1", min_pack=1, linger_ms=0)
        task = asyncio.create_task(up.run())
        await until(lambda: c.sent, what="first pack")
        first, recs, _ = _decode(c.sent[0][1])
        assert first == 1 and len(recs) == 4, (first, recs)
        bad = [r for r in recs if r[0] == "n1/fogline_bad_record"]
        assert len(bad) == 1 and isinstance(bad[0][2], bytes) and up.stats["bad_records"] == 1
        assert sorted(r[2] for r in recs if r[0] == "n1/temp") == [1.5, 20.5, 21.0]
        task.cancel()
    asyncio.run(main())


def test_resend_reuses_the_original_message_boundaries():
    async def main():
        log = _store("f")
        _fill(log, 4)
        c = Recorder()
        # timeout armed after the first round (see test_timeout_and_reconnect_resend_the_same_seqs)
        up = Uplink(c, log, "s1", "n1", min_pack=10, max_pack=50, window=4, linger_ms=0, ack_timeout_ms=10 ** 6)
        task = asyncio.create_task(up.run())
        await until(lambda: c.sent, what="first pack")
        for i in range(5, 8):  # small packs while the backlog is small
            log.append("up", cbor.dumps([T0 + i, "hum", "%RH", 40.0 + i]), i)
            await until(lambda: up.sent["up"] == i, what="pack with seq %d" % i)
        assert _window_full(up)
        _fill_from(log, 8, 60)  # then a big backlog
        first_round = list(c.sent)
        up.ack_timeout_ms = 200
        await until(lambda: len(c.sent) >= 2 * len(first_round), what="resend after the ack timeout")
        sent = [(_decode(p)[0], len(_decode(p)[1])) for _, p in c.sent]
        n = len(first_round)
        assert n == 4 and sent[0] == (1, 4) and sent[1] == (5, 1), sent
        # the resend repeats the first round's packs byte for byte, though the backlog is now big
        assert c.sent[n:2 * n] == first_round, sent
        assert up.stats["timeouts"] >= 1
        task.cancel()
    asyncio.run(main())


def _fill_from(log, a, b):
    for i in range(a, b + 1):
        log.append("up", cbor.dumps([T0 + i, "temp", "Cel", 20.0 + i * 0.5]), i)


def test_small_backlog_lingers_for_a_fuller_pack():
    async def main():
        log = _store("c")
        _fill(log, 3)
        c = Recorder()
        t0 = ticks_ms()
        up = Uplink(c, log, "s1", "n1", min_pack=10, max_pack=50, linger_ms=300)
        task = asyncio.create_task(up.run())
        await until(lambda: c.sent, what="the lingering pack")
        # a lower bound on the uplink's own timer: load can only make the linger longer
        assert ticks_diff(c.times[0], t0) >= 300, ticks_diff(c.times[0], t0)
        assert len(c.sent) == 1 and len(_decode(c.sent[0][1])[1]) == 3 and _unsent(up, log) == 0
        task.cancel()
    asyncio.run(main())


def test_state_fields_report_oldest_pending():
    log = _store("d")
    _fill(log, 5)
    up = Uplink(Recorder(), log, "s1", "n1")
    assert up.state_fields()["oldest"] == {"up": 1, "alert": 1}
    log.ack_upto("up", 3)
    assert up.state_fields()["oldest"]["up"] == 4




def test_ack_of_another_epoch_deletes_nothing():
    # A gateway cursor from before the flash was erased (no "e", or another epoch) must not delete
    # readings of this log: it is counted and ignored; the ack of this epoch works.
    async def main():
        log = _store("g")
        _fill(log, 30)
        assert 1 <= log.epoch <= epoch.MAX
        c = Recorder()
        up = Uplink(c, log, "s1", "n1", min_pack=10, max_pack=10, window=3, linger_ms=0, ack_timeout_ms=100000)
        task = asyncio.create_task(up.run())
        await until(lambda: _window_full(up), what="window of 3 packs in flight")
        first, pack, tag, ep = auth.split_uplink(c.sent[0][1])
        assert first == 1 and tag is None and ep == log.epoch  # the payload names its epoch
        ack = c.subs["fogline/s1/n1/ack"]
        other = log.epoch % epoch.MAX + 1
        for stale in (cbor.dumps({"up": 20}), cbor.dumps(epoch.ack_map({"up": 20}, other))):
            ack("x", stale, False)
        assert up.stats["foreign_acks"] == 2 and log.depth("up") == 30 and up.acked["up"] == 0
        ack("x", cbor.dumps({"up": 20, "e": "x"}), False)
        assert up.stats["bad_acks"] == 1 and log.depth("up") == 30
        ack("x", _ack(log, up=20), False)
        assert up.acked["up"] == 20 and log.depth("up") == 10
        task.cancel()
    asyncio.run(main())


def test_node_with_a_key_takes_only_signed_acks():
    # Anyone who can publish on the broker could otherwise make the node delete unsent readings.
    async def main():
        log = _store("h")
        _fill(log, 30)
        key = bytes(range(16))
        c = Recorder()
        up = Uplink(c, log, "s1", "n1", auth_key=key, min_pack=10, max_pack=10, window=3, linger_ms=0,
                    ack_timeout_ms=100000)
        task = asyncio.create_task(up.run())
        await until(lambda: _window_full(up), what="window of 3 packs in flight")  # acks clamp to what was sent
        ack = c.subs["fogline/s1/n1/ack"]
        plain = epoch.ack_map({"up": 20}, log.epoch)
        for forged in (plain, dict(plain, tag=bytes(16)), auth.seal_ack(bytes(16), "n1", plain),
                       auth.seal_ack(key, "n2", plain)):
            ack("x", cbor.dumps(forged), False)
        assert up.stats["unsigned_acks"] == 4 and log.depth("up") == 30 and up.acked["up"] == 0
        ack("x", cbor.dumps(auth.seal_ack(key, "n1", plain)), False)
        assert up.acked["up"] == 20 and log.depth("up") == 10
        task.cancel()
    asyncio.run(main())
