"""Config loading, window statistics and watermark, store cursors (no broker needed)."""

from __future__ import annotations

import math
import random
import statistics
from dataclasses import dataclass

import pytest

from fogline.gateway import config
from fogline.gateway.aggregate.core import Aggregator, Window
from fogline.gateway.store.core import Store
from fogline.gateway.ingest.validate import Message, Reading


# --- config -------------------------------------------------------------------------------------

def test_defaults_and_documented_example_round_trip(tmp_path):
    cfg = config.load(None)
    assert cfg.site.data_dir == "./fogline-data" and cfg.mqtt.port == 1883
    assert cfg.aggregate.windows_s == [10.0, 60.0, 900.0]
    p = tmp_path / "g.toml"
    p.write_text(config.example_toml())
    again = config.load(p)
    assert again.store.batch_max == cfg.store.batch_max and again.ingest.units == cfg.ingest.units


def test_errors_name_the_field(tmp_path):
    p = tmp_path / "g.toml"
    for text, field in (("[mqtt]\nport = 'x'\n", "mqtt.port"), ("[store]\nbatch_mx = 3\n", "store.batch_mx"),
                        ("[site]\nid = 'a/b'\n", "site.id"), ("[ingest]\nunknown_devices = 'maybe'\n",
                                                               "ingest.unknown_devices"),
                        ("[ble]\nbind_keys = {'AA' = 'zz'}\n", "ble.bind_keys.AA"),
                        ("[aggregate]\nwindows_s = []\n", "aggregate.windows_s")):
        p.write_text(text)
        with pytest.raises(config.ConfigError, match=field.replace(".", r"\.")):
            config.load(p)
    p.write_text("[mqtt\n")
    with pytest.raises(config.ConfigError):
        config.load(p)


def test_other_components_register_their_section(tmp_path):
    @dataclass
    class FooConfig:
        enabled: bool = False
        rate: float = 1.5

    config.register_section("foo_test", FooConfig)
    try:
        p = tmp_path / "g.toml"
        p.write_text("[foo_test]\nenabled = true\nrate = 3\n")
        cfg = config.load(p)
        assert cfg.foo_test == FooConfig(True, 3.0)
        assert isinstance(config.load(None).foo_test, FooConfig)
        p.write_text("[foo_test]\nenabled = true\n[unregistered]\nx = 1\n")
        with pytest.raises(config.ConfigError, match=r"\[unregistered\]: unknown section"):
            config.load(p)
    finally:
        config.SECTIONS.pop("foo_test")


# --- aggregation --------------------------------------------------------------------------------

def test_window_statistics_match_statistics_module():
    out: list[Window] = []
    agg = Aggregator([10.0], 0.0, out.append)
    rnd = random.Random(3)
    vals = [rnd.gauss(20, 3) for _ in range(100)]
    for i, v in enumerate(vals):
        agg.add("n", "temp", "Cel", v, 1000.0 + i * 0.5, 0)
    agg.flush()
    assert len(out) == 5
    for k, w in enumerate(out):
        chunk = vals[20 * k:20 * (k + 1)]
        assert (w.start, w.end, w.count) == (1000.0 + 10 * k, 1010.0 + 10 * k, 20)
        assert w.min == min(chunk) and w.max == max(chunk) and w.last == chunk[-1]
        assert math.isclose(w.mean, statistics.fmean(chunk), rel_tol=1e-12)
        assert math.isclose(w.stddev, statistics.pstdev(chunk), rel_tol=1e-9)
        assert w.unit == "Cel" and w.length == 10.0


def test_watermark_late_data_and_several_lengths():
    out: list[Window] = []
    agg = Aggregator([10.0, 60.0], 5.0, out.append)
    for t in range(0, 14):
        agg.add("n", "m", None, float(t), 1000.0 + t, 0)
    assert out == []                       # newest 1013, watermark 1008 < window end 1010
    agg.add("n", "m", None, 99.0, 1003.0, 0)  # out of order but within the watermark: counted
    agg.add("n", "m", None, 15.0, 1015.0, 0)  # watermark 1010: closes [1000, 1010)
    assert [(w.start, w.count, w.max) for w in out] == [(1000.0, 11, 99.0)]
    agg.add("n", "m", None, 5.0, 1004.0, 0)   # window already closed: late
    assert agg.late_readings == 1
    agg.add("other", "m", None, 1.0, 1001.0, 0)  # other nodes have their own watermark
    assert agg.late_readings == 1
    agg.add("n", "m", None, 1.0, 1070.0, 0)
    assert [(w.start, w.length) for w in out[1:]] == [(1010.0, 10.0), (960.0, 60.0)]  # epoch-aligned


def test_add_many_equals_add_per_reading():
    rnd = random.Random(3)
    rows = [(rnd.choice(["a", "b"]), rnd.choice([None, "Cel"]), rnd.uniform(-5, 5), 1000.0 + i + rnd.uniform(-3, 0))
            for i in range(400)]
    one: list[Window] = []
    many: list[Window] = []
    a1, a2 = Aggregator([10.0, 60.0], 2.0, one.append), Aggregator([10.0, 60.0], 2.0, many.append)
    for m, u, v, t in rows:
        a1.add("n", m, u, v, t, 5.0)
    for i in range(0, len(rows), 10):  # packs of 10, as columns
        ms, us, vs, ts = zip(*rows[i:i + 10])
        a2.add_many("n", ms, us, vs, ts, 5.0)
    a1.flush()
    a2.flush()
    assert one == many and len(one) > 40 and a1.late_readings == a2.late_readings


def test_idle_nodes_windows_closed_by_wall_clock():
    out: list[Window] = []
    agg = Aggregator([60.0], 5.0, out.append, idle_close_s=30.0)
    agg.add("n", "m", None, 1.0, 1000.0, wall=5000.0)
    assert agg.close_idle(5010.0) == 0 and out == []
    assert agg.close_idle(5031.0) == 1 and out[0].count == 1
    agg.add("n", "m", None, 2.0, 1001.0, wall=5040.0)  # fired early: the window takes it and fires again
    assert agg.late_readings == 0 and agg.open_count() == 1
    assert agg.close_idle(5071.0) == 1 and (out[1].count, out[1].correction) == (2, True)


# --- store cursors ------------------------------------------------------------------------------

def _msg(node, first, n, t0=1000.0, lane="up", v=None):
    return Message(node, lane, first, [Reading(node, lane, first + i, "m", None, float(v if v is not None else
                                                                                         first + i), t0 + first + i)
                                       for i in range(n)])


def test_store_contiguous_ack_holes_resends_and_restart(tmp_path):
    db = tmp_path / "s.sqlite"
    s = Store(db)
    r = s.commit_batch([_msg("a", 1, 5), _msg("a", 11, 5)])
    assert r.acks == {"a": {"up": 5}}                 # 6..10 missing: the ack stops at 5
    r = s.commit_batch([_msg("a", 6, 5), _msg("a", 1, 5)])
    assert [x.status for x in r.results] == ["stored", "duplicate"] and r.acks == {"a": {"up": 15}}
    r = s.commit_batch([_msg("a", 14, 4)])            # overlaps 14,15; 16,17 new
    assert r.results[0].status == "partial" and [x.seq for x in r.results[0].new] == [16, 17]
    r = s.commit_batch([_msg("a", 3, 1, v=-1.0)])     # same seq, other value
    assert r.results[0].status == "replayed"
    s.commit_batch([_msg("a", 30, 2)])
    s.close()
    s = Store(db)                                     # restart: cursor and the stored seqs above it
    assert s.ack_state("a") == {"up": 17}
    r = s.commit_batch([_msg("a", 18, 12)])
    assert r.acks == {"a": {"up": 31}}
    s.close()


def _lane_states(s):
    return {(s.names[nid], li): (st.contig, st.floor, sorted(st.above)) for (nid, li), st in s.lanes.items()}


def test_a_reopened_store_has_the_same_cursors_and_seqs_above_them(tmp_path):
    db = tmp_path / "s.sqlite"
    s = Store(db)
    s.commit_batch([_msg("a", 1, 5), _msg("a", 8, 3), _msg("a", 20, 1), _msg("b", 1, 10), _msg("c", 3, 2),
                    _msg("a", 1, 3, lane="alert"), _msg("a", 5, 1, lane="alert"), _msg("e", 5, 2)])
    s.commit_batch([_msg("b", 13, 2), _msg("d", 1, 4)])
    # a lane with readings but no cursor row (contig 0): its seqs still count as above the cursor
    s.con.execute("DELETE FROM lanes WHERE nid=?", (s.nids["e"],))
    before, acks = _lane_states(s), s.ack_states()
    assert before[("a", 0)] == (5, 0, [8, 9, 10, 20]) and before[("c", 0)] == (0, 0, [3, 4])
    assert before[("e", 0)] == (0, 0, [5, 6]) and acks["a"] == {"up": 5, "alert": 3}
    s.close()
    s = Store(db)
    assert _lane_states(s) == before and s.ack_states() == acks
    assert s.commit_batch([_msg("a", 6, 2), _msg("e", 1, 4)]).acks == {"a": {"up": 10, "alert": 3}, "e": {"up": 6}}
    s.close()


def test_resends_within_one_batch_are_deduplicated_per_lane(tmp_path):
    s = Store(tmp_path / "s.sqlite")
    r = s.commit_batch([_msg("a", 1, 5), _msg("b", 1, 3), _msg("a", 3, 5), _msg("b", 2, 3, v=-1.0),
                        _msg("a", 1, 3, lane="alert"), _msg("a", 2, 3, lane="alert")])
    assert [(x.status, [y.seq for y in x.new]) for x in r.results] == [
        ("stored", [1, 2, 3, 4, 5]), ("stored", [1, 2, 3]), ("partial", [6, 7]), ("partial", [4]),
        ("stored", [1, 2, 3]), ("partial", [4])]
    assert r.results[3].detail.startswith("2 reading(s) differ") and r.acks == {"a": {"up": 7, "alert": 4},
                                                                                 "b": {"up": 4}}
    assert s.con.execute("SELECT v FROM readings WHERE nid=? AND seq=2", (s.nids["b"],)).fetchone() == (2.0,)


def test_store_failed_commit_changes_nothing(tmp_path):
    s = Store(tmp_path / "s.sqlite")
    s.commit_batch([_msg("a", 1, 3)])
    bad = _msg("a", 4, 2)
    s.con.execute("CREATE TRIGGER boom BEFORE INSERT ON readings WHEN NEW.seq = 5 BEGIN "
                  "SELECT RAISE(ABORT, 'disk on fire'); END")
    with pytest.raises(Exception):
        s.commit_batch([bad])
    assert s.ack_state("a") == {"up": 3}
    s.con.execute("DROP TRIGGER boom")
    assert s.commit_batch([_msg("a", 4, 2)]).acks == {"a": {"up": 5}}


def test_longer_windows_merged_from_short_ones_equal_direct_computation():
    rnd = random.Random(7)
    readings = []
    t = 10_000.0
    for _ in range(3000):
        t += rnd.choice([0.5, 1.0, 2.0, 7.0])
        readings.append((rnd.choice(["a", "b"]), rnd.uniform(-5, 40), t + rnd.uniform(-2.0, 0.0)))
    merged: list[Window] = []
    agg = Aggregator([10.0, 60.0, 900.0], 3.0, merged.append)
    direct = {ln: [] for ln in (10.0, 60.0, 900.0)}
    singles = {ln: Aggregator([ln], 3.0, direct[ln].append) for ln in direct}
    for metric, v, ts in readings:
        agg.add("n", metric, None, v, ts, 0)
        for a in singles.values():
            a.add("n", metric, None, v, ts, 0)
    agg.flush()
    for a in singles.values():
        a.flush()
    for ln, want in direct.items():
        got = sorted((w for w in merged if w.length == ln), key=lambda w: (w.metric, w.start))
        want = sorted(want, key=lambda w: (w.metric, w.start))
        assert [(w.metric, w.start, w.count, w.min, w.max, w.last) for w in got] == \
               [(w.metric, w.start, w.count, w.min, w.max, w.last) for w in want]
        for g, w in zip(got, want):
            assert math.isclose(g.mean, w.mean, rel_tol=1e-9, abs_tol=1e-9)
            assert math.isclose(g.stddev, w.stddev, rel_tol=1e-7, abs_tol=1e-9)


def test_a_hole_the_node_keeps_resending_above_is_skipped_only_after_gap_skip_s(tmp_path):
    s = Store(tmp_path / "s.sqlite", gap_skip_s=60.0)
    s.commit_batch([_msg("a", 1, 3)], now=0.0)
    above = _msg("a", 10, 2)                         # 4..9 never arrive (dropped on the node)
    assert s.commit_batch([above], now=1.0).acks == {"a": {"up": 3}}
    r = s.commit_batch([_msg("a", 10, 2)], now=30.0)  # a resend above the hole: not yet
    assert r.acks == {"a": {"up": 3}} and r.gaps == []
    r = s.commit_batch([_msg("a", 10, 2)], now=62.0)  # still re-sending above it a minute later
    assert r.gaps == [("a", "up", 4, 9, "resend-above-gap")] and r.acks == {"a": {"up": 11}}
    r = s.commit_batch([_msg("a", 5, 1)], now=63.0)   # a late straggler from the hole is still stored
    assert r.results[0].status == "stored"
    assert s.con.execute("SELECT lo, hi FROM gaps").fetchall() == [(4, 9)]


def test_registry_state_last_will_and_bad_types():
    from fogline.gateway.ingest.devices import DeviceRegistry
    reg = DeviceRegistry()
    assert reg.admit("n", "mqtt", 1.0)
    dev = reg.update_state("n", {"version": 3, "fw": "1.0", "backlog": {"up": 4}, "battery": [1, 2],
                                 "dropped": {"up": {"nested": 1}}, "extra": "ignored"}, 2.0)
    assert (dev.config_version, dev.fw, dev.backlog, dev.battery, dev.dropped) == (3, "1.0", {"up": 4}, None, {})
    assert reg.update_state("n", {"online": False}, 3.0).online is False     # last will
    assert reg.touch("n", "mqtt", 4.0, 5).online is True and reg.devices["n"].readings == 5
    assert set(reg.take_dirty()) == {"n"} and reg.take_dirty() == {}


def test_a_pack_overlapping_a_refused_seq_still_stores_its_new_readings(tmp_path):
    s = Store(tmp_path / "s.sqlite")
    s.commit_batch([_msg("a", 1, 3)])
    mixed = _msg("a", 3, 3)                          # seq 3 stored with another value; 4, 5 new
    mixed.readings[0].value = 99.0
    r = s.commit_batch([mixed])
    res = r.results[0]
    assert (res.status, [x.seq for x in res.new], res.refused) == ("partial", [4, 5], 1)
    assert "differ" in res.detail and r.acks == {"a": {"up": 5}}
    assert s.con.execute("SELECT v FROM readings WHERE seq=3").fetchone() == (3.0,)   # the stored one wins
