"""All-good packs travel the ingest path as columns (ingest/readings.py): same rows, acks and hooks as objects."""

from __future__ import annotations

import sqlite3
import time

from fogline.gateway.ingest.readings import PackReadings, Reading, pack_columns
from fogline.gateway.ingest.validate import Policy, decode_uplink
from fogline.gateway.store.core import Store
from fogline.shared import auth, cbor, senml
from tests.gateway.ingest_helpers import GatewayThread, SimNode, gw_config, stored_seqs, wait_for

NOW = time.time()
POL = Policy(site="site1", units=frozenset({"Cel", "%RH"}))


def _uplink(node: str, first: int, n: int, epoch: int = 0, t0: float = NOW - 600) -> bytes:
    recs = [(("temp", "hum")[i % 2], ("Cel", "%RH")[i % 2], 20 + i % 7 * 0.5, t0 + first + i) for i in range(n)]
    return auth.seal_pack(None, node, "up", first, cbor.dumps(senml.build_pack(node + "/", t0, recs)), epoch)


def test_a_clean_pack_is_columns_and_reads_as_the_readings_it_holds():
    m = decode_uplink("n1", "up", _uplink("n1", 5, 4), POL, NOW)
    pk = pack_columns(m.readings)
    assert isinstance(m.readings, PackReadings) and pk is not None and len(m.readings) == 4
    assert all(type(x) is float for x in pk.values + pk.times)
    assert [(r.seq, r.metric, r.unit, r.t) for r in m.readings] == [
        (5, "temp", "Cel", NOW - 600 + 5), (6, "hum", "%RH", NOW - 600 + 6), (7, "temp", "Cel", NOW - 600 + 7),
        (8, "hum", "%RH", NOW - 600 + 8)]
    # once objects are handed out they are the truth: a consumer may change them, nobody reads the columns
    m.readings[0].value = 99.0
    assert pack_columns(m.readings) is None and m.readings[0].value == 99.0
    assert m.readings == [Reading(r.node, r.lane, r.seq, r.metric, r.unit, r.value, r.t) for r in m.readings]


def _rows(path):
    con = sqlite3.connect(path)
    try:
        return (con.execute("SELECT n.name, r.lane, r.seq, s.metric, s.unit, r.t, r.v, r.rx FROM readings r "
                            "JOIN nodes n ON n.nid=r.nid JOIN series s ON s.sid=r.sid ORDER BY 1, 2, 3").fetchall(),
                con.execute("SELECT n.name, l.lane, l.contig FROM lanes l JOIN nodes n ON n.nid=l.nid ORDER BY 1, 2")
                .fetchall())
    finally:
        con.close()


def test_store_rows_acks_and_outcomes_from_columns_equal_those_from_reading_objects(tmp_path):
    # in order, a hole filled later, a duplicate, a partial overlap, a new epoch (seqs shifted), two nodes
    plan = [("a", 1, 10, 0), ("b", 1, 4, 0), ("a", 21, 5, 0), ("a", 11, 10, 0), ("a", 11, 10, 0),
            ("b", 3, 6, 0), ("a", 1, 3, 7), ("b", 9, 2, 0), ("a", 4, 4, 7)]
    out = {}
    for mode in ("columns", "objects"):
        st = Store(tmp_path / f"{mode}.sqlite")
        outcomes, kept = [], []
        for node, first, n, ep in plan:
            m = decode_uplink(node, "up", _uplink(node, first, n, ep), POL, NOW)
            assert pack_columns(m.readings) is not None
            if mode == "objects":
                m.readings = list(m.readings)
            res = st.commit_batch([m], now=NOW)
            r = res.results[0]
            kept.append(pack_columns(r.new) is not None if mode == "columns" else None)  # before reading r.new
            outcomes.append((r.status, [(x.seq, x.metric, x.value, x.t) for x in r.new], r.refused, res.acks))
        st.close()
        out[mode] = (outcomes, _rows(tmp_path / f"{mode}.sqlite"))
        if mode == "columns":  # packs in order (also shifted by an epoch) went to the rows as columns
            assert kept == [True, True, False, False, False, False, True, True, True], kept
    assert out["columns"] == out["objects"]
    outcomes, (rows, lanes) = out["columns"]
    assert [o[0] for o in outcomes] == ["stored", "stored", "stored", "stored", "duplicate", "partial", "stored",
                                        "stored", "stored"]
    assert outcomes[-1][3] == {"a": {"up": 7, "e": 7}}
    assert lanes == [("a", 0, 32), ("b", 0, 10)]  # lane 0: up
    assert len(rows) == 32 + 10


def test_gateway_drains_packs_without_building_reading_objects(mosquitto, tmp_path, monkeypatch):
    built = []
    real = PackReadings.objects

    def counted(self):
        built.append(self.first)
        return real(self)
    monkeypatch.setattr(PackReadings, "objects", counted)
    seen = []
    cfg = gw_config(tmp_path, mosquitto.port)
    with GatewayThread(cfg) as g:
        g.gw.on_readings(lambda rs: seen.append(len(rs)))  # a hook that only counts never builds objects
        nodes = [SimNode(mosquitto.port, f"p{i}") for i in range(2)]
        for k in range(5):
            for sim in nodes:
                sim.c.publish(f"fogline/site1/{sim.node}/up", _uplink(sim.node, 1 + 10 * k, 10), qos=1)
        g.flush()
        assert wait_for(lambda: sum(seen) == 100)
        for sim in nodes:
            assert wait_for(lambda: sim.high["up"] == 50), sim.acks
        assert g.gw.metrics.total("readings_stored") == 100
        assert built == []
        for sim in nodes:
            sim.c.disconnect()
    for i in range(2):
        assert stored_seqs(tmp_path / "data", f"p{i}") == list(range(1, 51))
