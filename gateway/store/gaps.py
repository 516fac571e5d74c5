"""What the store does for seqs it did not store: skipped gaps, refused uplinks, refused records."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from fogline.gateway.store.base import ACK_LANES, LANE_ID, DeadLetter, LaneState

if TYPE_CHECKING:
    from fogline.gateway.store.core import MsgResult
    from fogline.gateway.ingest.validate import Message


class GapsMixin:
    """Store methods (mixin of fogline.gateway.store.core.Store) for the seqs between the cursor and what is stored."""

    def note_oldest(self, node: str, lane: str, oldest: int, epoch: int = 0) -> tuple[int, int] | None:
        """Node says its oldest pending seq of epoch in lane is `oldest`: skip a gap below it. Returns the skipped range."""
        li = LANE_ID.get(lane)
        if li is None or oldest < 1:
            return None
        nid = self.nids.get(node)
        st = self.lanes.get((nid, li)) if nid is not None else None
        fresh = st is None or (st.contig == 0 and not st.above)
        if nid is not None and self.epochs.lanes.get((nid, li)):
            ep, base = self.epochs.current((nid, li))
            if ep != epoch:
                return None  # about another epoch than the lane's (its first pack will say)
            oldest += base
        elif epoch and not fresh:
            return None  # a legacy lane's node now has an epoch: a reset, placed by its first pack
        if oldest <= (st.contig if st is not None else 0) + 1:
            return None
        # A lane never stored here yet (its first readings were dropped by the node's policy, or acked by
        # another gateway) is created now: otherwise acks would wait for the next state or gap_skip_s.
        new_nid, new_st = nid is None, st is None
        self.con.execute("BEGIN IMMEDIATE")
        try:
            if nid is None:
                nid = self._nid(node)
            if st is None:
                st = self.lanes[(nid, li)] = LaneState()
            lo = st.contig + 1
            txn = self.epochs.begin()
            txn.adopt(self.con, (nid, li), epoch, time.time())
            self._skip(nid, li, st, oldest - 1, "node reported oldest pending seq %d" % oldest)
            self.con.execute("COMMIT")
            self.epochs.apply(txn)
        except BaseException:
            self.con.execute("ROLLBACK")
            if new_st and nid is not None:
                self.lanes.pop((nid, li), None)
            if new_nid and nid is not None:
                self.nids.pop(node, None)
                self.names.pop(nid, None)
            raise
        return lo, oldest - 1

    def _skip(self, nid: int, li: int, st: LaneState, upto: int, why: str) -> None:
        self.con.execute("INSERT INTO gaps(nid, lane, lo, hi, at, why) VALUES (?,?,?,?,?,?)",
                         (nid, li, st.contig + 1, upto, time.time(), why))
        st.contig = upto
        st.above = {s for s in st.above if s > upto}
        self._advance(st)
        self.con.execute("INSERT INTO lanes(nid, lane, contig, floor) VALUES (?,?,?,?) "
                         "ON CONFLICT(nid, lane) DO UPDATE SET contig=excluded.contig",
                         (nid, li, st.contig, st.floor))

    def _note_refused(self, d: DeadLetter, work: dict[tuple[int, int], LaneState], now: float) -> None:
        """A refused uplink may hold seqs the node still has: no gap below them is skipped for gap_skip_s."""
        li = LANE_ID.get(d.lane) if d.lane in ACK_LANES else None
        nid = self.nids.get(d.source) if li is not None else None
        if nid is None or li is None:
            return
        key = (nid, li)
        st = work.get(key)
        if st is None:
            base = self.lanes.get(key)
            if base is None:
                return
            st = work[key] = base.copy()
        # d.seqs are the node's own seqs: in the lane's stored seq space they sit above its epoch's base
        if d.seqs is None or d.seqs[1] + self.epochs.current(key)[1] > st.contig:
            st.refused_at = now

    def _bad_records(self, m: Message, nid: int, li: int, st: LaneState, res: MsgResult,
                     dead_rows: list[DeadLetter], dead_seqs: list[tuple[int, int, int, str]]) -> None:
        """Refused records of a message: dead-lettered once each, their seqs covered for the ack cursor."""
        ble = li == LANE_ID["ble"]  # gateway-numbered: nothing to cover, nothing re-sent
        for seq, reason, detail in m.bad:
            if ble:
                pass
            elif seq <= st.contig or seq in st.above:
                continue  # a resend: already dead-lettered (or a reading is stored under that seq)
            else:
                st.above.add(seq)
                dead_seqs.append((nid, li, seq, reason))
            res.dead.append((seq, reason))
            dead_rows.append(DeadLetter(reason, f"seq {seq}: {detail}", m.topic, m.node, m.link,
                                        m.raw[:4096], m.rx))
        self._advance(st)
