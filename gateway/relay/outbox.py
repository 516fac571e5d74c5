"""Disk-backed priority outbox (SQLite WAL): lanes alert > anomaly > summary > raw.

A row is accepted once its INSERT commits and leaves only through `ack()` (after the
cloud's PUBACK), `expire()` (its lane TTL) or the lane's overwrite-oldest policy; every
one of those exits is counted and persisted. Ids come from AUTOINCREMENT so they are
never reused, which makes `<gateway_id>:<id>` a stable idempotency key across restarts.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

from fogline.gateway.relay.outbox_config import LANES, LanePolicy, OutboxConfig

__all__ = ["LANES", "LanePolicy", "Outbox", "OutboxConfig", "Row"]
log = logging.getLogger(__name__)


@dataclass
class Row:
    """One outbox entry as handed to the sender."""

    id: int
    lane: str
    created: float
    body: bytes
    critical: bool


_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    lane INTEGER NOT NULL,
    created REAL NOT NULL,
    expires REAL,
    critical INTEGER NOT NULL DEFAULT 0,
    size INTEGER NOT NULL,
    body BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS outbox_lane_id ON outbox(lane, id);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""

_COUNTERS = ("accepted", "rejected_full", "overwritten", "expired", "acked", "rejected_invalid")


class Outbox:
    """The durable queue between local decisions and the cloud link (single-threaded use)."""

    def __init__(self, cfg: OutboxConfig, gateway_id: str, data_dir: str | Path = "fogline-data"):
        cfg.validate()
        self.cfg = cfg
        self.policy = cfg.policies()
        self.gateway_id = gateway_id
        self.path = Path(cfg.path) if cfg.path else Path(data_dir) / "outbox.sqlite"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute(f"PRAGMA synchronous={cfg.synchronous.upper()}")
        self.db.executescript(_SCHEMA)
        self.inflight: dict[int, str] = {}
        self._inflight_n = {ln: 0 for ln in LANES}
        self._warned: dict[tuple[str, str], tuple[float, int]] = {}
        self._rows = {ln: 0 for ln in LANES}
        self._bytes = {ln: 0 for ln in LANES}
        for lane_i, n, b in self.db.execute("SELECT lane, COUNT(*), COALESCE(SUM(size),0) FROM outbox GROUP BY lane"):
            self._rows[LANES[lane_i]] = n
            self._bytes[LANES[lane_i]] = b
        self.counters: dict[str, dict[str, int]] = {c: {ln: 0 for ln in LANES} for c in _COUNTERS}
        for name, value in self.db.execute("SELECT name, value FROM counters"):
            c, _, ln = name.partition(".")
            if c in self.counters and ln in LANES:
                self.counters[c][ln] = value
        log.info("event=outbox_open path=%s rows=%s", self.path, sum(self._rows.values()))

    def key(self, row_id: int) -> str:
        """Idempotency key of a row: gateway id + outbox id."""
        return f"{self.gateway_id}:{row_id}"

    # -- accepting ---------------------------------------------------------------------------
    def put(self, lane: str, body: bytes, *, critical: bool = False, now: float | None = None) -> int | None:
        """Durably accept one item; return its id, or None if the lane's reject policy refused it."""
        return self.put_many([(lane, body, critical)], now=now)[0]

    def put_many(self, items: Iterable[tuple[str, bytes, bool]], now: float | None = None) -> list[int | None]:
        """Accept many items in one transaction (one fsync); per item an id or None (rejected)."""
        now = time.time() if now is None else now
        out: list[int | None] = []
        bumps: dict[tuple[str, str], int] = {}
        with self._txn(bumps) as cur:
            for lane, body, critical in items:
                out.append(self._put_one(cur, lane, body, critical, now, bumps))
        return out

    @contextlib.contextmanager
    def _txn(self, bumps: dict[tuple[str, str], int]):
        """One write transaction that also persists counter bumps; in-memory counters move only after COMMIT."""
        cur = self.db.cursor()
        cur.execute("BEGIN IMMEDIATE")
        try:
            yield cur
            self._save_counters(cur, bumps)
            cur.execute("COMMIT")
        except BaseException:
            cur.execute("ROLLBACK")
            self._reload_sizes()
            raise
        for (c, ln), n in bumps.items():
            self.counters[c][ln] += n

    def _put_one(self, cur: sqlite3.Cursor, lane: str, body: bytes, critical: bool, now: float,
                 bumps: dict[tuple[str, str], int]) -> int | None:
        if lane not in LANES or not isinstance(body, (bytes, bytearray)):
            ln = lane if lane in LANES else "raw"
            bumps[("rejected_invalid", ln)] = bumps.get(("rejected_invalid", ln), 0) + 1
            log.warning("event=outbox_invalid lane=%r type=%s", lane, type(body).__name__)
            return None
        pol = self.policy[lane]
        size = len(body)
        if size > pol.max_bytes:
            bumps[("rejected_full", lane)] = bumps.get(("rejected_full", lane), 0) + 1
            self._warn("rejected", lane, f"reason=item_larger_than_lane size={size}")
            return None
        if self._rows[lane] + 1 > pol.max_rows or self._bytes[lane] + size > pol.max_bytes:
            if pol.when_full == "reject":
                bumps[("rejected_full", lane)] = bumps.get(("rejected_full", lane), 0) + 1
                self._warn("rejected", lane, f"reason=full rows={self._rows[lane]} bytes={self._bytes[lane]}")
                return None
            self._overwrite(cur, lane, size, bumps)
        expires = now + pol.ttl_s if pol.ttl_s else None
        cur.execute("INSERT INTO outbox(lane, created, expires, critical, size, body) VALUES (?,?,?,?,?,?)",
                    (LANES.index(lane), now, expires, int(critical), size, bytes(body)))
        self._rows[lane] += 1
        self._bytes[lane] += size
        bumps[("accepted", lane)] = bumps.get(("accepted", lane), 0) + 1
        return int(cur.lastrowid)  # type: ignore[arg-type]

    def _overwrite(self, cur: sqlite3.Cursor, lane: str, size: int, bumps: dict[tuple[str, str], int]) -> None:
        # Oldest rows that are not in flight go first: an in-flight row may already be at the cloud.
        pol = self.policy[lane]
        li = LANES.index(lane)
        victims: list[tuple[int, int]] = []
        rows, nbytes = self._rows[lane], self._bytes[lane]
        last = -1
        while rows + 1 > pol.max_rows or nbytes + size > pol.max_bytes:
            # oldest first, in pages: a full lane can hold 100k+ rows and we need only a few
            page = cur.execute("SELECT id, size FROM outbox WHERE lane=? AND id>? ORDER BY id LIMIT 256",
                               (li, last)).fetchall()
            if not page:
                break
            for rid, rsize in page:
                last = rid
                if rows + 1 <= pol.max_rows and nbytes + size <= pol.max_bytes:
                    break
                if rid in self.inflight:
                    continue
                victims.append((rid, rsize))
                rows -= 1
                nbytes -= rsize
        cur.executemany("DELETE FROM outbox WHERE id=?", [(v[0],) for v in victims])
        self._rows[lane] = rows
        self._bytes[lane] = nbytes
        bumps[("overwritten", lane)] = bumps.get(("overwritten", lane), 0) + len(victims)
        self._warn("overwritten", lane, f"rows={len(victims)}")

    # -- sending -----------------------------------------------------------------------------
    def peek(self, lane: str, max_items: int, max_bytes: int, now: float | None = None) -> list[Row]:
        """Oldest unexpired rows of a lane that are not in flight (at least one if any, even if large)."""
        now = time.time() if now is None else now
        out: list[Row] = []
        total = 0
        q = ("SELECT id, created, critical, body FROM outbox WHERE lane=? AND (expires IS NULL OR expires>?) "
             "ORDER BY id LIMIT ?")
        for rid, created, crit, body in self.db.execute(q, (LANES.index(lane), now, max_items + len(self.inflight))):
            if rid in self.inflight:
                continue
            if out and total + len(body) > max_bytes:
                break
            out.append(Row(rid, lane, created, bytes(body), bool(crit)))
            total += len(body)
            if len(out) >= max_items:
                break
        return out

    def pending(self, lane: str) -> int:
        """Rows of a lane on disk and not in flight (expired-but-unswept rows included)."""
        return self._rows[lane] - self._inflight_n[lane]

    def claim(self, rows: Sequence[Row]) -> None:
        """Mark rows as in flight so the sender does not pick them twice."""
        for r in rows:
            if r.id not in self.inflight:
                self.inflight[r.id] = r.lane
                self._inflight_n[r.lane] += 1

    def release(self, ids: Sequence[int]) -> None:
        """Give rows back after a failed send (they stay on disk and go again, same key)."""
        for i in ids:
            ln = self.inflight.pop(i, None)
            if ln is not None:
                self._inflight_n[ln] -= 1

    def ack(self, ids: Sequence[int]) -> int:
        """Delete rows the cloud acknowledged; returns how many were still present."""
        if not ids:
            return 0
        bumps: dict[tuple[str, str], int] = {}
        with self._txn(bumps) as cur:
            found = cur.execute(f"SELECT lane, size FROM outbox WHERE id IN ({','.join('?' * len(ids))})",
                                list(ids)).fetchall()
            cur.executemany("DELETE FROM outbox WHERE id=?", [(i,) for i in ids])
            for li, size in found:
                ln = LANES[li]
                self._rows[ln] -= 1
                self._bytes[ln] -= size
                bumps[("acked", ln)] = bumps.get(("acked", ln), 0) + 1
        self.release(ids)
        return len(found)

    def expire(self, now: float | None = None) -> int:
        """Drop rows past their lane TTL (counted per lane); returns how many."""
        now = time.time() if now is None else now
        bumps: dict[tuple[str, str], int] = {}
        with self._txn(bumps) as cur:
            rows = cur.execute("SELECT id, lane, size FROM outbox WHERE expires IS NOT NULL AND expires<=?",
                               (now,)).fetchall()
            rows = [r for r in rows if r[0] not in self.inflight]
            cur.executemany("DELETE FROM outbox WHERE id=?", [(r[0],) for r in rows])
            for _, li, size in rows:
                ln = LANES[li]
                self._rows[ln] -= 1
                self._bytes[ln] -= size
                bumps[("expired", ln)] = bumps.get(("expired", ln), 0) + 1
        if rows:
            log.warning("event=outbox_expired rows=%d", len(rows))
        return len(rows)

    # -- reporting ---------------------------------------------------------------------------
    def depth(self) -> dict[str, dict[str, int]]:
        """Rows and bytes waiting per lane (in flight included)."""
        return {ln: {"rows": self._rows[ln], "bytes": self._bytes[ln]} for ln in LANES}

    def stats(self) -> dict[str, Any]:
        """Depth and persisted counters per lane (accepted, rejected_full, overwritten, expired, acked...)."""
        return {"depth": self.depth(), "inflight": len(self.inflight),
                "counters": {c: dict(v) for c, v in self.counters.items()}}

    def close(self) -> None:
        self.db.close()

    def _warn(self, event: str, lane: str, detail: str) -> None:
        # At a full lane this fires on every put: log the first, then one summary per 10 s.
        now = time.monotonic()
        key = (event, lane)
        last, n = self._warned.get(key, (0.0, 0))
        if now - last >= 10.0:
            log.warning("event=outbox_%s lane=%s %s suppressed_since_last=%d", event, lane, detail, n)
            self._warned[key] = (now, 0)
        else:
            self._warned[key] = (last, n + 1)

    def _save_counters(self, cur: sqlite3.Cursor, bumps: dict[tuple[str, str], int]) -> None:
        if bumps:
            cur.executemany("INSERT INTO counters(name, value) VALUES (?, ?) "
                            "ON CONFLICT(name) DO UPDATE SET value = value + excluded.value",
                            [(f"{c}.{ln}", n) for (c, ln), n in bumps.items()])

    def _reload_sizes(self) -> None:
        self._rows = {ln: 0 for ln in LANES}
        self._bytes = {ln: 0 for ln in LANES}
        for lane_i, n, b in self.db.execute("SELECT lane, COUNT(*), COALESCE(SUM(size),0) FROM outbox GROUP BY lane"):
            self._rows[LANES[lane_i]] = n
            self._bytes[LANES[lane_i]] = b
