"""A node whose flash is erased mid-run (seqs restart at 1) against the real gateway, mosquitto and SQLite.

The node is the real firmware (FlashLog on LittleFS + Uplink + MQTT client, tests/node/uplink_node.py)
on the MicroPython unix port. Its new readings must be stored under its new epoch and acked, the reset
counted and shown by `fogline devices`; a plain reboot (flash kept) must not look like a reset.
"""

from __future__ import annotations

from fogline.gateway.commands import devices as devices_cmd
from tests.gateway.ingest_helpers import GatewayThread, db_rows, gw_config
from harness.counternode import T0, run_counter_node


def _run_node(port: int, ctl, n: int, *opts: str) -> dict:
    proc, done = run_counter_node(port, n, 2, ctl, *opts)
    assert proc.returncode == 0 and done, (proc.stderr[-2000:], proc.stdout[-1000:])
    return done


def _readings(data) -> list[tuple[float, float]]:
    return db_rows(data, "SELECT v, t FROM readings WHERE lane=0 ORDER BY seq")


def test_erased_node_flash_new_readings_are_stored_and_acked(mosquitto, tmp_path):
    n = 60
    cfg = gw_config(tmp_path, mosquitto.port, site={"id": "s1"},
                    ingest={"max_age_s": 10 * 365 * 86400.0},  # the harness's clock is T0 = 2025-11-26
                    tiers={"compress_after_s": 20 * 365 * 86400.0})
    ctl = tmp_path / "ctl"
    ctl.write_text("wifi 1")
    data = tmp_path / "data"
    g = GatewayThread(cfg).start()
    try:
        first = _run_node(mosquitto.port, ctl, n)
        assert first["acked_up"] == n and first["epoch"] > 0
        (tmp_path / "ctl.img").unlink()            # flash erased: the node starts over at seq 1...
        second = _run_node(mosquitto.port, ctl, n, "offset=1000")
        assert second["epoch"] != first["epoch"]
        assert second["acked_up"] == n and second["depth_up"] == 0
        third = _run_node(mosquitto.port, ctl, n, "offset=2000", "keep=1")   # ...then reboots (flash kept)
        assert third["epoch"] == second["epoch"] and third["acked_up"] == 2 * n
        g.flush()
        metrics = g.gw.metrics.counters
    finally:
        g.stop()
    want = ([((i) * 0.25, T0 + i) for i in range(1, n + 1)]
            + [((1000 + i) * 0.25, T0 + 1000 + i) for i in range(1, n + 1)]
            + [((2000 + i) * 0.25, T0 + 2000 + i) for i in range(1, n + 1)])
    assert _readings(data) == want                     # every reading of all three runs, once
    alerts = db_rows(data, "SELECT v FROM readings WHERE lane=1 ORDER BY seq")
    assert [a for (a,) in alerts] == [40.0, 1040.0, 2040.0]
    assert db_rows(data, "SELECT reason, COUNT(*) FROM dead_letters GROUP BY reason") == []
    assert sum(metrics["epoch_resets"].values()) == 2   # up and alert lane, one reset
    dev = {d["node"]: d for d in devices_cmd.load_devices(data / "ingest.sqlite")}["node1"]
    assert dev["epoch"] == second["epoch"] and dev["epoch_resets"] == 1 and dev["epoch_skipped"] == 0
    assert f"{second['epoch']:08x} (1 reset)" == devices_cmd._epoch(dev)


def _msg(node: str, first: int, n: int, epoch: int = 0, v0: float = 20.0):
    from fogline.gateway.ingest.validate import Message, Reading
    seqs = range(first, first + n)  # value and time follow the node's seq, so a resend is identical
    return Message(node, "up", first, [Reading(node, "up", s, "t", "Cel", v0 + s, T0 + s) for s in seqs],
                   epoch=epoch)


def test_store_maps_each_epoch_to_its_own_seq_range_and_survives_a_restart(tmp_path):
    from fogline.gateway.store.core import Store
    st = Store(tmp_path / "ingest.sqlite")
    st.commit_batch([_msg("n", 1, 10)])                          # a legacy node (epoch 0): seqs 1..10
    assert st.ack_state("n") == {"up": 10}
    res = st.commit_batch([_msg("n", 1, 5, epoch=7, v0=50.0)])   # flash erased, new firmware: seq 1 again
    assert res.results[0].status == "stored" and [r.seq for r in res.results[0].new] == [11, 12, 13, 14, 15]
    assert res.acks["n"] == {"up": 5, "e": 7}                    # acked in the node's own seqs of epoch 7
    assert [(e.old, e.new, e.base) for e in res.epochs] == [(0, 7, 10)]
    res = st.commit_batch([_msg("n", 1, 5, epoch=7, v0=50.0), _msg("n", 3, 2)])  # resends of both epochs
    assert [r.status for r in res.results] == ["duplicate", "duplicate"] and res.epochs == []
    res = st.commit_batch([_msg("n", 9, 5)])                     # epoch 0 reaching past its end (seq 10)
    assert res.results[0].reason == "stale_epoch" and res.results[0].refused == 5
    assert st.note_oldest("n", "up", 4, epoch=0) is None         # state about an older epoch: ignored
    assert st.note_oldest("n", "up", 8, epoch=7) == (16, 17)     # within epoch 7: seqs 6..7 skipped
    st.con.close()
    st = Store(tmp_path / "ingest.sqlite")
    assert st.ack_state("n") == {"up": 7, "e": 7}
    res = st.commit_batch([_msg("n", 8, 2, epoch=7)])
    assert [r.seq for r in res.results[0].new] == [18, 19] and res.acks["n"] == {"up": 9, "e": 7}
    res = st.commit_batch([_msg("n", 1, 2, epoch=9)])            # another reset: base 19
    assert res.acks["n"] == {"up": 2, "e": 9} and [e.base for e in res.epochs] == [19]
    vals = [v for (v,) in st.con.execute("SELECT v FROM readings ORDER BY seq")]
    assert vals == [20.0 + s for s in range(1, 11)] + [50.0 + s for s in range(1, 6)] + [28.0, 29.0, 21.0, 22.0]
    st.con.close()


def test_a_signed_pack_binds_its_epoch():
    from fogline.gateway.ingest.packauth import PackVerifier
    from fogline.gateway.ingest.validate import Rejected
    from fogline.shared import auth
    import pytest
    key = bytes(range(16))
    pack = b"\x81\xa1\x00\x61x"
    good = auth.seal_pack(key, "n", "up", 1, pack, 7)
    assert auth.split_uplink(good)[3] == 7
    v = PackVerifier({"n": key})
    assert v.check("n", "up", good) == 1
    forged = good[:-1] + bytes([good[-1] + 1])                   # same tag, another epoch
    with pytest.raises(Rejected, match="bad_tag"):
        v.check("n", "up", forged)
    legacy = auth.seal_pack(key, "n", "up", 1, pack)             # epoch 0: the payload and tag as before
    assert legacy[0] == 0x83 and auth.split_uplink(legacy) == (1, pack, auth.sign_pack(key, "n", "up", 1, pack), 0)


def test_cluster_takeover_adopts_cursors_in_the_node_epoch(tmp_path):
    from fogline.gateway.cluster.core import decode_health
    from fogline.gateway.cluster.takeover import Held, adopt_cursors
    from fogline.gateway.store.core import Store
    h = Held(4)
    assert h.hint("n", "up", 50, 7)
    assert h.hint("n", "up", 5, 9) and h.hints[("n", "up")] == 5   # the node reset: old hints mean nothing
    assert not h.acked_elsewhere(_msg("n", 1, 3, epoch=7)) and h.acked_elsewhere(_msg("n", 1, 3, epoch=9))
    health = {"alive": True, "nodes": {}, "load": 0, "acks": {"n": {"up": 5, "e": 9}}}
    assert decode_health(health)[2] == {"n": {"up": 5, "e": 9}}     # peers' acks keep their epoch
    st = Store(tmp_path / "ingest.sqlite")
    st.commit_batch([_msg("n", 1, 10, epoch=7)])
    st.commit_batch([_msg("n", 1, 2, epoch=9)])                    # reset here: epoch 9 starts at base 10
    why = "cluster: acked elsewhere up to %d"
    assert adopt_cursors(st, [("n", "up", 4, 7)], why) == []      # a cursor of the old epoch: ignored
    assert adopt_cursors(st, [("n", "up", 5, 9)], why) == [("n", "up", 13, 15)]
    assert st.ack_state("n") == {"up": 5, "e": 9}
    assert adopt_cursors(st, [("m", "up", 3, 9)], why) == [("m", "up", 1, 3)]  # first contact: adopts 9
    res = st.commit_batch([_msg("m", 4, 1, epoch=9)])
    assert res.acks["m"] == {"up": 4, "e": 9} and res.epochs == []
    st.con.close()


def test_a_refused_pack_of_a_reset_node_still_holds_off_the_gap_skip(tmp_path):
    from fogline.gateway.store.core import DeadLetter, Store
    st = Store(tmp_path / "ingest.sqlite")
    st.commit_batch([_msg("n", 1, 10)])
    st.commit_batch([_msg("n", 1, 2, epoch=7)])               # reset: epoch 7 at base 10, stored 11..12
    dl = DeadLetter("time", "whole pack refused", "fogline/site1/n/up", "n", "mqtt", b"", 0.0, lane="up",
                    seqs=(5, 6))                              # node seqs 5..6 of epoch 7 = stored 15..16
    st.commit_batch([], [dl], now=T0)
    assert st.lanes[(st.nids["n"], 0)].refused_at == T0      # so the hole 13..14 is not skipped yet
    st.con.close()
