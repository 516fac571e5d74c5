"""Late fills below the relay feed's cursor: recorded in the storing commit, fed once, kept raw until then."""

from __future__ import annotations

import time

from fogline.gateway import config
from fogline.gateway.relay.feed import ALERT, UP, init_cursors, step
from fogline.gateway.store.core import Store
from fogline.gateway.store.tiers import maintain
from fogline.gateway.ingest.validate import Message, Reading


def _msg(node: str, first: int, n: int, lane: str = "up") -> Message:
    now = time.time()
    return Message(node, lane, first, [Reading(node, lane, first + i, "t", "Cel", float(first + i), now)
                                       for i in range(n)])


def _seqs(chunks, late: bool) -> list[int]:
    return [r[0] for ch in chunks if ch.late == late for r in ch.rows]


def _raw(st: Store) -> list[int]:
    return [s for (s,) in st.con.execute("SELECT seq FROM readings ORDER BY seq")]


def test_a_late_fill_below_the_cursor_is_fed_once_survives_a_restart_and_stays_raw_until_then(tmp_path):
    cfg = config.load(None)
    st = Store(tmp_path / "ingest.sqlite")
    init_cursors(st, {ALERT, UP}, time.time())
    st.commit_batch([_msg("a", 1, 10), _msg("a", 20, 3)])
    assert st.note_oldest("a", "up", 20) == (11, 19)  # the node says 11..19 are gone: skipped
    nid = st.nids["a"]
    chunks, _ = step(st, {}, ([], []), (ALERT, UP), 100)
    assert _seqs(chunks, False) == list(range(1, 11)) + [20, 21, 22] and chunks[0].hi == 22
    # stored after the feeder read past it but before it wrote its cursor: still a late fill
    assert st.commit_batch([_msg("a", 15, 1)]).results[0].status == "stored"
    chunks, _ = step(st, {(nid, UP): 22}, ([], []), (ALERT, UP), 100)
    assert st.relay_cursor[(nid, UP)] == 22
    assert _seqs(chunks, True) == [15] and _seqs(chunks, False) == [] and chunks[0].hi == 0
    st.close()  # a kill -9 before the hand-over: the late fill was committed with the reading itself

    st = Store(tmp_path / "ingest.sqlite")
    assert init_cursors(st, {ALERT, UP}, time.time())["behind"] == 1
    st.commit_batch([_msg("a", 16, 1)])  # another fill, below the durable cursor
    chunks, _ = step(st, {}, ([], []), (ALERT, UP), 100)
    assert _seqs(chunks, True) == [15, 16]
    assert chunks[0].rows[0][1:4] == ("t", "Cel", 15.0)
    stats = maintain(st, cfg.tiers, cfg.ingest, time.time() + 10 * cfg.tiers.compress_after_s)
    assert stats["compressed_rows"] == 13 and _raw(st) == [15, 16]  # not handed over yet: raw
    chunks, _ = step(st, {}, ([], []), (ALERT, UP), 100, drained=[(nid, UP, 15), (nid, UP, 16)])
    assert chunks == [] and st.con.execute("SELECT COUNT(*) FROM relay_backfill").fetchone() == (0,)
    stats = maintain(st, cfg.tiers, cfg.ingest, time.time() + 10 * cfg.tiers.compress_after_s)
    assert stats["compressed_rows"] == 2 and _raw(st) == []
    st.close()


def test_only_fed_lanes_below_what_the_feeder_read_get_late_fills(tmp_path):
    st = Store(tmp_path / "ingest.sqlite")
    init_cursors(st, {ALERT}, time.time())  # raw readings are not forwarded: the up lane is not fed
    st.commit_batch([_msg("a", 1, 2), _msg("a", 5, 1), _msg("a", 1, 1, "alert"), _msg("a", 5, 1, "alert")])
    st.note_oldest("a", "up", 5)
    st.note_oldest("a", "alert", 5)
    st.commit_batch([_msg("a", 3, 1), _msg("a", 3, 1, "alert")])  # below contig, above the unread cursor
    assert st.con.execute("SELECT COUNT(*) FROM relay_backfill").fetchone() == (0,)
    chunks, _ = step(st, {}, ([], []), (ALERT,), 100)
    assert _seqs(chunks, False) == [1, 3, 5]  # the cursor scan still finds it
    st.commit_batch([_msg("a", 4, 1), _msg("a", 4, 1, "alert")])
    assert st.con.execute("SELECT lane, seq FROM relay_backfill").fetchall() == [(ALERT, 4)]
    init_cursors(st, {UP}, time.time())  # alerts no longer fed: their late fills are forgotten
    assert st.con.execute("SELECT COUNT(*) FROM relay_backfill").fetchone() == (0,)
    st.close()
