"""The cloud service writes every relayed row exactly once, on PostgreSQL and on the embedded SQLite."""

from __future__ import annotations

from collections import Counter

import cbor2
import pytest
from cloudsvc_helpers import ServiceThread, reading_keys, scalar, service_config, wait_for

from fogline.gateway.relay.cloud import envelope
from harness.cloudfeed import Publisher, alert_message, raw_bundle, raw_message, summary_message


def _backend(request, tmp_path):
    if request.param == "pg":
        dsn = request.getfixturevalue("pg_dsn")
        return dsn, None
    return "", tmp_path / "cloud" / "cloud.sqlite"


@pytest.fixture(params=["pg", "sqlite"])
def backend(request, tmp_path):
    return _backend(request, tmp_path)


def test_duplicates_revisions_and_bad_input_land_exactly_once(backend, cloud_broker, tmp_path):
    dsn, sq = backend
    svc = ServiceThread(service_config(cloud_broker.port, dsn=dsn, data_dir=tmp_path / "cloud")).start()
    pub = Publisher(cloud_broker.port)
    try:
        want = set()
        for i in range(40):  # 40 messages x 25 readings, two nodes
            node = f"n{i % 2}"
            first = 1 + (i // 2) * 25
            pub.publish("fogline/s1/raw", raw_message("gw1", i + 1, node, first, 25))
            want |= {("s1", node, 0, s) for s in range(first, first + 25)}
        # the same readings again: re-sent rows (same key), and a second gateway's bundle (new keys)
        for i in range(0, 40, 3):
            pub.publish("fogline/s1/raw", raw_message("gw1", i + 1, f"n{i % 2}", 1 + (i // 2) * 25, 25))
        pub.publish("fogline/s1/raw", raw_bundle("gw2", 900, "n0", 1, 25, 4))
        for seq in (1, 2, 3, 2, 1):  # alerts, two of them twice
            pub.publish("fogline/s1/alert", alert_message("gw1", 1000 + seq, "n0", seq))
        want |= {("s1", "n0", 1, s) for s in (1, 2, 3)}
        for rev, mean in ((3, 10.0), (5, 12.0), (4, 11.0), (5, 99.0)):  # highest rev wins, equal rev keeps the first
            pub.publish("fogline/s1/summary", summary_message("gw1", 2000 + rev, "n0", 1_780_000_000.0, rev, mean))
        health = cbor2.dumps({"kind": "gateway_health", "gw": "gw1", "health": {"cpu": 0.5}, "nodes": ["n0"]})
        for _ in range(2):  # a re-sent health row (same outbox key) is stored once
            pub.publish("fogline/s1/summary", envelope("gw1", 4000, "summary", 1.0, health))
        w = {"count": 3, "min": 1.0, "max": 2.0, "mean": 1.5, "last": 2.0, "stddev": 0.5, "unit": "Cel"}
        anomaly = {"node": "n0", "start": 1_780_000_000.0, "end": 1_780_000_060.0, "score": 0.97, "label": "anomaly",
                   "confidence": 0.9, "action": "anomaly", "model": "m@v1", "windows": {"temperature": w}, "rev": 10}
        cleared = dict(anomaly, label="normal", score=0.1, rev=12, retract=1)  # a correction clears it
        pub.publish("fogline/s1/anomaly", envelope("gw1", 5000, "anomaly", 1.0, cbor2.dumps(anomaly)))
        pub.publish("fogline/s1/anomaly", envelope("gw1", 5001, "anomaly", 1.0, cbor2.dumps(cleared)))
        pub.publish("fogline/s1/raw", b"\xff not cbor")
        nul = cbor2.dumps({"node": "n0", "lane": "up", "first_seq": 9000, "records": [["te\x00mp", None, 1.0, 1.0]]})
        pub.publish("fogline/s1/raw", envelope("gw1", 3000, "raw", 0.0, nul))  # PostgreSQL text holds no NUL
        pub.publish("fogline/s2/raw", raw_message("gw9", 1, "n0", 1, 5))  # another site: its own keys
        want |= {("s2", "n0", 0, s) for s in range(1, 6)}
        assert pub.drain()

        got = wait_for(lambda: (lambda k: k if set(k) >= want else None)(reading_keys(dsn, sq)), timeout=120)
        assert got, "not every reading arrived"
        wait_for(lambda: svc.metric("cloud_dead_letters") >= 2, timeout=60)
        counts = Counter(got)
        assert set(counts) == want
        assert max(counts.values()) == 1
        assert scalar(dsn, "SELECT count(*) FROM alerts", sq)[0] == 3
        assert scalar(dsn, "SELECT rev, mean, corr FROM windows", sq) == (5, 12.0, 1)
        assert scalar(dsn, "SELECT count(*) FROM dead_letters", sq)[0] == 2
        assert wait_for(lambda: scalar(dsn, "SELECT count(*) FROM decisions", sq)[0] == 1
                        and scalar(dsn, "SELECT rev FROM decisions", sq)[0] == 12, timeout=60)
        assert scalar(dsn, "SELECT label, retract FROM decisions", sq) == ("normal", 1)
        assert scalar(dsn, "SELECT count(*) FROM anomalies", sq)[0] == 0  # retracted: not an anomaly any more
        assert scalar(dsn, "SELECT count(*), max(gw) FROM gateway_health", sq) == (1, "gw1")
        assert svc.metric("cloud_duplicates", kind="readings") >= 14 * 25 + 100
        assert svc.metric("cloud_duplicates", kind="alerts") == 2
    finally:
        pub.stop()
        svc.stop()


def test_schema_migrations_are_recorded_once(pg_dsn, cloud_broker, tmp_path):
    for _ in range(2):  # a second start finds the schema and applies nothing
        svc = ServiceThread(service_config(cloud_broker.port, dsn=pg_dsn)).start()
        svc.stop()
    assert scalar(pg_dsn, "SELECT count(*), max(version) FROM schema_migrations") == (1, 1)
    # readings are partitioned by time: today's and tomorrow's partitions exist after a start
    n = scalar(pg_dsn, "SELECT count(*) FROM pg_inherits i JOIN pg_class p ON p.oid = i.inhparent "
                       "WHERE p.relname = 'readings'")[0]
    assert n >= 3  # default + two days
