"""Node epochs at the gateway: every (node, lane, epoch) maps its node seqs into the lane's one stored seq space.

A node whose flash log starts over restarts its seqs at 1 under a new epoch (shared/epoch.py). The
store keeps one seq space per (node, lane): seq s of epoch k is stored as base_k + s, where base_k is the
highest seq stored before epoch k was first heard. De-duplication, cursors, gap skipping, the relay
feed and queries keep working on stored seqs; only acks (and the node's state "oldest") are translated
back into the node's own seqs of its current epoch. Legacy nodes (epoch 0) have base 0: nothing changes.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, replace

from fogline.gateway.ingest.readings import PackReadings
from fogline.gateway.ingest.validate import Message, Reading

SCHEMA = """
CREATE TABLE IF NOT EXISTS node_epochs(nid INT NOT NULL, lane INT NOT NULL, epoch INT NOT NULL, base INT NOT NULL,
  since REAL NOT NULL, PRIMARY KEY(nid, lane, epoch));
"""
MAX_EPOCHS = 64  # per (node, lane): a node re-flashed this often is refused (stale_epoch), not tracked forever

Key = tuple[int, int]


@dataclass
class EpochEvent:
    """A lane heard under a new epoch: first contact (old is None) or a reset of the node's seqs."""
    nid: int
    lane: int
    old: int | None
    new: int
    base: int                     # stored seq just below the new epoch's seq 1
    skipped: int = 0              # seqs of the old epoch never received (holes the node erased)


class EpochRefused(Exception):
    """A message of an epoch the lane has moved past, beyond that epoch's seq range (or too many epochs)."""


class Epochs:
    """Per (nid, lane): the epochs heard, oldest first, as [epoch, base]; an empty list is legacy epoch 0."""

    def __init__(self, con: sqlite3.Connection):
        con.executescript(SCHEMA)
        self.lanes: dict[Key, list[tuple[int, int]]] = {}
        self.newest: dict[int, int] = {}  # nid -> epoch adopted most recently on any lane
        for nid, lane, ep, base in con.execute("SELECT nid, lane, epoch, base FROM node_epochs ORDER BY rowid"):
            self.lanes.setdefault((nid, lane), []).append((ep, base))
            self.newest[nid] = ep

    def current(self, key: Key) -> tuple[int, int]:
        """(epoch, base) the lane is in now."""
        lst = self.lanes.get(key)
        return lst[-1] if lst else (0, 0)

    def node_epoch(self, nid: int) -> int:
        """The node's newest epoch (0 for a legacy node)."""
        return self.newest.get(nid, 0)

    def begin(self) -> "EpochTxn":
        """A batch's view: changes become visible to current() only after apply()."""
        return EpochTxn(self)

    def apply(self, txn: "EpochTxn") -> None:
        self.lanes.update(txn.lanes)
        self.newest.update(txn.newest)


class EpochTxn:
    """Epoch changes of one store transaction (rows written with it, memory updated after COMMIT)."""

    def __init__(self, eps: Epochs):
        self.eps = eps
        self.lanes: dict[Key, list[tuple[int, int]]] = {}
        self.newest: dict[int, int] = {}
        self.events: list[EpochEvent] = []

    def _list(self, key: Key) -> list[tuple[int, int]]:
        lst = self.lanes.get(key)
        if lst is None:
            lst = self.lanes[key] = list(self.eps.lanes.get(key, ()))
        return lst

    def _add(self, con: sqlite3.Connection, key: Key, epoch: int, base: int, now: float) -> None:
        lst = self._list(key)
        lst.append((epoch, base))
        self.newest[key[0]] = epoch
        con.execute("INSERT OR REPLACE INTO node_epochs(nid, lane, epoch, base, since) VALUES (?,?,?,?,?)",
                    (key[0], key[1], epoch, base, now))

    def place(self, con: sqlite3.Connection, key: Key, epoch: int, top: int, empty: bool,
              now: float) -> tuple[int, int | None]:
        """(base, limit) for a message of `epoch` on lane `key`; limit = last stored seq that epoch may use.

        top: the highest seq stored (or pending) on the lane; empty: nothing stored on it yet.
        A new epoch on a lane with history is a reset: its base is `top` (recorded as an event)."""
        lst = self._list(key)
        for i, (ep, base) in enumerate(lst):
            if ep == epoch:
                return base, (lst[i + 1][1] if i + 1 < len(lst) else None)
        if not lst:
            if epoch == 0:
                return 0, None
            if empty:
                self._add(con, key, epoch, 0, now)
                self.events.append(EpochEvent(key[0], key[1], None, epoch, 0))
                return 0, None
            self._add(con, key, 0, 0, now)  # the legacy history before this node's first epoch
        if len(lst) >= MAX_EPOCHS:
            raise EpochRefused(f"lane has {len(lst)} epochs already (limit {MAX_EPOCHS})")
        old = lst[-1][0]
        self._add(con, key, epoch, top, now)
        self.events.append(EpochEvent(key[0], key[1], old, epoch, top))
        return top, None

    def adopt(self, con: sqlite3.Connection, key: Key, epoch: int, now: float) -> None:
        """A lane first heard of through the node's state: it starts in `epoch` at base 0."""
        if epoch and not self._list(key):
            self._add(con, key, epoch, 0, now)



def place_message(txn: EpochTxn, con: sqlite3.Connection, m: Message, key: Key, contig: int, above: set[int],
                  now: float) -> Message:
    """m with its seqs in the lane's stored seq space (a copy when shifted); EpochRefused past its epoch's range."""
    top = max(contig, max(above)) if above else contig
    base, limit = txn.place(con, key, m.epoch, top, top == 0, now)
    rs = m.readings
    last = m.first_seq + max(m.records, len(rs)) - 1
    if limit is not None and base + last > limit:
        raise EpochRefused(f"epoch {m.epoch} ended at node seq {limit - base}; this pack reaches {last}")
    if not base:
        return m
    moved = rs.shifted(base) if isinstance(rs, PackReadings) else [
        Reading(r.node, r.lane, r.seq + base, r.metric, r.unit, r.value, r.t) for r in rs]
    return replace(m, first_seq=m.first_seq + base, readings=moved,
                   bad=[(s + base, why, detail) for s, why, detail in m.bad])
