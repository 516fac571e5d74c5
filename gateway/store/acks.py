"""What the store tells nodes: the ack cursor of each lane, in the node's seqs of its newest flash epoch."""

from __future__ import annotations

from typing import Any

from fogline.gateway.store.base import ACK_LANES, LANE_ID, LaneState


class AckCursorsMixin:
    """Mixin of Store (reads its in-memory lane states on the store's thread)."""

    nids: dict[str, int]
    names: dict[int, str]
    lanes: dict[tuple[int, int], LaneState]
    epochs: Any

    def ack_state(self, node: str) -> dict[str, int]:
        """{"up": n, "alert": m(, "e": epoch)} in the node's seqs of its newest epoch, lanes with something durable."""
        nid = self.nids.get(node)
        out: dict[str, int] = {}
        if nid is None:
            return out
        newest = self.epochs.node_epoch(nid)
        for lane in ACK_LANES:
            key = (nid, LANE_ID[lane])
            st = self.lanes.get(key)
            ep, base = self.epochs.current(key)
            if st is not None and st.contig > base and ep == newest:
                out[lane] = st.contig - base
        if out and newest:
            out["e"] = newest
        return out

    def ack_states(self) -> dict[str, dict[str, int]]:
        """ack_state of every node with something durable on an acked lane."""
        acked = {LANE_ID[ln] for ln in ACK_LANES}
        nodes = {self.names[nid] for nid, li in self.lanes if li in acked and nid in self.names}
        return {n: a for n in sorted(nodes) if (a := self.ack_state(n))}
