"""Outbox: lanes, per-lane caps/policies/TTL with counters, persistence, kill -9 of a relay mid-send."""

from __future__ import annotations

import asyncio
import collections
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fogline.gateway.relay.bandwidth import BandwidthConfig, BandwidthPolicy
from fogline.gateway.relay.cloud import CloudConfig, CloudLink
from fogline.gateway.relay.outbox import LANES, LanePolicy, Outbox, OutboxConfig
from fogline.gateway.relay.core import Relay
from harness.cloudkit import CloudSubscriber, make_pki, tls_cloud_broker

REPO = Path(__file__).resolve().parents[2]


def mk(tmp_path, **lanes) -> Outbox:
    return Outbox(OutboxConfig(path=str(tmp_path / "ob.sqlite"), synchronous="NORMAL", lanes=lanes), "gw7")


def test_ids_keys_and_lane_priority_peek(tmp_path):
    ob = mk(tmp_path)
    ids = [ob.put(lane, b"\x01" * 3) for lane in reversed(LANES)]
    assert ids == sorted(ids) and None not in ids
    assert ob.key(ids[0]) == f"gw7:{ids[0]}"
    assert [r.lane for ln in LANES for r in ob.peek(ln, 10, 1 << 20)] == list(LANES)
    rows = ob.peek("raw", 10, 1 << 20)
    ob.claim(rows)
    assert ob.peek("raw", 10, 1 << 20) == []  # in flight: not picked twice
    assert ob.pending("raw") == 0 and ob.depth()["raw"]["rows"] == 1
    ob.release([rows[0].id])
    assert ob.pending("raw") == 1
    assert ob.ack([rows[0].id]) == 1 and ob.depth()["raw"]["rows"] == 0
    assert ob.counters["acked"]["raw"] == 1


def test_reject_policy_refuses_new_and_counts(tmp_path):
    ob = mk(tmp_path, alert={"max_rows": 3, "when_full": "reject"})
    got = [ob.put("alert", bytes([i])) for i in range(5)]
    assert got[:3] == [1, 2, 3] and got[3:] == [None, None]
    assert [r.body for r in ob.peek("alert", 10, 1 << 20)] == [b"\x00", b"\x01", b"\x02"]  # oldest kept
    assert ob.stats()["counters"]["rejected_full"]["alert"] == 2
    assert ob.stats()["counters"]["accepted"]["alert"] == 3


def test_overwrite_policy_drops_oldest_not_in_flight(tmp_path):
    ob = mk(tmp_path, raw={"max_bytes": 300, "when_full": "overwrite"})
    for i in range(3):
        ob.put("raw", bytes([i]) * 100)
    first = ob.peek("raw", 1, 1 << 20)
    ob.claim(first)  # the oldest is in flight: it must survive, the next oldest goes
    assert ob.put("raw", b"\x09" * 100) is not None
    bodies = [r.body[0] for r in ob.peek("raw", 10, 1 << 20)]
    assert bodies == [2, 9]  # 0 in flight (not listed), 1 overwritten
    assert ob.counters["overwritten"]["raw"] == 1
    assert ob.depth()["raw"] == {"rows": 3, "bytes": 300}
    # an item larger than the whole lane is refused, counted
    assert ob.put("raw", b"x" * 301) is None
    assert ob.counters["rejected_full"]["raw"] == 1


def test_ttl_expiry_counted_and_invalid_input_refused(tmp_path):
    ob = mk(tmp_path, summary={"ttl_s": 10})
    ob.put("summary", b"old", now=1000.0)
    ob.put("summary", b"new", now=1008.0)
    assert [r.body for r in ob.peek("summary", 10, 1 << 20, now=1011.0)] == [b"new"]  # expired not sent
    assert ob.expire(now=1011.0) == 1
    assert ob.counters["expired"]["summary"] == 1 and ob.depth()["summary"]["rows"] == 1
    assert ob.put("bogus", b"x") is None and ob.put("alert", "not bytes") is None  # type: ignore[arg-type]
    assert sum(ob.counters["rejected_invalid"].values()) == 2


def test_config_errors_name_the_field():
    with pytest.raises(ValueError, match="outbox.lanes.raw.when_full"):
        OutboxConfig(lanes={"raw": {"when_full": "drop"}}).validate()
    with pytest.raises(ValueError, match="outbox.lanes.foo"):
        OutboxConfig(lanes={"foo": {}}).validate()
    with pytest.raises(ValueError, match="outbox.lanes.raw.ttl"):
        OutboxConfig(lanes={"raw": {"ttl": 3}}).validate()
    pol = OutboxConfig(lanes={"raw": {"max_rows": 5}}).policies()
    assert pol["raw"].max_rows == 5 and pol["raw"].when_full == "overwrite"  # other fields keep defaults
    assert pol["alert"] == LanePolicy(None, 200_000, 128 << 20, "reject")


def test_rows_and_counters_survive_reopen(tmp_path):
    ob = mk(tmp_path, alert={"max_rows": 2})
    a, b = ob.put("alert", b"a"), ob.put("alert", b"b")
    ob.put("alert", b"c")  # rejected
    ob.ack([a])
    ob.close()
    ob2 = mk(tmp_path, alert={"max_rows": 2})
    assert [r.body for r in ob2.peek("alert", 10, 1 << 20)] == [b"b"]
    assert ob2.counters["rejected_full"]["alert"] == 1 and ob2.counters["acked"]["alert"] == 1
    c = ob2.put("alert", b"d")
    assert c is not None and c > b  # AUTOINCREMENT: ids never reused, keys stay unique
    ob2.ack([b, c])
    assert ob2.put("alert", b"e") > c


def test_kill9_of_relay_mid_send_loses_nothing_and_resends_same_keys(tmp_path):
    pki = make_pki(tmp_path / "pki")
    cloud = tls_cloud_broker(tmp_path / "cloud", pki, {"gw1": "gw-secret", "cloud": "c"}).start()
    sub = CloudSubscriber(cloud.port, pki, "cloud", "c").start()
    path = tmp_path / "relay.sqlite"
    try:
        child = subprocess.Popen([sys.executable, str(REPO / "tests/gateway/relay_child.py"), str(path),
                                  str(cloud.port), str(pki.ca), "5000"], stdout=subprocess.PIPE, text=True,
                                 cwd=str(REPO))
        accepted: dict[int, int] = {}
        assert child.stdout is not None
        deadline = time.monotonic() + 120
        for line in child.stdout:
            parts = line.split()
            if parts[0] == "accepted":
                accepted[int(parts[1])] = int(parts[3])
            if len(accepted) >= 1500 and len(sub.keys()) >= 50 or time.monotonic() > deadline:
                break
        os.kill(child.pid, signal.SIGKILL)  # mid-send: rows in flight, PUBACKs outstanding
        child.wait(10)
        before = len(set(sub.keys()))
        left = sqlite3.connect(str(path)).execute("SELECT COUNT(*) FROM outbox").fetchone()[0]
        assert before > 0 and left > 0, "kill did not land mid-send"

        async def restart():
            ob = Outbox(OutboxConfig(path=str(path), synchronous="NORMAL"), "gw1")
            link = CloudLink(CloudConfig(host="127.0.0.1", port=cloud.port, client_id="fogline-gw1",
                                         ca_file=str(pki.ca), username="gw1", password="gw-secret"))
            relay = Relay(ob, link, "site1", bandwidth=BandwidthPolicy(BandwidthConfig(initial_mode="high", low_kbps=0.001, high_kbps=0.002)))
            await relay.start()
            t0 = time.monotonic()
            while sum(d["rows"] for d in ob.depth().values()) and time.monotonic() - t0 < 30:
                await asyncio.sleep(0.05)
            await relay.stop(drain_s=2)
            return ob.depth()

        depth = asyncio.run(restart())
        assert sum(d["rows"] for d in depth.values()) == 0
        t0 = time.monotonic()
        want = {f"gw1:{rid}" for rid in accepted}
        while not want <= set(sub.keys()) and time.monotonic() - t0 < 10:
            time.sleep(0.05)
        items = sub.snapshot()
    finally:
        sub.stop()
        cloud.stop()
    got = collections.defaultdict(list)
    for it in items:
        got[it["k"]].append(it["body"]["i"])
    missing = want - set(got)
    assert not missing, f"{len(missing)} accepted rows never reached the cloud"
    for k, seen in got.items():
        assert len(set(seen)) == 1, f"key {k} carried different items {seen}"  # dups are re-sends only
        rid = int(k.split(":")[1])
        if rid in accepted:
            assert seen[0] == accepted[rid]
