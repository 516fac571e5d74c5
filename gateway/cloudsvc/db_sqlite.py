"""Embedded SQLite backend (no dsn): the same tables and upserts in <data_dir>/cloud.sqlite (WAL, synchronous FULL)."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path
from typing import Any

from fogline.gateway.cloudsvc import db_sql as q
from fogline.gateway.cloudsvc import schema
from fogline.gateway.cloudsvc.rows import Batch

log = logging.getLogger(__name__)
NOW = "(julianday('now') - 2440587.5) * 86400.0"


def _connect(path: Path) -> sqlite3.Connection:
    con = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False, timeout=30)
    con.execute("PRAGMA journal_mode=WAL")
    # a commit is on disk before the broker gets its ack: that is what makes the ack safe
    con.execute("PRAGMA synchronous=FULL")
    return con


class SqliteBackend:
    """Writes batches into one SQLite file; one writer (this object), any number of readers."""

    dialect = "sqlite"

    def __init__(self, path: str | Path, retention_days: float = 0.0):
        self.path = Path(path)
        self.retention_s = retention_days * 86400.0
        self.con: sqlite3.Connection | None = None
        self.ids = q.IdCache()

    def open(self) -> None:
        """Create the data dir and file, migrate."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.con = _connect(self.path)
        self._migrate()

    def _migrate(self) -> list[int]:
        con = self.con
        assert con is not None
        con.execute("BEGIN IMMEDIATE")
        try:
            done = schema.apply(con.execute, schema.SQLITE, "?")
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        if done:
            log.info("event=cloud_db_migrated dialect=sqlite versions=%s path=%s", done, self.path)
        return done

    def close(self) -> None:
        if self.con is not None:
            self.con.close()
        self.con = None
        self.ids.rolled_back()

    def drop_expired(self, now: float) -> int:
        """Retention: delete readings older than retention_days (none when 0)."""
        if self.retention_s <= 0 or self.con is None:
            return 0
        cur = self.con.execute("DELETE FROM readings WHERE t < ?", (now - self.retention_s,))
        return cur.rowcount

    def write(self, b: Batch) -> dict[str, int]:
        """Write the batch in one transaction; counts of new rows."""
        if self.con is None:
            self.open()
        con = self.con
        assert con is not None
        con.execute("BEGIN IMMEDIATE")
        try:
            out = self._write(con, b)
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            self.ids.rolled_back()
            raise
        self.ids.committed()
        return out

    def _write(self, con: sqlite3.Connection, b: Batch) -> dict[str, int]:
        def execute(sql: str, params: tuple) -> None:
            con.execute(sql, params)

        def fetch_one(sql: str, params: tuple) -> Any:
            return con.execute(sql, params).fetchone()[0]

        rows = q.resolve_ids(self.ids, b, execute, fetch_one)
        out = {"readings": 0, "alerts": 0, "windows": 0, "decisions": 0, "health": 0, "dead": 0}
        if rows:
            before = con.total_changes
            con.executemany("INSERT OR IGNORE INTO readings (nid, lane, seq, t, sid, v) VALUES (?,?,?,?,?,?)", rows)
            out["readings"] = con.total_changes - before
        for key, sql, params in (("alerts", q.INSERT_ALERT, q.alert_params(self.ids, b)),
                                 ("windows", q.UPSERT_WINDOW, q.window_params(b)),
                                 ("decisions", q.UPSERT_DECISION, q.decision_params(b)),
                                 ("health", q.INSERT_HEALTH, b.health),
                                 ("dead", q.INSERT_DEAD, b.dead)):
            if params:
                before = con.total_changes
                con.executemany(sql.format(now=NOW), params)
                out[key] = con.total_changes - before
        return out

    def reader(self) -> sqlite3.Connection:
        """A new read connection (one per HTTP request thread)."""
        con = sqlite3.connect(str(self.path), check_same_thread=False, timeout=30)
        return con
