"""Tiers: hot ring, compression into warm blocks, retention after relay, `fogline query/devices/status`."""

from __future__ import annotations

import json
from types import SimpleNamespace

from fogline.gateway.aggregate.core import Window
from fogline.tools.cli import main as cli
from fogline.gateway.store.core import Store
from fogline.gateway.store.tiers import HotTier, maintain, mark_relayed, query
from fogline.gateway.ingest.validate import Message, Reading

NOW = 1_800_000_000.0
TIERS = SimpleNamespace(compress_after_s=3600.0, retention_s=86400.0)
INGEST = SimpleNamespace(dead_letter_max_rows=3)


def _fill(s: Store, node: str, n: int, t0: float, first: int = 1) -> None:
    rs = [Reading(node, "up", first + i, "temp", "Cel", 20.0 + i * 0.01, t0 + i * 60.0) for i in range(n)]
    s.commit_batch([Message(node, "up", first, rs)], now=NOW)


def test_hot_ring_is_bounded_per_series():
    h = HotTier(3)
    for i in range(5):
        h.add(Reading("a", "up", i + 1, "t", None, float(i), 100.0 + i))
    h.add(Reading("a", "up", 9, "h", None, 1.0, 100.0))
    assert h.query("a", "t", 0, 1e9) == [(102.0, 2.0), (103.0, 3.0), (104.0, 4.0)]
    assert h.query("a", "t", 103.0, 104.0) == [(103.0, 3.0)] and h.oldest("a", "h") == 100.0


def test_compression_keeps_every_reading_queryable_and_absorbs_resends_below_it(tmp_path):
    s = Store(tmp_path / "ingest.sqlite")
    _fill(s, "n", 200, NOW - 200 * 60.0)          # 200 readings, one a minute, up to now
    before = query(s.con, "n", "temp", 0, NOW + 1)
    st = maintain(s, TIERS, INGEST, NOW)
    assert st["compressed_rows"] == 140           # older than an hour (t < NOW - 3600)
    after = query(s.con, "n", "temp", 0, NOW + 1)
    assert after.points == before.points and after.sources == {"compressed": 140, "raw": 60}
    assert s.con.execute("SELECT COUNT(*) FROM readings").fetchone()[0] == 60
    # a resend of a compressed (hence acked) seq is absorbed as a duplicate, never stored twice
    old = Message("n", "up", 5, [Reading("n", "up", 5, "temp", "Cel", 20.04, NOW - 196 * 60.0)])
    r = s.commit_batch([old], now=NOW)
    assert r.results[0].status == "duplicate" and r.acks == {"n": {"up": 200}}
    assert s.con.execute("SELECT COUNT(*) FROM readings").fetchone()[0] == 60
    s.close()


def test_retention_prunes_only_relayed_data_and_query_names_cloud_only_ranges(tmp_path, capsys):
    data = tmp_path / "data"
    s = Store(data / "ingest.sqlite")
    _fill(s, "n", 300, NOW - 3 * 86400.0)          # three days ago: 300 minutes of data
    _fill(s, "n", 10, NOW - 600.0, first=301)       # and the last 10 minutes
    s.commit_batch([], windows=[Window("n", "temp", NOW - 3 * 86400.0, NOW - 3 * 86400.0 + 60, 1, 20, 20, 20, 20, 0,
                                       "Cel")], now=NOW)
    maintain(s, TIERS, INGEST, NOW)
    assert query(s.con, "n", "temp", 0, NOW).cloud_only == []     # not relayed yet: nothing pruned
    mark_relayed(s, "n", "temp", NOW - 2 * 86400.0)
    st = maintain(s, TIERS, INGEST, NOW)
    assert st["pruned_blocks"] >= 1 and st["pruned_windows"] == 1
    res = query(s.con, "n", "temp", NOW - 4 * 86400.0, NOW + 1)
    assert len(res.points) == 10 and res.cloud_only == [(NOW - 4 * 86400.0, NOW - 2 * 86400.0)]
    s.close()
    assert cli(["query", "--data-dir", str(data), "--node", "n", "--metric", "temp", "--since",
                str(NOW - 4 * 86400.0), "--until", str(NOW + 1), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out["points"]) == 10 and out["cloud_only"] == [[NOW - 4 * 86400.0, NOW - 2 * 86400.0]]
    assert cli(["query", "--data-dir", str(data), "--node", "n", "--metric", "temp", "--since",
                str(NOW - 4 * 86400.0), "--until", str(NOW + 1)]) == 0
    text = capsys.readouterr().out
    assert "only in the cloud" in text and "10 readings" in text
    assert cli(["query", "--data-dir", str(data), "--node", "nope", "--metric", "temp"]) == 1


def test_devices_and_status_commands_read_the_data_dir(tmp_path, capsys):
    data = tmp_path / "data"
    s = Store(data / "ingest.sqlite")
    _fill(s, "n1", 5, NOW - 600)
    s.commit_batch([], devices={"n1": {"node": "n1", "link": "mqtt", "last_seen": NOW, "battery": 77,
                                      "backlog": {"up": 3}, "fw": "0.1.0", "config_version": 4}}, now=NOW)
    s.close()
    assert cli(["devices", "--data-dir", str(data), "--json"]) == 0
    devs = json.loads(capsys.readouterr().out)
    assert devs[0]["node"] == "n1" and devs[0]["battery"] == 77
    assert cli(["devices", "--data-dir", str(data)]) == 0
    assert "n1" in capsys.readouterr().out
    assert cli(["status", "--data-dir", str(data), "--json"]) == 0
    st = json.loads(capsys.readouterr().out)
    assert st["running"] is False and st["store"]["readings_raw"] == 5
    assert cli(["devices", "--data-dir", str(tmp_path / "missing")]) == 1


def test_a_later_block_starting_at_the_same_instant_merges_instead_of_replacing(tmp_path):
    s = Store(tmp_path / "ingest.sqlite")
    t = NOW - 7200.0
    s.commit_batch([Message("n", "up", 1, [Reading("n", "up", 1, "temp", "Cel", 1.0, t)])], now=NOW)
    assert maintain(s, TIERS, INGEST, NOW)["compressed_rows"] == 1
    # later readings, the first at the same instant as the compressed block's first
    s.commit_batch([Message("n", "up", 2, [Reading("n", "up", 2, "temp", "Cel", 2.0, t),
                                           Reading("n", "up", 3, "temp", "Cel", 3.0, t + 60.0)])], now=NOW)
    assert maintain(s, TIERS, INGEST, NOW)["compressed_rows"] == 2
    res = query(s.con, "n", "temp", 0, NOW + 1)
    assert sorted(v for _t, v in res.points) == [1.0, 2.0, 3.0], res.points  # before: [2.0, 3.0]
    assert res.sources == {"compressed": 3, "raw": 0}
    assert s.con.execute("SELECT n, t0, t1 FROM blocks").fetchall() == [(3, t, t + 60.0)]
    # a third block at that instant keeps all of them too
    s.commit_batch([Message("n", "up", 4, [Reading("n", "up", 4, "temp", "Cel", 4.0, t)])], now=NOW)
    maintain(s, TIERS, INGEST, NOW)
    assert sorted(v for _t, v in query(s.con, "n", "temp", 0, NOW + 1).points) == [1.0, 2.0, 3.0, 4.0]
    s.close()
