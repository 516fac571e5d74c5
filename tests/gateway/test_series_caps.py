"""A node cannot exhaust the gateway: series are capped per node and in total, metric labels from `state`
come from a fixed set, and the registry keeps only small state maps."""

from __future__ import annotations

import time

import cbor2

from fogline.shared import cbor, senml
from tests.gateway.ingest_helpers import GatewayThread, SimNode, db_rows, gw_config, wait_for


def _wide_pack(node: str, first: int, metrics: range) -> bytes:
    t0 = time.time() - 100
    return cbor.dumps([first, senml.build_pack(node + "/", t0, [(f"m{i}", "Cel", float(i), t0 + k)
                                                                 for k, i in enumerate(metrics)])])


def _series(data, node):
    return db_rows(data, "SELECT COUNT(*) FROM series s JOIN nodes n ON n.nid=s.nid WHERE n.name=?", (node,))[0][0]


def test_series_are_capped_per_node_and_in_total_and_the_rest_dead_lettered(mosquitto, tmp_path):
    cfg = gw_config(tmp_path, mosquitto.port, ingest={"max_series_per_node": 16, "max_series": 40})
    data = tmp_path / "data"
    with GatewayThread(cfg) as g:
        a, b, c = SimNode(mosquitto.port, "a"), SimNode(mosquitto.port, "b"), SimNode(mosquitto.port, "c")
        for i in range(20):                       # 20 packs of 100 new metrics each: 2000 series asked for
            a.send("up", _wide_pack("a", 1 + 100 * i, range(100 * i, 100 * i + 100)))
        assert a.wait_ack("up", 2000)             # refused records are acked: the node may delete them
        b.send("up", _wide_pack("b", 1, range(30)))
        assert b.wait_ack("up", 30)
        c.send("up", _wide_pack("c", 1, range(30)))
        assert c.wait_ack("up", 30)
        a.send("up", _wide_pack("a", 2001, range(5)))  # a's existing series still take readings
        assert a.wait_ack("up", 2005)
        g.flush()
        for n in (a, b, c):
            n.close()
    assert (_series(data, "a"), _series(data, "b"), _series(data, "c")) == (16, 16, 8)
    assert db_rows(data, "SELECT COUNT(*) FROM readings") == [(16 + 5 + 16 + 8,)]
    m = g.gw.metrics
    refused = 2000 - 16 + 30 - 16 + 30 - 8
    assert m.get("dead_letters", reason="series_cap") == refused
    assert db_rows(data, "SELECT n FROM dead_letter_totals WHERE reason='series_cap'") == [(refused,)]
    assert m.get("series") == 40
    assert sum(len(k) for k in g.gw.aggregator.nodes["a"].open) <= 16 * 2 * len(g.gw.aggregator.lengths)


def test_state_maps_cannot_invent_metric_labels_or_grow_the_registry(mosquitto, tmp_path):
    cfg = gw_config(tmp_path, mosquitto.port)
    with GatewayThread(cfg) as g:
        node = SimNode(mosquitto.port, "n1")
        node.send("state", cbor2.dumps({"backlog": {"up": 3, "alert": 1}}))
        huge = {f"lane{i}": i for i in range(300)}
        node.send("state", cbor2.dumps({"backlog": {"up": 7, **huge}, "dropped": huge, "link": huge}))
        node.up(1, [1.0])
        assert node.wait_ack("up", 1)
        assert wait_for(lambda: g.gw.metrics.total("state_messages") == 2)
        node.close()
        labels = g.gw.metrics.gauges.get("node_backlog", {})
        assert sorted(dict(k)["lane"] for k in labels) == ["alert", "up"]
        dev = g.gw.registry.devices["n1"]
        assert dev.backlog == {"up": 3, "alert": 1} and dev.dropped == {} and dev.link_quality == {}
        assert len(g.gw.metrics.render_prometheus()) < 20_000
