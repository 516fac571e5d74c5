"""One bad record never costs its pack, and a gap is never skipped while the node still sends it."""

from __future__ import annotations

import time

import cbor2

from fogline.gateway.store.core import DeadLetter, Store
from fogline.gateway.ingest.validate import Policy, decode_uplink
from fogline.shared import cbor, senml
from tests.gateway.ingest_helpers import GatewayThread, SimNode, dead_letters, gw_config, stored_seqs, wait_for

NOW = time.time()
POL = Policy(units=frozenset({"Cel"}))


def _pack(node: str, first: int, values: list, t0: float = NOW - 100, bad: dict | None = None) -> bytes:
    """[first, pack] of temp readings 1 s apart, as the firmware builds it; bad: index -> (name, unit, value, t)."""
    recs = [("temp", "Cel", v, t0 + i) for i, v in enumerate(values)]
    for i, rec in (bad or {}).items():
        recs[i] = rec
    return cbor.dumps([first, senml.build_pack(node + "/", t0, recs)])


def _decode(data: bytes, node: str = "a", now: float = NOW):
    m = decode_uplink(node, "up", data, POL, now)
    m.topic = f"fogline/site1/{node}/up"
    return m


def test_each_kind_of_bad_record_is_refused_alone():
    t0 = NOW - 100
    data = _pack("a", 11, [1.0] * 6, t0, bad={1: ("dist", "furlong", 1.0, t0 + 1),        # unit
                                              2: ("temp", "Cel", "warm", t0 + 2),          # type: text
                                              3: (senml.BAD_RECORD, None, b"\x84\xff", t0 + 3),  # placeholder
                                              5: ("temp", "Cel", 1.0, NOW + 86400)})       # time: a day ahead
    assert isinstance(cbor2.loads(data), list)
    m = _decode(data)
    assert [(r.seq, r.value) for r in m.readings] == [(11, 1.0), (15, 1.0)]
    assert [(s, why) for s, why, _ in m.bad] == [(12, "unit"), (13, "type"), (14, "bad_record"), (16, "time")]
    assert m.records == 6
    bomb = [{senml.BN: "a/temp", senml.BT: t0, senml.BV: 1e308, senml.V: 1e308}, {senml.V: 1.0}]
    m = _decode(cbor.dumps([1, bomb]))            # bv + v overflows to inf: that record alone
    assert [(s, why) for s, why, _ in m.bad] == [(1, "non_finite")] and [r.seq for r in m.readings] == [2]


def test_bad_records_are_dead_lettered_once_and_covered_by_the_ack_across_a_restart(tmp_path):
    db = tmp_path / "s.sqlite"
    s = Store(db)
    s.commit_batch([_decode(_pack("a", 1, [1.0, 2.0, 3.0]))], now=NOW)
    hole = _decode(_pack("a", 4, [4.0, 5.0, 6.0], bad={1: ("dist", "furlong", 5.0, NOW - 99)}))  # seq 5 bad
    above = _decode(_pack("a", 10, [10.0, 11.0], bad={0: ("temp", "Cel", "x", NOW - 100)}))  # 10 bad, 7..9 missing
    r = s.commit_batch([above], now=NOW)
    assert r.results[0].dead == [(10, "type")] and r.acks == {"a": {"up": 3}}
    s.close()
    s = Store(db)                         # the refused seq above the cursor survives a restart
    r = s.commit_batch([hole, _decode(_pack("a", 7, [7.0, 8.0, 9.0])), above], now=NOW + 1)
    assert [x.dead for x in r.results] == [[(5, "unit")], [], []]  # the resent 10 is not dead-lettered again
    assert r.acks == {"a": {"up": 11}}
    assert [x[0] for x in s.con.execute("SELECT seq FROM readings ORDER BY seq")] == [1, 2, 3, 4, 6, 7, 8, 9, 11]
    reasons = [x[0] for x in s.con.execute("SELECT reason FROM dead_letters ORDER BY id")]
    assert reasons == ["type", "unit"]
    r = s.commit_batch([hole], now=NOW + 2)   # a resend below the cursor: nothing new, nothing dead-lettered
    assert r.results[0].dead == [] and s.con.execute("SELECT COUNT(*) FROM dead_letters").fetchone() == (2,)
    s.close()


def test_a_hole_the_node_still_sends_refused_is_never_skipped(tmp_path):
    s = Store(tmp_path / "s.sqlite", gap_skip_s=60.0)
    s.commit_batch([_decode(_pack("a", 1, [1.0] * 3))], now=0.0)
    above = _decode(_pack("a", 10, [1.0] * 2))      # 4..9: the node's pack that we refuse whole
    refused = DeadLetter("cbor", "truncated", "fogline/site1/a/up", "a", rx=1.0, lane="up")  # seqs unknown
    assert s.commit_batch([above], [refused], now=1.0).acks == {"a": {"up": 3}}
    for now in (30.0, 62.0, 100.0):  # the node keeps re-sending: the refused pack, then the ones above
        r = s.commit_batch([above], [refused], now=now)
        assert r.gaps == [] and r.acks == {"a": {"up": 3}}, now
    # the node stopped sending what we refuse (it dropped it): the hole goes after gap_skip_s
    r = s.commit_batch([above], now=130.0)
    assert r.gaps == [] and r.acks == {"a": {"up": 3}}
    r = s.commit_batch([above], now=161.0)
    assert r.gaps == [("a", "up", 4, 9, "resend-above-gap")] and r.acks == {"a": {"up": 11}}
    # a refusal of seqs the cursor already passed holds nothing back
    old = DeadLetter("auth", "bad tag", "fogline/site1/a/up", "a", rx=1.0, lane="up", seqs=(1, 3))
    s.commit_batch([], [old], now=170.0)
    assert s.lanes[(s.nids["a"], 0)].refused_at == 100.0


def test_gateway_stores_the_good_records_of_a_pack_and_acks_it_whole(mosquitto, tmp_path):
    cfg = gw_config(tmp_path, mosquitto.port)
    with GatewayThread(cfg) as g:
        node = SimNode(mosquitto.port, "v1")
        t0 = time.time() - 100
        node.send("up", _pack("v1", 1, [float(i) for i in range(10)], t0, bad={3: ("dist", "furlong", 3.0, t0 + 3),
                                                                               9: ("temp", "Cel", 9.0, t0 + 1e6)}))
        assert node.wait_ack("up", 10)
        g.flush()
        node.close()
    assert stored_seqs(tmp_path / "data", "v1") == [1, 2, 3, 5, 6, 7, 8, 9]
    assert [(r, d.split(":")[0]) for r, _, d in dead_letters(tmp_path / "data")] == [("unit", "seq 4"),
                                                                                      ("time", "seq 10")]
    assert wait_for(lambda: g.gw.metrics.get("records_refused", lane="up") == 2)
