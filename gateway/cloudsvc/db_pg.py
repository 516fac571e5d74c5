"""PostgreSQL backend (psycopg 3): one transaction per batch, readings by binary COPY + INSERT ... ON CONFLICT."""

from __future__ import annotations

import logging
import time
from typing import Any

from fogline.gateway.cloudsvc import db_sql as q
from fogline.gateway.cloudsvc import schema
from fogline.gateway.cloudsvc.rows import LANE_CODE, Batch

log = logging.getLogger(__name__)
T_MIN, T_MAX = 946684800.0, 4102444800.0  # 2000..2100: outside it readings go to readings_default
NOW = "extract(epoch from clock_timestamp())"
MIGRATION_LOCK = 7_419_001
PARTITION_LOCK = 7_419_002
ALERT_LANE = LANE_CODE["alert"]


class TransientDbError(Exception):
    """The database is unreachable or went away: retry the same batch later (nothing was acknowledged)."""


def _psycopg() -> Any:
    try:
        import psycopg
    except ImportError as e:  # pragma: no cover - depends on the install
        raise RuntimeError("PostgreSQL needs psycopg: pip install 'fogline[cloud]'") from e
    return psycopg


class PgBackend:
    """Writes batches into PostgreSQL; reconnects on demand (callers retry on TransientDbError)."""

    dialect = "pg"

    def __init__(self, dsn: str, partition_days: int = 1, retention_days: float = 0.0):
        self.dsn = dsn
        self.width = 86400.0 * partition_days
        self.retention_s = retention_days * 86400.0
        self.pg = _psycopg()
        self.con: Any = None
        self.ids = q.IdCache()
        self.parts: set[int] = set()
        self.transient = (self.pg.OperationalError, self.pg.InterfaceError)
        self.copy_fallbacks = 0  # batches whose direct COPY met an already stored reading

    # -- connection and schema ------------------------------------------------------------------
    def open(self) -> None:
        """Connect, migrate, prepare the session's COPY staging table; TransientDbError if unreachable."""
        try:
            self.con = self.pg.connect(self.dsn, autocommit=True, connect_timeout=10)
            self._migrate()
            self.con.execute("CREATE TEMP TABLE IF NOT EXISTS readings_in (nid INTEGER, lane SMALLINT, seq BIGINT, "
                             "t DOUBLE PRECISION, sid INTEGER, v DOUBLE PRECISION) ON COMMIT DELETE ROWS")
            now = time.time()
            self._ensure_partitions({self._part(now), self._part(now + self.width)})
        except self.transient as e:
            self.close()
            raise TransientDbError(str(e)) from e

    def _migrate(self) -> list[int]:
        con = self.con
        with con.transaction():
            con.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
            done = schema.apply(con.execute, schema.PG, "%s")
        if done:
            log.info("event=cloud_db_migrated dialect=pg versions=%s", done)
        return done

    def close(self) -> None:
        if self.con is not None:
            try:
                self.con.close()
            except Exception:
                pass
        self.con = None
        self.ids.rolled_back()

    # -- partitions -----------------------------------------------------------------------------
    def _part(self, t: float) -> int:
        return int(t // self.width)

    def _ensure_partitions(self, parts: set[int]) -> None:
        # Its own short transaction, before the batch: creating a partition locks the parent, and two
        # consumers doing that inside their batch transactions could deadlock each other.
        new = sorted(p for p in parts if p not in self.parts)
        if not new:
            return
        with self.con.transaction():
            self.con.execute("SELECT pg_advisory_xact_lock(%s)", (PARTITION_LOCK,))
            for p in new:
                lo, hi = p * self.width, (p + 1) * self.width
                self.con.execute(f"CREATE TABLE IF NOT EXISTS readings_p{p} PARTITION OF readings "
                                 f"FOR VALUES FROM ({lo!r}) TO ({hi!r})")
        self.parts.update(new)

    def drop_expired(self, now: float) -> list[str]:
        """Retention: drop readings partitions entirely older than retention_days (none when 0)."""
        if self.retention_s <= 0 or self.con is None:
            return []
        cutoff = now - self.retention_s
        names = [r[0] for r in self.con.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = 'readings' AND c.relname LIKE 'readings_p%%'")]
        dropped = []
        for name in names:
            p = int(name[len("readings_p"):])
            if (p + 1) * self.width <= cutoff:
                self.con.execute(f"DROP TABLE IF EXISTS {name}")
                self.parts.discard(p)
                dropped.append(name)
        if dropped:
            log.info("event=cloud_retention_dropped partitions=%s", ",".join(dropped))
        return dropped

    # -- the write path -------------------------------------------------------------------------
    def write(self, b: Batch) -> dict[str, int]:
        """Write the batch in one transaction; counts of new rows. TransientDbError: retry, nothing changed."""
        if self.con is None:
            self.open()
        try:
            self._ensure_partitions({self._part(r[7]) for r in b.readings if T_MIN <= r[7] < T_MAX})
            with self.con.transaction():
                out = self._write(b)
            self.ids.committed()
            return out
        except self.transient as e:
            self.close()
            raise TransientDbError(str(e)) from e
        except BaseException:
            self.ids.rolled_back()
            raise

    def _write(self, b: Batch) -> dict[str, int]:
        con = self.con
        cur = con.cursor()

        def execute(sql: str, params: tuple) -> None:
            cur.execute(q.pg(sql), params)

        def fetch_one(sql: str, params: tuple) -> Any:
            return cur.execute(q.pg(sql), params).fetchone()[0]

        rows = q.resolve_ids(self.ids, b, execute, fetch_one)
        out = {"readings": 0, "alerts": 0, "windows": 0, "decisions": 0, "health": 0, "dead": 0}
        up = [r for r in rows if r[1] != ALERT_LANE]
        alerts = [r for r in rows if r[1] == ALERT_LANE] if len(up) != len(rows) else []
        if up:
            # Fast path: COPY straight into readings (a re-delivery is rare). On a duplicate key the
            # savepoint undoes it and the rows go through the staging table with ON CONFLICT DO NOTHING.
            try:
                with con.transaction():
                    self._copy(cur, "readings", up)
                out["readings"] = len(up)
            except self.pg.errors.UniqueViolation:
                self.copy_fallbacks += 1
                out["readings"] = self._upsert_readings(cur, up)
        if alerts:  # several gateways of a site all relay alerts: duplicates are normal here
            out["readings"] += self._upsert_readings(cur, alerts)
        for key, sql, params in (("alerts", q.INSERT_ALERT, q.alert_params(self.ids, b)),
                                 ("windows", q.UPSERT_WINDOW, q.window_params(b)),
                                 ("decisions", q.UPSERT_DECISION, q.decision_params(b)),
                                 ("health", q.INSERT_HEALTH, b.health),
                                 ("dead", q.INSERT_DEAD, b.dead)):
            if params:
                cur.executemany(q.pg(sql.format(now=NOW)), params)
                out[key] = max(cur.rowcount, 0)
        return out

    @staticmethod
    def _copy(cur: Any, table: str, rows: list[tuple]) -> None:
        with cur.copy(f"COPY {table} (nid, lane, seq, t, sid, v) FROM STDIN (FORMAT BINARY)") as cp:
            cp.set_types(["int4", "int2", "int8", "float8", "int4", "float8"])
            for r in rows:
                cp.write_row(r)

    def _upsert_readings(self, cur: Any, rows: list[tuple]) -> int:
        self._copy(cur, "readings_in", rows)
        cur.execute("INSERT INTO readings SELECT nid, lane, seq, t, sid, v FROM readings_in ON CONFLICT DO NOTHING")
        n = cur.rowcount
        cur.execute("TRUNCATE readings_in")  # it may be used twice in one transaction
        return n

    # -- reads (HTTP API, tests) ----------------------------------------------------------------
    def reader(self) -> Any:
        """A new connection for queries (one per HTTP request thread); closes with `with`."""
        return self.pg.connect(self.dsn, autocommit=True, connect_timeout=10)
