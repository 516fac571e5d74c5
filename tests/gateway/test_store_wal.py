"""[store] wal_checkpoint_pages: how long the store's WAL grows before its pages are copied into the database."""

import os
import time

import pytest

from fogline.gateway import config
from fogline.gateway.ingest.validate import Message, Reading
from fogline.gateway.store.core import Store

NODES, PER_COMMIT, COMMITS = 20, 50, 30


def _write(st: Store) -> int:
    """COMMITS group commits of PER_COMMIT readings from each of NODES nodes; the largest WAL size seen."""
    now = time.time()
    wal = st.path.with_name(st.path.name + "-wal")
    biggest = 0
    for k in range(COMMITS):
        first = 1 + k * PER_COMMIT
        msgs = [Message(f"n{i}", "up", first, [Reading(f"n{i}", "up", first + j, "t", "Cel", float(first + j), now)
                                               for j in range(PER_COMMIT)]) for i in range(NODES)]
        res = st.commit_batch(msgs, now=now)
        assert res.acks[f"n{NODES - 1}"] == {"up": first + PER_COMMIT - 1}
        biggest = max(biggest, os.path.getsize(wal))
    return biggest


def _reopened_counts(path) -> tuple[int, dict[str, int]]:
    st = Store(path)
    try:
        return st.con.execute("SELECT COUNT(*) FROM readings").fetchone()[0], st.ack_state("n0")
    finally:
        st.close()


def test_a_small_checkpoint_interval_bounds_the_wal_and_loses_nothing(tmp_path):
    st = Store(tmp_path / "small.sqlite", checkpoint_pages=64)
    page = st.con.execute("PRAGMA page_size").fetchone()[0]
    assert st.con.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 64
    biggest = _write(st)
    st.close()
    # one commit of 1000 readings writes well under 200 pages: the WAL restarts after each checkpoint
    assert biggest <= (64 + 200) * (page + 24) + 32
    assert _reopened_counts(tmp_path / "small.sqlite") == (NODES * PER_COMMIT * COMMITS, {"up": PER_COMMIT * COMMITS})


def test_the_default_interval_keeps_the_pages_of_many_commits_in_the_wal(tmp_path):
    st = Store(tmp_path / "default.sqlite")
    page = st.con.execute("PRAGMA page_size").fetchone()[0]
    assert st.con.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 10000
    biggest = _write(st)
    st.close()
    # the same writes under 10000 pages are never checkpointed: the WAL holds them all
    assert biggest > (64 + 200) * (page + 24) + 32
    assert _reopened_counts(tmp_path / "default.sqlite") == (NODES * PER_COMMIT * COMMITS,
                                                             {"up": PER_COMMIT * COMMITS})


def test_the_config_refuses_a_checkpoint_interval_below_one_page():
    assert config.from_dict({"store": {"wal_checkpoint_pages": 500}}).store.wal_checkpoint_pages == 500
    with pytest.raises(config.ConfigError, match=r"^store\.wal_checkpoint_pages: must be >= 1$"):
        config.from_dict({"store": {"wal_checkpoint_pages": 0}})
