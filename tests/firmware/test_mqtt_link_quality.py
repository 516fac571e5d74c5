# Link quality reported in `state` (PLACEMENT): PUBACK round trip and the loss EWMA, against a scripted
# broker on a real 127.0.0.1 socket that loses the first send of every other publish, then none.
import asyncio
from time import ticks_diff, ticks_ms

from firmware.mqtt import MQTTClient
from tests.firmware.test_mqtt_client import Peer, _standard

MP_TIMEOUT = 300
WAIT_MS = 30000  # deadline of a wait for a condition: generous, a loaded host is slow, not wrong


def test_loss_and_rtt_follow_pubacks():
    def drop_odd_pubacks(peer, no, hdr, body):
        if hdr & 0xF0 == 0x30 and not hdr & 0x08:
            n = len([1 for e in peer.log if e[1] & 0xF0 == 0x30 and not e[1] & 0x08])
            if n <= 6 and n % 2:
                return None  # first send of every odd publish is lost; its DUP resend is acked
        return _standard(peer, no, hdr, body)

    async def main():
        peer = await Peer(drop_odd_pubacks).start()
        c = MQTTClient("lq", "127.0.0.1", peer.port, keepalive_s=30, retry_ms=200)
        task = asyncio.create_task(c.run())
        assert await c.wait_connected(WAIT_MS)
        q = c.link_quality()
        assert q["loss"] == 0.0 and q["rtt_ms"] is None and q["reconnects"] == 0, q
        for i in range(6):
            t0 = ticks_ms()
            pid = await c.publish("a/b", b"x%d" % i, qos=1)
            assert await c.wait_puback(pid, WAIT_MS)
            span = ticks_diff(ticks_ms(), t0)
        q = c.link_quality()
        assert c.stats["resends"] == 3, c.stats
        assert 0.2 < q["loss"] < 0.5, q  # 3 of 6 first sends unacked, EWMA 1/8
        # the last round trip, bounded by the publish-to-ack span this side measured around it
        assert q["rtt_ms"] is not None and 0 <= q["rtt_ms"] <= span, (q, span)
        for i in range(20):  # a clean link decays the loss estimate
            pid = await c.publish("a/b", b"ok", qos=1)
            assert await c.wait_puback(pid, WAIT_MS)
        assert c.link_quality()["loss"] < q["loss"], c.link_quality()
        await c.disconnect()
        task.cancel()
        peer.close()
    asyncio.run(main())
