"""Taking a node over from another gateway: ack-cursor adoption and the messages held meanwhile.

A non-primary gateway keeps each node's latest up/alert messages in memory (bounded, never acked:
the node still has them in flash). What any gateway acked is a *hint*: seen in its acks on the site
broker, its health, or the node's own state ("oldest"). On takeover the new primary moves its ack
cursor over the hinted range (recorded as a gap whose reason starts with "cluster:"; the readings are
durable at the other gateway) and replays the held messages above it, so the node gets its next ack
without waiting for its own resend timeout.
"""

from __future__ import annotations

import collections
import time
from typing import Any

LANES = ("alert", "up")
HOLD_NODES_MAX = 10000  # nodes with held messages (each at most hold_max messages)


def adopt_cursors(store: Any, plan: list[tuple[str, str, int, int]], why: str) -> list[tuple[str, str, int, int]]:
    """Store thread: move (node, lane) ack cursors up to what another gateway acked; the skipped ranges.

    plan: (node, lane, acked seq, node epoch of that seq). One transaction (one fsync) for the whole
    plan: a takeover of many nodes must not cost one each."""
    from fogline.gateway.store.core import LANE_ID, LaneState
    todo = []
    for node, lane, upto, ep in plan:
        nid = store.nids.get(node)
        key = (nid, LANE_ID[lane])
        st = store.lanes.get(key) if nid is not None else None
        if upto <= 0:
            continue
        if nid is not None and store.epochs.lanes.get(key):
            cur, base = store.epochs.current(key)
            if cur != ep:
                continue  # acked in another epoch than the lane's here: the node's next pack sorts it out
            upto += base
        elif ep and st is not None and (st.contig or st.above):
            continue  # legacy history here, epoch elsewhere: a reset, placed by the node's next pack
        if st is None or upto > st.contig:
            todo.append((node, LANE_ID[lane], lane, upto, st, ep))
    if not todo:
        return []
    saved = dict(store.nids), dict(store.names)
    out, done = [], []
    etx = store.epochs.begin()
    store.con.execute("BEGIN IMMEDIATE")
    try:
        for node, li, lane, upto, st, ep in todo:
            nid = store._nid(node)
            work = st.copy() if st is not None else LaneState()
            lo = work.contig + 1
            etx.adopt(store.con, (nid, li), ep, time.time())
            store._skip(nid, li, work, upto, why % upto)
            done.append(((nid, li), work))
            out.append((node, lane, lo, upto))
        store.con.execute("COMMIT")
    except BaseException:
        store.con.execute("ROLLBACK")
        store.nids, store.names = saved
        raise
    store.lanes.update(done)
    store.epochs.apply(etx)
    return out


class Held:
    """Per node, the latest messages a non-primary saw (bounded); hints: (node, lane) -> acked elsewhere."""

    def __init__(self, per_node: int):
        self.per_node = per_node
        self.q: dict[str, collections.deque[Any]] = {}
        self.hints: dict[tuple[str, str], int] = {}
        self.epochs: dict[str, int] = {}  # node -> the node epoch (shared/epoch.py) its hints are in
        self.dropped = 0

    def acked_elsewhere(self, m: Any) -> bool:
        """Every reading of m was acked by some gateway (e.g. a persistent session's backlog after a restart)."""
        return (bool(m.readings) and m.epoch == self.epochs.get(m.node, 0)
                and m.first_seq + len(m.readings) - 1 <= self.hints.get((m.node, m.lane), 0))

    def hold(self, m: Any) -> None:
        if m.lane not in LANES or not self.per_node or self.acked_elsewhere(m):
            return
        q = self.q.get(m.node)
        if q is None:
            if len(self.q) >= HOLD_NODES_MAX:  # thousands of invented node ids must not grow it
                self.dropped += 1
                return
            q = self.q[m.node] = collections.deque(maxlen=self.per_node)
        if len(q) == q.maxlen:
            self.dropped += 1  # the node still has it in flash and re-sends it
        q.append(m)

    def hint(self, node: str, lane: str, n: int, epoch: int = 0) -> bool:
        """Record that a gateway acked node's lane up to n (seqs of epoch); True if that is news."""
        if epoch != self.epochs.get(node, 0):  # the node's seqs restarted: hints of its old epoch mean nothing
            self.epochs[node] = epoch
            for ln in LANES:
                self.hints.pop((node, ln), None)
        if n <= self.hints.get((node, lane), 0):
            return False
        self.hints[(node, lane)] = n
        q = self.q.get(node)
        if q:  # what another gateway acked need not be replayed
            keep = [m for m in q if not self.acked_elsewhere(m)]
            if len(keep) != len(q):
                q.clear()
                q.extend(keep)
        return True

    def take(self, node: str) -> list[Any]:
        """The node's held messages still worth replaying, alerts first, in seq order (forgotten here)."""
        return sorted((m for m in self.q.pop(node, ()) if not self.acked_elsewhere(m)),
                      key=lambda m: (m.lane != "alert", m.first_seq))

    def count(self) -> int:
        return sum(len(q) for q in self.q.values())
