"""Cluster service on a real mosquitto: two in-process gateways, one primary per node, takeover, leases."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from fogline.gateway.cluster import service as cluster_service
from fogline.gateway.cluster.core import GatewayView, rank
from fogline.gateway.store.core import Store
from fogline.gateway.ingest.validate import Message, Reading

from tests.gateway.ingest_helpers import GatewayThread, SimNode, db_rows, gw_config, stored_seqs, wait_for


def _gateway(tmp: Path, port: int, gw: str) -> GatewayThread:
    cfg = gw_config(tmp / gw, port, site={"gateway_id": gw}, mqtt={"client_id": f"{gw}-{port}",
                                                                  "worker_process": False},
                    cluster={"enabled": True, "heartbeat_s": 0.3, "dead_after_s": 1.0, "lease_s": 0.9,
                             "handoff_s": 0.3, "settle_s": 0.3,
                             # the load class comes from this host's load average: a busy test machine
                             # must not move the node to the other gateway
                             "load_weight": 0.0})
    g = GatewayThread(cfg)
    assert cluster_service.attach(g.gw) is g.gw.cluster
    return g


def _node_of(gw: str) -> str:
    view = {"gwa": GatewayView({}), "gwb": GatewayView({})}
    return next(n for n in (f"node{i}" for i in range(100)) if rank(n, view)[0] == gw)


def test_primary_acks_standby_holds_then_takes_over_and_replays(tmp_path, mosquitto, capsys):
    a = _gateway(tmp_path, mosquitto.port, "gwa").start()
    b = _gateway(tmp_path, mosquitto.port, "gwb").start()
    node = _node_of("gwa")
    sim = SimNode(mosquitto.port, node)
    try:
        assert wait_for(lambda: a.gw.cluster.stats()["live"] == ["gwa", "gwb"] == b.gw.cluster.stats()["live"]
                        and a.gw.cluster.settled and b.gw.cluster.settled, 60)
        sim.up(1, [20.0, 20.5, 21.0, 21.5, 22.0])
        assert sim.wait_ack("up", 5), sim.acks
        a.flush()
        b.flush()
        assert stored_seqs(a.gw.data_dir, node) == [1, 2, 3, 4, 5]
        # gwb's copy of the message may still be on its way (the ack came from gwa): wait for it
        assert wait_for(lambda: b.gw.cluster.counters["not_primary"] >= 1, 60), b.gw.cluster.counters
        b.flush()
        assert not (b.gw.data_dir / "ingest.sqlite").exists() or stored_seqs(b.gw.data_dir, node) == []
        # the lease: only the primary relays this node's summaries (a window starting now), never both
        assert wait_for(lambda: a.gw.may_relay(node, time.time()), 60)
        for _ in range(20):
            now = time.time()
            assert not (a.gw.may_relay(node, now) and b.gw.may_relay(node, now))
            time.sleep(0.02)
        assert not b.gw.may_relay(node, time.time())
        assert not a.gw.may_relay(node, time.time() - 3600)  # a window that began before the lease: not here
        assert b.gw.may_relay(node)  # stored readings go from wherever they were acked (cloud de-duplicates)

        # gwa stops committing (hung): neither gateway acks 6..8; gwb holds them
        a.gw.set_ingest_gate(lambda m: False)
        sim.up(6, [22.5, 23.0, 23.5])
        assert wait_for(lambda: len(b.gw.cluster.held.q.get(node, ())) == 1, 60), b.gw.cluster.stats()
        assert not sim.wait_ack("up", 6, timeout=0.5)
        a.stop()  # goodbye (retained alive=false): gwb takes over at once and replays what it held
        assert sim.wait_ack("up", 8, timeout=60), (sim.acks, b.gw.cluster.stats())
        b.flush()
        assert stored_seqs(b.gw.data_dir, node) == [6, 7, 8]  # 1..5 stay at gwa: not stored twice
        gaps = db_rows(b.gw.data_dir, "SELECT g.lo, g.hi, g.why FROM gaps g JOIN nodes n ON n.nid=g.nid "
                                      "WHERE n.name=? AND g.lane=0", (node,))
        assert [(lo, hi) for lo, hi, _ in gaps] == [(1, 5)] and gaps[0][2].startswith("cluster:"), gaps
        st = b.gw.cluster.stats()
        assert st["replayed"] == 1 and st["takeovers"] >= 1 and node in st["serving"], st
        assert wait_for(lambda: b.gw.may_relay(node, time.time()), 60)  # gwa's lease went with it
        sim.up(9, [24.0])
        assert sim.wait_ack("up", 9)
        time.sleep(0.4)  # a heartbeat exports the cluster gauges
    finally:
        sim.close()
        b.stop()
    from fogline.gateway.commands import status
    status._print_cluster(status.collect(b.gw.data_dir / "ingest.sqlite", b.gw.data_dir / "metrics.json"))
    out = capsys.readouterr().out
    assert re.search(r"cluster: live gateways 1, serving [1-9]\d* nodes, leases \d+, takeovers [1-9]", out), out


def test_disabled_cluster_keeps_single_gateway_behaviour(tmp_path, mosquitto):
    g = GatewayThread(gw_config(tmp_path, mosquitto.port, mqtt={"worker_process": False}))
    assert cluster_service.attach(g.gw) is None and g.gw.cluster is None
    g.start()
    sim = SimNode(mosquitto.port, "solo")
    try:
        sim.up(1, [1.0, 2.0])
        assert sim.wait_ack("up", 2)
        assert g.gw.may_relay("solo") and g.gw.may_relay("solo", since=0.0)
    finally:
        sim.close()
        g.stop()


def _msg(node: str, first: int, n: int) -> Message:
    t = time.time() - 100
    rs = [Reading(node, "up", first + i, "temp", "Cel", 20.0 + i, t + i) for i in range(n)]
    return Message(node, "up", first, rs, rx=time.time())


@pytest.mark.parametrize("seen_before", [True, False])
def test_adopt_cursors_skips_only_what_another_gateway_acked(tmp_path, seen_before):
    st = Store(tmp_path / "db.sqlite")
    try:
        if seen_before:
            st.commit_batch([_msg("x", 1, 3)])
        why = "cluster: test; acked by another gateway up to %d"
        got = cluster_service.adopt_cursors(st, [("x", "up", 10, 0), ("x", "alert", 0, 0)], why)
        assert got == [("x", "up", 4 if seen_before else 1, 10)]
        assert st.ack_state("x") == {"up": 10}
        assert cluster_service.adopt_cursors(st, [("x", "up", 7, 0)], why) == []  # never backwards
        res = st.commit_batch([_msg("x", 11, 2)])  # the node continues where the other gateway left it
        assert res.acks["x"] == {"up": 12}
        gaps = st.con.execute("SELECT lo, hi, why FROM gaps").fetchall()
        assert gaps == [(4 if seen_before else 1, 10, why % 10)]
    finally:
        st.close()
