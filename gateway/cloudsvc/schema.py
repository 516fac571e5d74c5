"""Cloud database schema: versioned migrations for PostgreSQL and SQLite, applied by the service at start.

Table `schema_migrations(version, applied)` records what ran; each migration runs once, in order, in its
own transaction (PostgreSQL: under an advisory lock so consumers starting together do not race).
Readings are keyed by (node id, lane, seq); nodes and series are small dictionary tables so a reading row
holds numbers only. On PostgreSQL `readings` is partitioned by reading time (epoch s), one partition per
`partition_days`, so retention drops whole partitions; a DEFAULT partition takes times outside 2000..2100.
"""

from __future__ import annotations

import time
from typing import Any, Callable

_COMMON = [
    "CREATE TABLE nodes (nid {serial} PRIMARY KEY, site TEXT NOT NULL, node TEXT NOT NULL, UNIQUE (site, node))",
    "CREATE TABLE series (sid {serial} PRIMARY KEY, nid INTEGER NOT NULL REFERENCES nodes(nid), "
    "metric TEXT NOT NULL, unit TEXT, UNIQUE (nid, metric))",
    "CREATE TABLE alerts (nid INTEGER NOT NULL, seq BIGINT NOT NULL, sid INTEGER NOT NULL, t DOUBLE PRECISION NOT NULL, "
    "v DOUBLE PRECISION NOT NULL, gw TEXT NOT NULL, sent DOUBLE PRECISION NOT NULL, stored DOUBLE PRECISION NOT NULL, "
    "PRIMARY KEY (nid, seq))",
    "CREATE INDEX alerts_t ON alerts (sid, t)",
    'CREATE TABLE windows (site TEXT NOT NULL, node TEXT NOT NULL, metric TEXT NOT NULL, length DOUBLE PRECISION NOT NULL, '
    'start DOUBLE PRECISION NOT NULL, "end" DOUBLE PRECISION NOT NULL, rev BIGINT NOT NULL, count DOUBLE PRECISION, '
    'min DOUBLE PRECISION, max DOUBLE PRECISION, mean DOUBLE PRECISION, last DOUBLE PRECISION, stddev DOUBLE PRECISION, '
    "unit TEXT, corr SMALLINT NOT NULL, gw TEXT NOT NULL, stored DOUBLE PRECISION NOT NULL, "
    "PRIMARY KEY (site, node, metric, length, start))",
    'CREATE TABLE decisions (site TEXT NOT NULL, node TEXT NOT NULL, length DOUBLE PRECISION NOT NULL, '
    'start DOUBLE PRECISION NOT NULL, "end" DOUBLE PRECISION NOT NULL, rev BIGINT NOT NULL, lane TEXT NOT NULL, '
    "action TEXT NOT NULL, label TEXT NOT NULL, score DOUBLE PRECISION, confidence DOUBLE PRECISION, model TEXT NOT NULL, "
    "late SMALLINT NOT NULL, retract SMALLINT NOT NULL, gw TEXT NOT NULL, body TEXT NOT NULL, "
    "stored DOUBLE PRECISION NOT NULL, PRIMARY KEY (site, node, length, start))",
    # the anomalies the cloud believes now: a later revision that retracts one removes it from here
    "CREATE VIEW anomalies AS SELECT * FROM decisions WHERE label = 'anomaly' AND retract = 0",
    "CREATE TABLE gateway_health (site TEXT NOT NULL, k TEXT NOT NULL, gw TEXT NOT NULL, ts DOUBLE PRECISION NOT NULL, "
    "body TEXT NOT NULL, PRIMARY KEY (site, k))",
    "CREATE TABLE dead_letters (id {serial} PRIMARY KEY, topic TEXT NOT NULL, reason TEXT NOT NULL, "
    "payload {blob} NOT NULL, stored DOUBLE PRECISION NOT NULL)",
]

PG: list[list[str]] = [
    [s.format(serial="SERIAL", blob="BYTEA") for s in _COMMON] + [
        "CREATE TABLE readings (nid INTEGER NOT NULL, lane SMALLINT NOT NULL, seq BIGINT NOT NULL, "
        "t DOUBLE PRECISION NOT NULL, sid INTEGER NOT NULL, v DOUBLE PRECISION NOT NULL, "
        "PRIMARY KEY (nid, lane, seq, t)) PARTITION BY RANGE (t)",
        "CREATE INDEX readings_series ON readings (sid, t)",
        "CREATE TABLE readings_default PARTITION OF readings DEFAULT",
    ],
]

SQLITE: list[list[str]] = [
    [s.format(serial="INTEGER", blob="BLOB") for s in _COMMON] + [
        "CREATE TABLE readings (nid INTEGER NOT NULL, lane INTEGER NOT NULL, seq INTEGER NOT NULL, "
        "t REAL NOT NULL, sid INTEGER NOT NULL, v REAL NOT NULL, PRIMARY KEY (nid, lane, seq)) WITHOUT ROWID",
        "CREATE INDEX readings_series ON readings (sid, t)",
    ],
]


MIGRATIONS_TABLE = ("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, "
                    "applied DOUBLE PRECISION NOT NULL)")


def apply(execute: Callable[..., Any], migrations: list[list[str]], param: str) -> list[int]:
    """Run the migrations not yet recorded, in order, in the caller's transaction; return the versions run."""
    execute(MIGRATIONS_TABLE)
    have = {r[0] for r in execute("SELECT version FROM schema_migrations")}
    done = []
    for version, stmts in enumerate(migrations, start=1):
        if version in have:
            continue
        for s in stmts:
            execute(s)
        execute(f"INSERT INTO schema_migrations (version, applied) VALUES ({param}, {param})", (version, time.time()))
        done.append(version)
    return done
