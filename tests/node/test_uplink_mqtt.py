"""Store-and-forward over real mosquitto: firmware (FlashLog + Uplink + MQTT client) on MicroPython.

A test-side gateway acks the contiguous prefix. Faults: broker restart mid-stream, simulated Wi-Fi
off for a while, and a broker that silently drops (tiny max_queued_messages + a slow gateway).
Every reading arrives at least once, each pack is in seq order, and flash shrinks after acks.
"""

from __future__ import annotations

import pytest

from tests.node.gateway_stub import AckingGateway
from harness.broker import Mosquitto
from harness.counternode import T0, CounterNode
from fogline.shared.frame import HEADER

SENSED_OFFLINE = 50  # readings the node must take while its link is down, in each outage


def _check_delivery(gw: AckingGateway, n: int, alerts: int, done=None) -> None:
    ups = gw.got[("node1", "up")]
    assert sorted(ups) == list(range(1, n + 1)), f"missing up seqs: {set(range(1, n + 1)) - set(ups)}"
    for seq, (name, unit, value, t) in ups.items():
        assert (name, unit, value, t) == ("node1/temp", "Cel", seq * 0.25, T0 + seq)
    al = gw.got[("node1", "alert")]
    assert sorted(al) == list(range(1, alerts + 1))
    for seq, rec in al.items():
        assert rec[0] == "node1/temp_high" and rec[2] == seq * 40
    # per lane packs go out in seq order; only two events send a lower seq after a higher one, and the
    # node counts both: a lane restart (ack timeout or reconnect: the uplink goes back to its acked cursor
    # and resends, counted by the uplink) and an MQTT DUP retransmission of one older pack (counted by the
    # client). Each shows at the gateway as at most one step back, but not always at or below the
    # gateway's contiguous cursor + 1: the broker may drop the restart's first packs as well, so the
    # first copy to arrive starts further on. Every step back must use up one counted event.
    steps = []
    for lane in ("up", "alert"):
        prev = 0
        for node, ln, first, cnt, contig in gw.arrivals:
            if ln != lane:
                continue
            if first < prev:
                steps.append((lane, first, prev, contig))
            prev = first
    explained = done["uplink"]["restarts"] + done["mqtt"]["resends"] if done else 0
    assert len(steps) <= explained, (steps, done and (done["uplink"], done["mqtt"]))


@pytest.fixture
def node_factory(tmp_path):
    made: list[CounterNode] = []

    def make(port, n, period_ms, *opts):
        p = CounterNode(port, n, period_ms, tmp_path / f"ctl{len(made)}", *opts)
        made.append(p)
        return p

    yield make
    for p in made:
        p.kill()


def test_broker_restart_and_wifi_outage_lose_nothing(tmp_path, node_factory):
    broker = Mosquitto(tmp_path / "mq").start()
    gw = AckingGateway(broker.port)
    try:
        n = 1000
        node = node_factory(broker.port, n, 8)
        node.wait_produced(150)
        broker.stop()  # mid-stream; the node keeps sensing into flash
        offline = [node.sensed_while_offline(SENSED_OFFLINE, "broker stopped")]
        broker.start()
        node.wait_stat(lambda s: s["mqtt"]["connects"] >= 2, "reconnected after the broker restart")
        node.wifi(False)
        offline.append(node.sensed_while_offline(SENSED_OFFLINE, "Wi-Fi off"))
        node.wifi(True)
        done = node.finish(timeout=300)
    finally:
        gw.stop()
        broker.stop()
    _check_delivery(gw, n, n // 40, done)
    mq = done["mqtt"]
    timeline = [(x["produced"], x["mqtt"]["connects"], x["last_error"]) for x in node.stats]
    assert mq["connects"] >= 3, timeline  # initial + after broker restart + after Wi-Fi outage
    assert any(t[2] == "mqtt: link down" for t in timeline)
    # flash shrank back once the gateway acked
    assert done["depth_up"] == 0 and done["depth_alert"] == 0
    # the backlog of an outage held at least the readings sensed offline (each a frame header plus a body of
    # time, name, unit and value: > 8 B), however many a loaded host managed to take
    assert done["peak_bytes"] >= SENSED_OFFLINE * (HEADER + 8), done
    assert done["bytes_used"] < done["peak_bytes"] // 2, done
    # sensing never waited on the link: during each outage the node kept taking readings while it reported
    # the link down (the sensing-loop gap in ms is a figure of tools/bench/uplink.py, not a pass/fail here)
    for what, seen in zip(("broker stopped", "Wi-Fi off"), offline):
        gained = seen[-1]["produced"] - seen[0]["produced"] if seen else 0
        assert gained >= SENSED_OFFLINE, (what, gained, [(s["produced"], s["last_error"]) for s in seen])


def test_broker_that_drops_messages_is_caught_by_gateway_acks(tmp_path, node_factory):
    # mosquitto drops QoS 1 messages for a lagging subscriber while still PUBACKing the publisher
    broker = Mosquitto(tmp_path / "mq", max_queued_messages=1,
                       extra_conf="max_inflight_messages 1").start()
    # a gateway slower (50 ms per message) than the node's bursts of up to 6 messages: the broker
    # queue (1 in flight + 1 queued) overflows
    gw = AckingGateway(broker.port, delay_s=0.05)
    try:
        n = 500
        node = node_factory(broker.port, n, 1, "window=6", "max_pack=20", "ack_timeout=400")
        done = node.finish(timeout=300)
    finally:
        gw.stop()
        broker.stop()
    _check_delivery(gw, n, n // 40, done)
    # the drops really happened and were repaired by resending the same seqs
    assert gw.gaps > 0 and done["uplink"]["timeouts"] > 0, (gw.gaps, done["uplink"])
    assert done["depth_up"] == 0 and done["bytes_used"] < done["peak_bytes"]
