"""Store-fed relay: durable readings past a per-(node, lane) cursor -> outbox, then the cursor moves.

The gateway store is the source of truth. A feeder task wakes on commits (the gateway's
on_alert/on_readings hooks are only a wake-up signal) and at start, reads readings with
seq > cursor (up to the lane's contiguous ack cursor) on the store thread, hands them to
the outbox in one durable transaction (`Relay.submit_many`) and only then advances the
cursor. A kill -9 between the ingest commit and the outbox write therefore loses nothing:
the next start catches up from the cursor. A crash after the outbox write but before the
cursor write re-submits those readings; the cloud absorbs them by (node, lane, seq).
The cursor passes seqs skipped as gaps; a reading of such a gap stored later is a late fill,
recorded by the store in its commit and fed from there (fogline.gateway.relay.backfill).

Bodies (CBOR maps, in the relay envelope):
    alert lane: {"node", "seq", "records": [[metric, unit, value, t]]}      one alert reading each
    raw lane:   {"node", "lane": "up", "first_seq", "records": [[metric, unit, value, t], ...]}
                (record i has seq first_seq + i; at most `batch` records; only with forward_readings)

Store-thread functions (`init_cursors`, `step`) take the Store first and run through
`gw.run_store`, never on the event loop. A lane fed for the first time on a store starts at
what is stored then (no replay of history); a lane no longer fed forgets its cursors.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from fogline.gateway.relay import backfill as relay_backfill
from fogline.gateway.store.core import LANE_ID
from fogline.gateway.store.tiers import ensure_pending, mark_acked, note_pending
from fogline.gateway.aio import wait_event

log = logging.getLogger(__name__)

ALERT, UP = LANE_ID["alert"], LANE_ID["up"]


@dataclass
class Chunk:
    """Readings of one (node, lane) past its cursor; `hi` is the cursor once all of them are accepted."""
    nid: int
    lane: int
    node: str
    hi: int
    rows: list[tuple[int, str, str | None, float, float]] = field(default_factory=list)  # seq, metric, unit, v, t
    late: bool = False  # late fills below the cursor (fogline.gateway.relay.backfill): dropped once accepted, no advance


# ---------------------------------------------------------------- store thread
def init_cursors(store: Any, lanes: set[int], now: float) -> dict[str, int]:
    """Load cursors; a newly fed lane starts at each node's stored contig, a lane no longer fed is forgotten."""
    con = store.con
    con.execute("BEGIN IMMEDIATE")
    try:
        have = {li for (li,) in con.execute("SELECT lane FROM relay_lanes")}
        for li in sorted(lanes - have):
            con.execute("INSERT INTO relay_cursor(nid, lane, seq) SELECT nid, lane, contig FROM lanes WHERE lane=? "
                        "ON CONFLICT(nid, lane) DO UPDATE SET seq=MAX(seq, excluded.seq)", (li,))
            con.execute("INSERT INTO relay_lanes(lane, since) VALUES (?, ?)", (li, now))
        for li in sorted(have - lanes):
            con.execute("DELETE FROM relay_cursor WHERE lane=?", (li,))
            con.execute("DELETE FROM relay_backfill WHERE lane=?", (li,))
            con.execute("DELETE FROM relay_lanes WHERE lane=?", (li,))
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    store.relay_cursor = {(nid, li): seq for nid, li, seq in con.execute("SELECT nid, lane, seq FROM relay_cursor")}
    store.relay_lanes = set(lanes)
    store.relay_read = {}
    behind = 0
    for (nid, li), st in store.lanes.items():
        if li in lanes:
            behind += max(0, st.contig - store.relay_cursor.get((nid, li), 0))
    behind += con.execute("SELECT COUNT(*) FROM relay_backfill").fetchone()[0]
    return {"new_lanes": len(lanes - have), "dropped_lanes": len(have - lanes), "behind": behind}


Pending = tuple[int, str, str, float, float]  # outbox row id, node, metric, first t, last t


def step(store: Any, advance: dict[tuple[int, int], int], marks: tuple[list[Pending], list[int]],
         lanes: tuple[int, ...], limit: int, skip: frozenset[tuple[int, int]] = frozenset(),
         drained: list[relay_backfill.Key] | None = None) -> tuple[list[Chunk], int]:
    """Persist cursor advances, outbox rows holding series data (marks[0]), the rows the cloud
    acknowledged (marks[1]) and the late fills handed over (drained), then read up to `limit`
    late fills and readings past the cursors (of every fed (nid, lane) not in `skip`).

    Returns (chunks, compacted) where compacted counts seqs found already packed into blocks
    below a cursor (only after running without the feed); they are skipped, not relayed.
    """
    con = store.con
    cur = store.relay_cursor
    pending, acked = marks
    if advance or pending or acked or drained:
        # A cursor lost in a power cut only means re-sending (the cloud de-duplicates), so these
        # writes skip the fsync; the next FULL ingest commit makes them durable with it.
        con.execute("PRAGMA synchronous=NORMAL")
        con.execute("BEGIN IMMEDIATE")
        try:
            for key, seq in advance.items():
                if seq > cur.get(key, 0):
                    con.execute("INSERT INTO relay_cursor(nid, lane, seq) VALUES (?,?,?) ON CONFLICT(nid, lane) "
                                "DO UPDATE SET seq=MAX(seq, excluded.seq)", (key[0], key[1], seq))
            if pending or acked:
                ensure_pending(con)
            for rid, node, metric, t0, t1 in pending:  # before the acks: a row may be acked already
                note_pending(store, rid, node, metric, t0, t1)
            mark_acked(store, acked)
            relay_backfill.drop(con, drained or [])
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        finally:
            con.execute(f"PRAGMA synchronous={store.synchronous}")
        for key, seq in advance.items():
            if seq > cur.get(key, 0):
                cur[key] = seq
    chunks: list[Chunk] = []
    compacted = 0
    left = limit
    read = store.relay_read
    for li in lanes:  # alerts first; in a lane, late fills first (they are the oldest)
        for (nid, lane), rows in relay_backfill.read(con, li, skip, left).items():
            chunks.append(Chunk(nid, lane, store.names.get(nid, str(nid)), 0, rows, late=True))
            left -= len(rows)
        for (nid, lane), st in list(store.lanes.items()):
            if lane != li or (nid, lane) in skip:
                continue
            c = cur.get((nid, lane), 0)
            if st.contig <= c:
                continue
            if left <= 0:
                return chunks, compacted
            if st.floor > c:  # packed into blocks while nothing fed this lane: cannot be read back
                compacted += st.floor - c
                c = cur[(nid, lane)] = st.floor
                if st.contig <= c:
                    continue
            rows = con.execute(
                "SELECT r.seq, s.metric, s.unit, r.v, r.t FROM readings r JOIN series s ON s.sid=r.sid "
                "WHERE r.nid=? AND r.lane=? AND r.seq > ? AND r.seq <= ? ORDER BY r.seq LIMIT ?",
                (nid, lane, c, st.contig, left)).fetchall()
            # all of (c, contig] read: the cursor may pass seqs skipped as gaps too
            hi = st.contig if len(rows) < left else rows[-1][0]
            if hi > read.get((nid, lane), 0):  # a seq stored at or below it from now on is a late fill
                read[(nid, lane)] = hi
            chunks.append(Chunk(nid, lane, store.names.get(nid, str(nid)), hi, rows))
            left -= len(rows)
    return chunks, compacted


# ---------------------------------------------------------------- event loop
class RelayFeeder:
    """The feeder task of one gateway: store -> relay outbox, cursor after the durable hand-over."""

    def __init__(self, relay: Any, services: Any, *, forward_readings: bool = False, batch: int = 100,
                 read_limit: int = 2000, retry_s: float = 1.0):
        from fogline.gateway import services as services_mod
        self.relay = relay
        self.svc = services_mod.of(services)
        self.forward_readings = forward_readings
        self.batch = max(1, int(batch))
        self.read_limit = max(self.batch, read_limit)
        self.retry_s = retry_s
        self.lanes: tuple[int, ...] = (ALERT, UP) if forward_readings else (ALERT,)
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._stopping = False
        self._advance: dict[tuple[int, int], int] = {}
        self._held: set[tuple[int, int]] = set()  # up lanes whose relay lease is elsewhere (re-checked)
        self._held_at = 0.0
        self._pending: list[Pending] = []  # outbox rows carrying series data, to persist with the next step
        self._acked: list[int] = []         # outbox rows the cloud acknowledged, likewise
        self._drained: list[relay_backfill.Key] = []  # late fills the outbox accepted, likewise
        self.counters = {"steps": 0, "alerts": 0, "raw_messages": 0, "readings": 0, "refused": 0,
                         "not_leased": 0, "compacted_skipped": 0, "late_fills": 0, "errors": 0}

    async def start(self) -> None:
        """Load/initialise the cursors (store thread), hook the wake-ups, catch up from the cursors."""
        info = await self.svc.run_store(init_cursors, set(self.lanes), time.time())
        log.info("event=relay_feed_started lanes=%s behind=%d new_lanes=%d", ",".join(
            "alert" if li == ALERT else "up" for li in self.lanes), info["behind"], info["new_lanes"])
        self.svc.on_alert(self.kick)
        if self.forward_readings:
            self.svc.on_readings(self.kick)
        self._wake.set()
        self._task = asyncio.create_task(self._run(), name="relay-feed")

    def kick(self, *_: Any) -> None:
        """Wake the feeder (a hook: something new is durable in the store)."""
        self._wake.set()

    def note_submitted(self, row_id: int, node: str, metric: str, t0: float, t1: float) -> None:
        """Outbox row row_id carries node/metric data in [t0, t1]; retention waits for its cloud ack."""
        self._pending.append((row_id, node, metric, t0, t1))
        self._wake.set()

    def note_acked(self, row_ids: list[int]) -> None:
        """Relay hook: the cloud acknowledged these outbox rows (retention may prune what they carry)."""
        self._acked.extend(row_ids)
        self._wake.set()

    async def stop(self, timeout: float = 10.0) -> None:
        """Hand over what the final commits stored, write the cursors, end the task."""
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, timeout)
            except asyncio.TimeoutError:
                log.error("event=relay_feed_stop_timeout")

    async def _run(self) -> None:
        retry = False
        while True:
            if retry or not (self._advance or self._pending or self._acked or self._drained):
                if self._stopping and not self._wake.is_set():
                    break
                await wait_event(self._wake, self.retry_s if retry or self._held else None)
            self._wake.clear()
            if self._held and time.monotonic() - self._held_at >= self.retry_s:
                self._held.clear()  # ask the lease again
            adv, self._advance = self._advance, {}
            marks = (self._pending, self._acked)
            drained, self._pending, self._acked, self._drained = self._drained, [], [], []
            try:
                chunks, compacted = await self.svc.run_store(step, adv, marks, self.lanes, self.read_limit,
                                                            frozenset(self._held), drained)
            except Exception:
                self.counters["errors"] += 1
                log.exception("event=relay_feed_step_failed")
                for k, v in adv.items():  # try the cursor write again with the next step
                    self._advance[k] = max(v, self._advance.get(k, 0))
                self._pending[:0], self._acked[:0] = marks
                self._drained[:0] = drained
                retry = True
                continue
            self.counters["steps"] += 1
            if compacted:
                self.counters["compacted_skipped"] += compacted
                log.warning("event=relay_feed_skipped_compacted readings=%d", compacted)
            try:
                retry = self._hand_over(chunks) if chunks else False
            except Exception:  # e.g. the outbox disk: nothing advanced, the same rows are read again
                self.counters["errors"] += 1
                log.exception("event=relay_feed_hand_over_failed")
                retry = True
            if chunks and not retry:
                self._wake.set()  # write the cursors and look for more at once
            if self._stopping and not chunks and not (self._advance or self._pending or self._acked or self._drained):
                break
        if self._advance or self._pending or self._acked or self._drained:  # stopped while the outbox refused
            try:  # keep what was accepted
                await self.svc.run_store(step, self._advance, (self._pending, self._acked), self.lanes, 0,
                                        frozenset(), self._drained)
                self._advance, self._pending, self._acked, self._drained = {}, [], [], []
            except Exception:
                log.exception("event=relay_feed_final_cursor_write_failed")

    def _hand_over(self, chunks: list[Chunk]) -> bool:
        """Submit the chunks in one outbox transaction; queue cursor advances. True if some were refused."""
        items: list[tuple[str, Any, bool]] = []
        spans: list[tuple[Chunk, int, int]] = []  # chunk, index of its first item, item count
        may = self.svc.may_relay
        for ch in chunks:
            if ch.lane != ALERT and not may(ch.node):
                # another gateway of the cluster holds this node's relay lease; keep the cursor, ask again later
                # (alerts always go: the cloud de-duplicates them by (node, seq))
                if not self._held:
                    self._held_at = time.monotonic()
                self._held.add((ch.nid, ch.lane))
                self.counters["not_leased"] += 1
                continue
            start = len(items)
            if ch.lane == ALERT:
                for seq, metric, unit, v, t in ch.rows:
                    items.append(("alert", {"node": ch.node, "seq": seq, "records": [[metric, unit, v, t]]}, True))
            else:
                for run in _runs(ch.rows, self.batch):
                    items.append(("raw", {"node": ch.node, "lane": "up", "first_seq": run[0][0],
                                          "records": [[m, u, v, t] for _, m, u, v, t in run]}, False))
            spans.append((ch, start, len(items) - start))
        ids = self.relay.submit_many(items) if items else []
        refused = False
        for ch, start, n in spans:
            key = (ch.nid, ch.lane)
            upto = ch.hi
            for k in range(start, start + n):
                if ids[k] is None:  # a late fill refused stays in relay_backfill: read and offered again later
                    # not past a refused row: it is read and offered again later (later accepted rows
                    # of this chunk go again too; the cloud de-duplicates them)
                    upto = _first_seq(items[k]) - 1
                    refused = True
                    self.counters["refused"] += sum(1 for j in range(k, start + n) if ids[j] is None)
                    break
                body = items[k][1]
                if ch.late:
                    first = _first_seq(items[k])
                    got = len(body["records"]) if ch.lane != ALERT else 1
                    self._drained.extend((ch.nid, ch.lane, first + i) for i in range(got))
                    self.counters["late_fills"] += got
                if ch.lane == ALERT:
                    self.counters["alerts"] += 1
                else:
                    self.counters["raw_messages"] += 1
                    self.counters["readings"] += len(body["records"])
                    span: dict[str, list[float]] = {}
                    for m, _u, _v, t in body["records"]:
                        sp = span.setdefault(m, [t, t])
                        sp[0], sp[1] = min(sp[0], t), max(sp[1], t)
                    for m, (t0, t1) in span.items():
                        self._pending.append((ids[k], ch.node, m, t0, t1))
            if not ch.late and upto > self._advance.get(key, 0):
                self._advance[key] = upto
        if refused:
            log.warning("event=relay_feed_refused total=%d (outbox lane full; retry in %.1f s)",
                        self.counters["refused"], self.retry_s)
        return refused

    def stats(self) -> dict[str, int]:
        return dict(self.counters)


def _runs(rows: list[tuple[int, str, str | None, float, float]], size: int) -> list[list[Any]]:
    """Split rows (ordered by seq) into runs of contiguous seqs of at most `size`."""
    out: list[list[Any]] = []
    cur: list[Any] = []
    for r in rows:
        if cur and (r[0] != cur[-1][0] + 1 or len(cur) >= size):
            out.append(cur)
            cur = []
        cur.append(r)
    if cur:
        out.append(cur)
    return out


def _first_seq(item: tuple[str, Any, bool]) -> int:
    body = item[1]
    return int(body["seq"] if "seq" in body else body["first_seq"])
