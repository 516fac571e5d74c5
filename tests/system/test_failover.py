"""Cluster failover: two gateways, ten real-firmware nodes, kill -9 the primary under load, nothing lost.

Real site mosquitto (provisioned: passwords, ACL, signed packs) and a TLS cloud mosquitto; both gateways
run `[cluster] enabled` with the relay (store-fed, `forward_readings` when available). Under load the
gateway serving the most nodes is killed with SIGKILL; its standby must take its nodes over (the
node's own flash is the buffer: unacked readings are re-sent), later the killed gateway restarts
(its outbox drains); then the gateway serving the most nodes is frozen (SIGSTOP: no last will, the
peers notice by heartbeat expiry) and resumed (SIGCONT). At the end every node drains; every reading a
node kept is stored at one of the gateways (or both: a resend, absorbed), and at the cloud every stored
reading and alert arrives, duplicates only as the same (node, seq); no summary comes from two gateways.
Timing is reported (tools/bench/failover.py), not asserted.
"""

from __future__ import annotations

import pytest

from harness import clusterkit

pytestmark = pytest.mark.skipif(not clusterkit.available(), reason="micropython or the node runner not available")


def test_failover_kill9_primary(tmp_path):
    rep = clusterkit.run_failover(tmp_path, seed=11, n_nodes=10, warmup_s=4.0, down_s=4.0, after_s=3.0,
                                  faults=["kill", "freeze"])
    clusterkit.print_report(rep)
    kill, freeze = rep["kills"]
    for k in (kill, freeze):
        assert k["nodes"] > 0, f"the victim served no node: {k}"
        assert not k["no_first_ack"], f"the standby never acked these nodes of the faulted gateway: {k}"
    assert kill["will_ms"] is not None, f"no last will for the killed gateway: {kill}"
    for r in rep["rows"]:
        assert r["unexplained"] == 0, f"reading kept by the node is stored at no gateway: {r}"
        assert r["backlog"] == 0, f"node did not drain: {r}"
        assert r["acked"] == r["kept"], f"node's durable readings not all acknowledged: {r}"
        assert r["beyond_kept"] == 0, r
    assert all(r["kept"] > 0 for r in rep["rows"] if r["lane"] == "up")
    c = rep["cloud"]
    assert c["alerts_stored"] > 0, "no alert raised (n0 runs the 'hot' scenario)"
    assert c["alerts_missing"] == 0 and c["alerts_not_stored"] == 0, c
    if c["forwarding"]:
        assert c["readings_missing"] == 0 and c["readings_not_stored"] == 0, c
    assert c["undecodable"] == 0, c
    # the cloud database (fogline cloud on PostgreSQL) holds each reading and alert once
    assert c["db_duplicates"] == 0 and c["duplicate_readings"] == 0 and c["duplicate_alerts"] == 0, c
    # the relay lease: a node's summary of a window is sent by one gateway only (a window that began under
    # another gateway's lease is dropped by both, counted as windows_not_leased)
    assert c["summaries"] > 0 and c["doubled_summaries"] == 0, c
    m = rep["gateway_metrics"]
    assert sum(g.get("cluster_takeovers", 0) for g in m.values()) > 0, m
