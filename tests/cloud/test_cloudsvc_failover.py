"""Failover of the cloud tier itself: a consumer killed mid-stream, PostgreSQL restarted mid-stream.

Each time every (site, node, lane, seq) the gateways sent must be in PostgreSQL exactly once, none missing.
"""

from __future__ import annotations

import threading
import time
from collections import Counter

from cloudsvc_helpers import (ServiceThread, kill9, reading_keys, service_config, spawn, term, wait_for,
                              write_config)

from harness.cloudfeed import Publisher, feed_plan


def _stream(port: int, plan: list, on_progress, pause: float = 0.004) -> threading.Thread:
    """Publish the plan from a thread; on_progress(i) runs after message i."""
    def run() -> None:
        pub = Publisher(port, client_id="feed-failover")
        try:
            for i, (topic, payload, _keys) in enumerate(plan):
                pub.publish(topic, payload)
                on_progress(i)
                time.sleep(pause)
            assert pub.drain()
        finally:
            pub.stop()
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def _exactly_once(dsn: str, want: set, timeout: float = 180) -> None:
    keys = wait_for(lambda: (lambda k: k if set(k) >= want else None)(reading_keys(dsn)), timeout=timeout)
    got = reading_keys(dsn)
    counts = Counter(got)
    missing = want - set(counts)
    assert not missing, f"{len(missing)} readings missing, e.g. {sorted(missing)[:5]}"
    assert set(counts) == want
    dups = {k: n for k, n in counts.items() if n > 1}
    assert not dups, f"duplicates: {list(dups.items())[:5]}"
    assert keys


def test_kill9_one_of_two_consumers_mid_stream(pg_dsn, cloud_broker, tmp_path):
    """Two consumers share the subscription; one is killed -9 mid-stream and restarted (as systemd would):
    its unacked batch and the share queued for its session come back to it, the rest went to the other."""
    cfgs = {cid: write_config(tmp_path / f"{cid}.toml", cloud_broker.port, pg_dsn, cid) for cid in ("c1", "c2")}
    procs = {cid: spawn(path, tmp_path / f"{cid}.log") for cid, path in cfgs.items()}
    plan = list(feed_plan(nodes=4, messages=400, per_msg=50))
    want = {k for _t, _p, ks in plan for k in ks}
    killed = threading.Event()
    try:
        # both sessions exist (their schema migration raced; the advisory lock serialises it)
        assert wait_for(lambda: all(b"cloud_consumer_subscribed" in (tmp_path / f"{c}.log").read_bytes()
                                    for c in cfgs), timeout=60)

        def progress(i: int) -> None:
            if i == 150:
                kill9(procs["c1"])
                killed.set()

        feeder = _stream(cloud_broker.port, plan, progress)
        assert killed.wait(120)
        before = len(reading_keys(pg_dsn))
        assert 0 < before < len(want), "the kill was not mid-stream"
        # the survivor goes on with its share while c1 is down
        assert wait_for(lambda: len(reading_keys(pg_dsn)) >= before + 1000, timeout=120)
        procs["c1"] = spawn(cfgs["c1"], tmp_path / "c1.log")
        feeder.join(240)
        assert not feeder.is_alive()
        _exactly_once(pg_dsn, want)
    finally:
        for p in procs.values():
            term(p)


def test_postgres_restart_mid_stream(pg_own, cloud_broker, tmp_path):
    """PostgreSQL goes down hard (immediate stop) and comes back while messages flow: the consumer holds
    the unacked batch, retries it, and the broker re-sends nothing it had acked before."""
    svc = ServiceThread(service_config(cloud_broker.port, dsn=pg_own.dsn, client_id="pgr",
                                       retry_max_s=1.0)).start()
    plan = list(feed_plan(nodes=3, messages=300, per_msg=40))
    want = {k for _t, _p, ks in plan for k in ks}
    bounced = threading.Event()

    def progress(i: int) -> None:
        if i == 100:
            pg_own.stop("immediate")
            time.sleep(2.0)
            pg_own.start()
            bounced.set()

    try:
        feeder = _stream(cloud_broker.port, plan, progress)
        feeder.join(300)
        assert bounced.is_set() and not feeder.is_alive()
        _exactly_once(pg_own.dsn, want)
        assert svc.metric("cloud_db_retries") >= 1  # it did see the database go away
    finally:
        svc.stop()
