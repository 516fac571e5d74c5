"""Store.note_oldest: a node's reported oldest pending seq skips the gap below it, even on first contact."""

import time

from fogline.gateway.store.core import Store
from fogline.gateway.ingest.validate import Message, Reading


def _msg(node: str, first: int, n: int) -> Message:
    now = time.time()
    return Message(node, "up", first, [Reading(node, "up", first + i, "t", "Cel", 20.0, now) for i in range(n)])


def test_first_contact_state_creates_the_lane_so_acks_do_not_stall(tmp_path):
    # The node dropped seqs 1..9 by policy (or another gateway acked them) before this gateway stored any.
    st = Store(tmp_path / "ingest.sqlite")
    assert st.note_oldest("fresh", "up", 10) == (1, 9)
    assert st.ack_state("fresh") == {"up": 9}
    res = st.commit_batch([_msg("fresh", 10, 3)])
    assert res.acks["fresh"] == {"up": 12}
    gaps = st.con.execute("SELECT lo, hi, why FROM gaps").fetchall()
    assert gaps == [(1, 9, "node reported oldest pending seq 10")]
    st.con.close()
    again = Store(tmp_path / "ingest.sqlite")  # durable: a restart keeps the skip
    assert again.ack_state("fresh") == {"up": 12}
    again.con.close()


def test_nothing_to_skip_leaves_no_trace(tmp_path):
    st = Store(tmp_path / "ingest.sqlite")
    assert st.note_oldest("n", "up", 1) is None  # nothing pending below seq 1
    assert st.note_oldest("n", "bogus", 5) is None
    assert st.ack_state("n") == {} and "n" not in st.nids
    st.commit_batch([_msg("n", 1, 4)])
    assert st.note_oldest("n", "up", 5) is None and st.note_oldest("n", "up", 3) is None
    assert st.ack_state("n") == {"up": 4}
    assert st.con.execute("SELECT COUNT(*) FROM gaps").fetchone()[0] == 0
    st.con.close()
