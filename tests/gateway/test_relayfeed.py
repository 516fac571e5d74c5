"""Store-fed relay: durable cursor, kill -9 between ingest commit and outbox write, forward_readings
exactly once after de-dup at a real TLS cloud mosquitto, outbox refusal, retention of relayed data."""

from __future__ import annotations

import collections
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import cbor2
import pytest

from tests.gateway.ingest_helpers import GatewayThread, SimNode, db_rows, gw_config, payload, stored_seqs, wait_for
from tests.gateway.conftest import CLOUD_USERS
from harness.cloudkit import CloudSubscriber, tls_cloud_broker

REPO = Path(__file__).resolve().parents[2]
CHILD = Path(__file__).with_name("relayfeed_child.py")
USERS = CLOUD_USERS


def cloud_section(port: int, pki, **kw) -> dict:
    d = {"enabled": True, "host": "127.0.0.1", "port": port, "ca_file": str(pki.ca), "username": "gw1",
         "password": USERS["gw1"], "summary_windows_s": [], "reconnect_min_s": 0.1, "reconnect_max_s": 0.5,
         "bandwidth": {"initial_mode": "high", "linger_s": 0.02, "low_kbps": 0.001, "high_kbps": 0.002}}
    d.update(kw)
    return d


def _toml(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return '"' + v + '"'
    if isinstance(v, list):
        return "[" + ", ".join(_toml(x) for x in v) + "]"
    return repr(v)


def write_conf(tmp_path: Path, site_port: int, cloud: dict, outbox: dict | None = None) -> Path:
    lines = ["[site]", 'id = "site1"', 'gateway_id = "gw1"', f'data_dir = "{tmp_path / "data"}"',
             "[mqtt]", f"port = {site_port}", 'client_id = "gw-relayfeed"', "reconnect_min_s = 0.2",
             "reconnect_max_s = 1.0", "[store]", "batch_ms = 2.0", "[tiers]", "compress_after_s = 86400.0",
             "[cloud]"]
    sub = {k: v for k, v in cloud.items() if isinstance(v, dict)}
    lines += [f"{k} = {_toml(v)}" for k, v in cloud.items() if not isinstance(v, dict)]
    for name, d in sub.items():
        lines += [f"[cloud.{name}]"] + [f"{k} = {_toml(v)}" for k, v in d.items()]
    if outbox:
        lines += ["[outbox]", 'synchronous = "NORMAL"']
    p = tmp_path / "gateway.toml"
    p.write_text("\n".join(lines) + "\n")
    return p


def start_child(tmp_path: Path, conf: Path, crash: bool = False) -> subprocess.Popen:
    args = [sys.executable, str(CHILD), str(conf)] + (["crash-before-outbox"] if crash else [])
    p = subprocess.Popen(args, cwd=REPO, stdout=subprocess.PIPE, stderr=open(tmp_path / "gw.log", "ab"), text=True)
    assert p.stdout is not None
    line = p.stdout.readline().strip()
    assert line == "started", (line, (tmp_path / "gw.log").read_text()[-3000:])
    return p


def stop_child(p: subprocess.Popen, tmp_path: Path) -> None:
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            assert p.wait(30) == 0, (tmp_path / "gw.log").read_text()[-3000:]
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(10)
            raise


def cursors(data: Path) -> dict[tuple[str, int], int]:
    rows = db_rows(data, "SELECT n.name, c.lane, c.seq FROM relay_cursor c JOIN nodes n ON n.nid=c.nid")
    return {(n, li): s for n, li, s in rows}


def outbox_rows(data: Path) -> int:
    con = sqlite3.connect(f"file:{data / 'outbox.sqlite'}?mode=ro", uri=True)
    try:
        return con.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]
    finally:
        con.close()


def alert_pack(node: str, seq: int, value: float) -> bytes:
    return payload(node, seq, [value], t0=time.time() - 1)


def test_alert_committed_then_killed_before_outbox_write_is_relayed_after_restart(tmp_path, mosquitto, pki, cloud):
    sub = CloudSubscriber(cloud.port, pki, "cloud", USERS["cloud"]).start()
    conf = write_conf(tmp_path, mosquitto.port, cloud_section(cloud.port, pki))
    data = tmp_path / "data"
    node = SimNode(mosquitto.port, "a1")
    proc = start_child(tmp_path, conf, crash=True)
    try:
        pack = alert_pack("a1", 1, 91.5)
        node.send("alert", pack)
        deadline = time.monotonic() + 180  # the child may not be subscribed yet: the same bytes again are a duplicate
        while proc.poll() is None and not node.wait_ack("alert", 1, 5) and time.monotonic() < deadline:
            node.send("alert", pack)
        # it dies on the hand-over, after the commit; the ack it published may not have left paho's thread yet
        assert proc.wait(60) == -signal.SIGKILL, "the child never reached the hand-over"
        acked_before_crash = node.wait_ack("alert", 1, 1)
        assert stored_seqs(data, "a1", lane=1) == [1]
        assert outbox_rows(data) == 0 and not sub.snapshot()  # the outbox never got it
        proc = start_child(tmp_path, conf)  # catch-up from the cursor at start
        if not acked_before_crash:  # the node still holds it and re-sends: a duplicate, acked from the store
            deadline = time.monotonic() + 180
            while not node.wait_ack("alert", 1, 5) and time.monotonic() < deadline:
                node.send("alert", pack)
            assert node.wait_ack("alert", 1, 1), "the re-sent alert was not acked after the restart"
        assert wait_for(lambda: any(i["lane"] == "alert" for i in sub.snapshot()), 60), sub.snapshot()
        node.send("alert", alert_pack("a1", 2, 92.5))  # and the live path still works after the restart
        assert wait_for(lambda: len([i for i in sub.snapshot() if i["lane"] == "alert"]) >= 2, 60)
        stop_child(proc, tmp_path)
    finally:
        node.close()
        if proc.poll() is None:
            proc.kill()
        sub.stop()
    alerts = [i["body"] for i in sub.snapshot() if i["lane"] == "alert"]
    assert sorted((b["node"], b["seq"]) for b in alerts) == [("a1", 1), ("a1", 2)]
    first = next(b for b in alerts if b["seq"] == 1)
    assert first["records"][0][:3] == ["temp", "Cel", 91.5]
    assert cursors(data) == {("a1", 1): 2}
    assert outbox_rows(data) == 0


def test_forward_readings_exactly_once_across_kill_9_and_cursor_never_goes_back(tmp_path, mosquitto, pki, cloud):
    sub = CloudSubscriber(cloud.port, pki, "cloud", USERS["cloud"]).start()
    conf = write_conf(tmp_path, mosquitto.port, cloud_section(cloud.port, pki, forward_readings=True,
                                                              forward_batch=25))
    data = tmp_path / "data"
    seen: dict[tuple[str, int], list[int]] = collections.defaultdict(list)
    stop_poll = threading.Event()

    def poll() -> None:  # the persisted cursor, sampled while the gateway runs, crashes and restarts
        while not stop_poll.is_set():
            try:
                for k, v in cursors(data).items():
                    seen[k].append(v)
            except sqlite3.Error:
                pass
            stop_poll.wait(0.02)

    node = SimNode(mosquitto.port, "f1")
    t0 = time.time() - 4000
    n_msgs = 150  # packs of 10 readings: seq s has value s - 1
    packs = {1 + 10 * i: payload("f1", 1 + 10 * i, [float(10 * i + j) for j in range(10)], t0=t0 + 10 * i)
             for i in range(n_msgs)}
    poller = threading.Thread(target=poll, daemon=True)
    proc = start_child(tmp_path, conf)
    poller.start()
    try:
        for k, (first, data_) in enumerate(packs.items()):
            node.c.publish("fogline/site1/f1/up", data_, qos=1)
            if k == 70:
                assert node.wait_ack("up", 500, 60)
                os.kill(proc.pid, signal.SIGKILL)  # mid-stream crash: commits, hand-overs and cursor in flight
                proc.wait(10)
                time.sleep(0.2)
                told = node.high["up"]
                proc = start_child(tmp_path, conf)
                for f, d in packs.items():  # the node re-sends everything after its last ack
                    if told < f + 9 and f <= first:
                        node.c.publish("fogline/site1/f1/up", d, qos=1)
            if k % 10 == 9:
                time.sleep(0.01)
        assert node.wait_ack("up", 10 * n_msgs, 30), (node.high, told)
        # a duplicate re-send after the fact changes nothing
        node.c.publish("fogline/site1/f1/up", packs[1], qos=1)

        def cloud_seqs() -> set[int]:
            return {b["first_seq"] + i for it in sub.snapshot() if it["lane"] == "raw"
                    for b in [it["body"]] for i in range(len(b["records"]))}
        assert wait_for(lambda: len(cloud_seqs()) >= 10 * n_msgs, 180), len(cloud_seqs())
        stop_child(proc, tmp_path)
    finally:
        stop_poll.set()
        node.close()
        if proc.poll() is None:
            proc.kill()
        sub.stop()
    poller.join(2)
    stored = stored_seqs(data, "f1")
    assert stored == list(range(1, 10 * n_msgs + 1))
    got: dict[int, list] = collections.defaultdict(list)
    raw = [it for it in sub.snapshot() if it["lane"] == "raw"]
    for it in raw:
        b = it["body"]
        assert b["node"] == "f1" and b["lane"] == "up" and 1 <= len(b["records"]) <= 25
        for i, rec in enumerate(b["records"]):
            got[b["first_seq"] + i].append(rec)
    # after de-dup by (node, seq): every stored up reading exactly once, with its stored value
    assert sorted(got) == stored
    assert all(recs[0][0] == "temp" and recs[0][2] == float(s - 1) for s, recs in got.items())
    assert all(len({repr(r) for r in recs}) == 1 for recs in got.values()), "same seq, different content"
    resent = sum(len(v) - 1 for v in got.values())
    assert resent <= 10 * n_msgs // 2  # re-sends only around the crash, not a replay of everything
    # the persisted cursor never went backwards and ends at the last stored seq
    series = seen[("f1", 0)]
    assert series and all(a <= b for a, b in zip(series, series[1:])), series
    assert cursors(data)[("f1", 0)] == 10 * n_msgs
    assert not [it for it in sub.snapshot() if it["lane"] == "alert"]


def test_outbox_refusal_holds_the_cursor_and_resumes_when_room_frees(tmp_path, mosquitto, pki):
    cloud = tls_cloud_broker(tmp_path / "cloud", pki, USERS)
    # The consumer's persistent session exists before the relay can connect, so the broker queues
    # every row for it (a subscriber started after the cloud comes back could miss the first rows).
    cloud.start()
    CloudSubscriber(cloud.port, pki, "cloud", USERS["cloud"]).start().stop()
    cloud.stop()  # down: the outbox fills up
    cfg = gw_config(tmp_path, mosquitto.port, site={"gateway_id": "gw1"},
                    cloud=cloud_section(cloud.port, pki),
                    outbox={"synchronous": "NORMAL", "lanes": {"alert": {"max_rows": 3, "when_full": "reject"}}})
    from fogline.gateway.relay.component import attach
    g = GatewayThread(cfg)
    (comp,) = attach(g.gw)
    g.start()
    node = SimNode(mosquitto.port, "r1")
    sub = None
    try:
        for s in range(1, 6):
            node.send("alert", alert_pack("r1", s, 80.0 + s))
        assert node.wait_ack("alert", 5, 60)
        assert wait_for(lambda: comp.feeder.counters["refused"] >= 2, 60), comp.feeder.counters
        assert wait_for(lambda: cursors(tmp_path / "data").get(("r1", 1)) == 3, 60)
        time.sleep(1.5)  # retries while full: still not past the refused rows
        assert cursors(tmp_path / "data")[("r1", 1)] == 3
        assert comp.relay.outbox.depth()["alert"]["rows"] == 3
        from fogline.gateway.commands import status
        data = tmp_path / "data"
        assert status.collect(data / "ingest.sqlite", data / "metrics.json")["relay_feed_behind"] == 2
        cloud.start()
        sub = CloudSubscriber(cloud.port, pki, "cloud", USERS["cloud"]).start()
        assert wait_for(lambda: {i["body"]["seq"] for i in sub.snapshot()} >= {1, 2, 3, 4, 5}, 60), sub.snapshot()
        assert wait_for(lambda: cursors(tmp_path / "data").get(("r1", 1)) == 5, 60)
    finally:
        node.close()
        g.stop()
        if sub:
            sub.stop()
        cloud.stop()
    st = comp.relay.outbox.stats()
    assert st["counters"]["rejected_full"]["alert"] >= 2
    assert sorted({i["body"]["seq"] for i in sub.snapshot()}) == [1, 2, 3, 4, 5]


def test_retention_prunes_only_what_the_cloud_acknowledged(tmp_path, mosquitto, pki):
    """Forwarded readings in the outbox are not enough: retention prunes them once the cloud acked them."""
    from fogline.gateway.relay.component import attach
    from fogline.gateway.store.tiers import maintain, query

    cloud = tls_cloud_broker(tmp_path / "cloud", pki, USERS)  # down at first: everything waits in the outbox
    cfg = gw_config(tmp_path, mosquitto.port, site={"gateway_id": "gw1"},
                    cloud=cloud_section(cloud.port, pki, forward_readings=True, forward_batch=10),
                    outbox={"synchronous": "NORMAL", "lanes": {"raw": {"max_rows": 5, "when_full": "reject"}}},
                    tiers={"maintenance_s": 3600.0})
    g = GatewayThread(cfg)
    (comp,) = attach(g.gw)
    g.start()
    now = time.time()
    old = now - 10 * 86400  # past retention (1 day below)
    a, b = SimNode(mosquitto.port, "ra"), SimNode(mosquitto.port, "rb")
    data = tmp_path / "data"
    tiers = cfg.tiers
    tiers.compress_after_s, tiers.retention_s = 60.0, 86400.0
    try:
        for i in range(4):  # 40 old readings = 4 raw messages ...
            a.up(1 + 10 * i, [float(10 * i + j) for j in range(10)], t0=old + 10 * i)
        a.up(41, [float(40 + j) for j in range(10)], t0=now - 20)  # ... + 10 recent: the raw lane is full
        assert a.wait_ack("up", 50, 60)
        assert wait_for(lambda: comp.feeder.counters["readings"] == 50, 60), comp.feeder.counters
        for i in range(3):  # refused by the full lane for now
            b.up(1 + 10 * i, [float(j) for j in range(10)], t0=old + 10 * i)
        assert b.wait_ack("up", 30, 60)
        assert wait_for(lambda: comp.feeder.counters["refused"] >= 3, 60), comp.feeder.counters
        assert wait_for(lambda: cursors(data).get(("ra", 0)) == 50, 60)
        assert wait_for(lambda: len(db_rows(data, "SELECT * FROM relay_pending")) == 5, 60)
        stats = g.call(g.gw.run_store(lambda st: maintain(st, tiers, cfg.ingest, time.time())))
        assert stats["compressed_rows"] == 40 and stats["pruned_blocks"] == 0  # in the outbox only: kept
        assert db_rows(data, "SELECT COUNT(*) FROM relayed") == [(0,)]
        cloud.start()  # the cloud comes back: ra's rows are acked, then rb's refused ones go and are acked
        assert wait_for(lambda: outbox_rows(data) == 0 and cursors(data).get(("rb", 0)) == 30
                        and not db_rows(data, "SELECT * FROM relay_pending"), 30), comp.feeder.counters
        stats = g.call(g.gw.run_store(lambda st: maintain(st, tiers, cfg.ingest, time.time())))
    finally:
        a.close()
        b.close()
        g.stop()
        cloud.stop()
    relayed = dict(db_rows(data, "SELECT n.name, r.upto FROM relayed r JOIN series s ON s.sid=r.sid "
                                 "JOIN nodes n ON n.nid=s.nid"))
    assert relayed == {"ra": pytest.approx(now - 20 + 9), "rb": pytest.approx(old + 29)}
    assert stats["compressed_rows"] == 30 and stats["pruned_blocks"] == 1
    # ra: old readings pruned (cloud only), recent ones raw; rb: compressed, its one block ends at the
    # acked mark (a block goes only once wholly below it)
    assert stored_seqs(data, "ra") == list(range(41, 51))
    con = sqlite3.connect(data / "ingest.sqlite")
    try:
        qa = query(con, "ra", "temp", old - 1, now + 1)
        qb = query(con, "rb", "temp", old - 1, now + 1)
    finally:
        con.close()
    assert qa is not None and len(qa.points) == 10 and qa.cloud_only
    assert qb is not None and qb.sources == {"compressed": 30, "raw": 0} and len(qb.points) == 30


def test_readings_whose_outbox_rows_expired_unsent_are_never_pruned(tmp_path, mosquitto, pki):
    """A long cloud outage: the raw lane's TTL drops rows unsent; once the cloud acks newer rows,
    retention still keeps the dropped ones' readings (the cloud never got them)."""
    from fogline.gateway.relay.component import attach
    from fogline.gateway.store.tiers import maintain, query

    cloud = tls_cloud_broker(tmp_path / "cloud", pki, USERS)  # down for "days"
    cfg = gw_config(tmp_path, mosquitto.port, site={"gateway_id": "gw1"},
                    cloud=cloud_section(cloud.port, pki, forward_readings=True, forward_batch=10),
                    outbox={"synchronous": "NORMAL"}, tiers={"maintenance_s": 3600.0})
    g = GatewayThread(cfg)
    (comp,) = attach(g.gw)
    g.start()
    now = time.time()
    old = now - 10 * 86400
    node = SimNode(mosquitto.port, "lo")
    data = tmp_path / "data"
    tiers = cfg.tiers
    tiers.compress_after_s, tiers.retention_s = 60.0, 86400.0

    async def expire_after_two_days() -> int:
        return comp.relay.outbox.expire(time.time() + 2 * 86400)

    try:
        node.up(1, [float(j) for j in range(10)], t0=old)
        node.up(11, [float(10 + j) for j in range(10)], t0=old + 10)
        assert node.wait_ack("up", 20, 60)
        assert wait_for(lambda: comp.feeder.counters["readings"] == 20, 60), comp.feeder.counters
        assert g.call(expire_after_two_days()) == 2  # TTL: both rows leave the outbox unsent
        cloud.start()
        node.up(21, [float(20 + j) for j in range(10)], t0=now - 20)
        assert node.wait_ack("up", 30, 60)
        sql = "SELECT r.upto FROM relayed r JOIN series s ON s.sid=r.sid"
        assert wait_for(lambda: db_rows(data, sql) == [(pytest.approx(now - 20 + 9),)], 180), db_rows(data, sql)
        stats = g.call(g.gw.run_store(lambda st: maintain(st, tiers, cfg.ingest, time.time())))
    finally:
        node.close()
        g.stop()
        cloud.stop()
    assert stats["compressed_rows"] == 20 and stats["pruned_blocks"] == 0 and stats["held_series"] == 1, stats
    con = sqlite3.connect(data / "ingest.sqlite")
    try:
        q = query(con, "lo", "temp", old - 1, now + 1)
    finally:
        con.close()
    assert q is not None and [v for _t, v in q.points] == [float(i) for i in range(30)] and not q.cloud_only
    # the two expired rows still hold the series; the acked one is gone from the pending table
    assert db_rows(data, "SELECT COUNT(*) FROM relay_pending") == [(2,)]


def _outbox_bodies(data: Path, lane: str) -> list[dict]:
    from fogline.gateway.relay.outbox import LANES
    con = sqlite3.connect(f"file:{data / 'outbox.sqlite'}?mode=ro", uri=True)
    try:
        return [cbor2.loads(b) for (b,) in con.execute("SELECT body FROM outbox WHERE lane=? ORDER BY id",
                                                       (LANES.index(lane),))]
    finally:
        con.close()


def test_up_lane_waits_for_the_relay_lease_alerts_do_not(tmp_path, mosquitto, pki):
    """Cluster: readings of a node whose relay lease is elsewhere stay behind the cursor until it is held here."""
    from fogline.gateway.relay.component import attach

    cloud = tls_cloud_broker(tmp_path / "cloud", pki, USERS)  # not started: look at the outbox
    cfg = gw_config(tmp_path, mosquitto.port, site={"gateway_id": "gw1"},
                    cloud=cloud_section(cloud.port, pki, forward_readings=True), outbox={"synchronous": "NORMAL"})
    g = GatewayThread(cfg)
    (comp,) = attach(g.gw)
    lease = {"ok"}
    g.gw.set_relay_predicate(lambda node, since=None: node in lease)
    g.start()
    ok, held = SimNode(mosquitto.port, "ok"), SimNode(mosquitto.port, "held")
    data = tmp_path / "data"
    try:
        ok.up(1, [1.0, 2.0])
        held.up(1, [3.0, 4.0, 5.0])
        held.send("alert", alert_pack("held", 1, 99.0))
        assert held.wait_ack("up", 3, 60) and held.wait_ack("alert", 1, 60) and ok.wait_ack("up", 2, 60)
        assert wait_for(lambda: cursors(data).get(("ok", 0)) == 2 and cursors(data).get(("held", 1)) == 1, 60)
        # lease re-checks happen (counted) and still nothing of the unleased node goes
        assert wait_for(lambda: comp.feeder.counters["not_leased"] >= 2, 60), comp.feeder.counters
        assert ("held", 0) not in cursors(data)
        assert [b["node"] for b in _outbox_bodies(data, "raw")] == ["ok"]
        lease.add("held")  # the lease moves here: the backlog goes, from the cursor
        assert wait_for(lambda: cursors(data).get(("held", 0)) == 3, 60), comp.feeder.counters
    finally:
        ok.close()
        held.close()
        g.stop()
    raw = _outbox_bodies(data, "raw")
    assert [(b["node"], b["first_seq"], len(b["records"])) for b in raw] == [("ok", 1, 2), ("held", 1, 3)]
    assert [(b["node"], b["seq"]) for b in _outbox_bodies(data, "alert")] == [("held", 1)]


def test_inference_decisions_acked_by_the_cloud_mark_their_windows_relayed(tmp_path, mosquitto, pki, cloud):
    """Default site (inference on, no relay summaries): decisions the cloud acked mark the series relayed."""
    import math

    import numpy as np

    from fogline.gateway.service_components import attach
    from fogline.shared import senml

    cs = cloud_section(cloud.port, pki)
    del cs["summary_windows_s"]  # auto: none, the decisions carry the summaries
    cfg = gw_config(tmp_path, mosquitto.port, site={"gateway_id": "gw1"}, cloud=cs,
                    aggregate={"windows_s": [60.0], "watermark_s": 0.0},
                    inference={"registry_dir": str(tmp_path / "models")}, outbox={"synchronous": "NORMAL"})
    g = GatewayThread(cfg)
    notes = attach(g.gw, cfg)
    assert notes["inference"].startswith("on") and notes["relay"] == "on", notes
    g.start()
    node = SimNode(mosquitto.port, "n1")
    rng = np.random.default_rng(5)
    t0 = math.floor(time.time() / 60) * 60 - 300
    try:
        seq = 1
        for minute in range(5):
            recs = []
            for s_ in range(60):
                t = t0 + 60 * minute + s_
                recs += [("temperature", "Cel", round(21 + rng.normal(0, 0.07), 2), t),
                         ("humidity", "%RH", round(45 + rng.normal(0, 0.3), 2), t),
                         ("pressure", "hPa", round(1012 + rng.normal(0, 0.05), 2), t)]
            for i in range(0, len(recs), 60):
                chunk = recs[i:i + 60]
                node.send("up", cbor2.dumps([seq, senml.build_pack("n1/", chunk[0][3], chunk)]))
                seq += len(chunk)
        assert wait_for(lambda: g.gw.inference.counters["sets_scored"] >= 4, 60), g.gw.inference.stats()
        data = tmp_path / "data"
        sql = "SELECT s.metric, r.upto FROM relayed r JOIN series s ON s.sid=r.sid"
        assert wait_for(lambda: set(dict(db_rows(data, sql)).values()) == {t0 + 240}, 60), db_rows(data, sql)
    finally:
        node.close()
        g.stop()
    relayed = dict(db_rows(data, sql))
    assert relayed == {"temperature": t0 + 240, "humidity": t0 + 240, "pressure": t0 + 240}
    assert db_rows(data, "SELECT COUNT(*) FROM relay_pending") == [(0,)]  # every decision row was acked


def test_gateway_health_goes_to_the_cloud_summary_lane(tmp_path, mosquitto, pki):
    """Issue 11: the gateway reports its CPU, memory, disk and load to the cloud side, at start and periodically."""
    import os

    from fogline.gateway.relay.component import attach

    cloud = tls_cloud_broker(tmp_path / "cloud", pki, USERS)  # not started: look at the outbox
    cfg = gw_config(tmp_path, mosquitto.port, site={"gateway_id": "gw1"},
                    cloud=cloud_section(cloud.port, pki, health_every_s=0.3), outbox={"synchronous": "NORMAL"})
    g = GatewayThread(cfg)
    attach(g.gw)
    g.start()
    node = SimNode(mosquitto.port, "h1")
    data = tmp_path / "data"
    try:
        node.up(1, [1.0])
        assert node.wait_ack("up", 1, 60)

        def reports() -> list[dict]:
            return [b for b in _outbox_bodies(data, "summary") if b.get("kind") == "gateway_health"]
        assert wait_for(lambda: len(reports()) >= 3, 60), reports()
    finally:
        node.close()
        g.stop()
    last = reports()[-1]
    assert last["gw"] == "gw1" and last["nodes"] == 1
    h = last["health"]
    assert h["cores"] == os.cpu_count() and 0 < h["mem_avail"] <= h["mem_total"] and 0 < h["disk_free"] <= h["disk_total"]
    assert "load1" in h and 0.0 <= h["cpu_pct"] <= 100.0


def test_health_every_s_validated_and_zero_turns_reports_off():
    from fogline.gateway.relay.cloud import CloudConfig

    with pytest.raises(ValueError, match="cloud.health_every_s"):
        CloudConfig.from_dict({"health_every_s": -1})
    assert CloudConfig.from_dict({"health_every_s": 0}).health_every_s == 0


def test_a_reading_stored_late_inside_a_skipped_gap_reaches_the_cloud_once(tmp_path, mosquitto, pki, cloud):
    """The feeder's cursor passes a skipped gap; a reading of that gap stored later still goes, once."""
    from fogline.gateway.relay.component import attach

    sub = CloudSubscriber(cloud.port, pki, "cloud", USERS["cloud"]).start()
    cfg = gw_config(tmp_path, mosquitto.port, site={"gateway_id": "gw1"},
                    cloud=cloud_section(cloud.port, pki, forward_readings=True, forward_batch=25))
    g = GatewayThread(cfg)
    (comp,) = attach(g.gw)
    g.start()
    node = SimNode(mosquitto.port, "g1")
    data = tmp_path / "data"

    def cloud_seqs() -> list[int]:
        return sorted(b["first_seq"] + i for it in sub.snapshot() if it["lane"] == "raw"
                      for b in [it["body"]] for i in range(len(b["records"])))
    try:
        node.up(1, [float(s) for s in range(1, 11)])
        node.up(20, [20.0, 21.0, 22.0])
        assert node.wait_ack("up", 10, 60)
        node.send("state", cbor2.dumps({"oldest": {"up": 20}}))  # the node says 11..19 are gone: skipped
        assert node.wait_ack("up", 22, 60)
        assert wait_for(lambda: cursors(data).get(("g1", 0)) == 22, 60), cursors(data)  # past the gap
        assert wait_for(lambda: cloud_seqs() == list(range(1, 11)) + [20, 21, 22], 60), cloud_seqs()
        node.up(15, [15.5])  # ... yet the node still had seq 15: stored late, below the feeder's cursor
        assert wait_for(lambda: stored_seqs(data, "g1") == list(range(1, 11)) + [15, 20, 21, 22], 60)
        assert wait_for(lambda: 15 in cloud_seqs(), 60), (cloud_seqs(), comp.feeder.counters)
        assert wait_for(lambda: not db_rows(data, "SELECT * FROM relay_backfill"), 60)
        node.up(16, [16.5])  # a second late fill after the first was drained goes too
        assert wait_for(lambda: 16 in cloud_seqs(), 60), (cloud_seqs(), comp.feeder.counters)
        node.up(15, [15.5])  # a re-send of a stored late fill is a duplicate: not relayed again
        node.up(23, [23.0])
        assert wait_for(lambda: 23 in cloud_seqs(), 60)
    finally:
        node.close()
        g.stop()
        sub.stop()
    assert cloud_seqs() == list(range(1, 11)) + [15, 16, 20, 21, 22, 23]  # each exactly once
    late = [it["body"] for it in sub.snapshot() if it["lane"] == "raw" and it["body"]["first_seq"] == 15]
    assert late[0]["node"] == "g1" and late[0]["records"][0][:3] == ["temp", "Cel", 15.5]
    assert cursors(data)[("g1", 0)] == 23
    assert comp.feeder.counters["readings"] == 16
