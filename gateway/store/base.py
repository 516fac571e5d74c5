"""Store building blocks: the schema, lane ids, a lane's cursor state, the dead-letter record."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

LANE_ID = {"up": 0, "alert": 1, "ble": 2}  # "ble": gateway-assigned seqs, never acked
LANE_NAME = {0: "up", 1: "alert", 2: "ble"}
ACK_LANES = ("up", "alert")


SCHEMA = """
CREATE TABLE IF NOT EXISTS nodes(nid INTEGER PRIMARY KEY, name TEXT UNIQUE NOT NULL);
CREATE TABLE IF NOT EXISTS series(sid INTEGER PRIMARY KEY, nid INT NOT NULL, metric TEXT NOT NULL,
  unit TEXT, UNIQUE(nid, metric));
CREATE TABLE IF NOT EXISTS readings(nid INT NOT NULL, lane INT NOT NULL, seq INT NOT NULL, sid INT NOT NULL,
  t REAL NOT NULL, v REAL NOT NULL, rx REAL NOT NULL, PRIMARY KEY(nid, lane, seq)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS readings_series ON readings(sid, t);
CREATE TABLE IF NOT EXISTS lanes(nid INT NOT NULL, lane INT NOT NULL, contig INT NOT NULL,
  floor INT NOT NULL DEFAULT 0, PRIMARY KEY(nid, lane));
CREATE TABLE IF NOT EXISTS gaps(nid INT, lane INT, lo INT, hi INT, at REAL, why TEXT);
CREATE TABLE IF NOT EXISTS dead_letters(id INTEGER PRIMARY KEY, rx REAL, link TEXT, source TEXT,
  topic TEXT, reason TEXT, detail TEXT, payload BLOB);
CREATE INDEX IF NOT EXISTS dead_letters_reason ON dead_letters(reason);
CREATE TABLE IF NOT EXISTS windows(sid INT NOT NULL, length REAL NOT NULL, start REAL NOT NULL,
  "end" REAL, count INT, min REAL, max REAL, mean REAL, last REAL, stddev REAL,
  PRIMARY KEY(sid, length, start)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS blocks(sid INT NOT NULL, t0 REAL NOT NULL, t1 REAL NOT NULL, n INT NOT NULL,
  data BLOB NOT NULL, PRIMARY KEY(sid, t0));
CREATE TABLE IF NOT EXISTS cold(sid INT PRIMARY KEY, upto REAL NOT NULL);
CREATE TABLE IF NOT EXISTS relayed(sid INT PRIMARY KEY, upto REAL NOT NULL);
CREATE TABLE IF NOT EXISTS devices(node TEXT PRIMARY KEY, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS dead_letter_totals(reason TEXT PRIMARY KEY, n INT NOT NULL);
CREATE TABLE IF NOT EXISTS relay_cursor(nid INT NOT NULL, lane INT NOT NULL, seq INT NOT NULL,
  PRIMARY KEY(nid, lane));
CREATE TABLE IF NOT EXISTS relay_lanes(lane INT PRIMARY KEY, since REAL NOT NULL);
CREATE TABLE IF NOT EXISTS relay_backfill(nid INT NOT NULL, lane INT NOT NULL, seq INT NOT NULL,
  PRIMARY KEY(nid, lane, seq)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS ble_counters(mac TEXT PRIMARY KEY, counter INT NOT NULL);
CREATE TABLE IF NOT EXISTS dead_seqs(nid INT NOT NULL, lane INT NOT NULL, seq INT NOT NULL, reason TEXT,
  PRIMARY KEY(nid, lane, seq)) WITHOUT ROWID;
"""


@dataclass
class DeadLetter:
    """A refused message, kept for inspection (payload truncated to 4 KiB)."""
    reason: str
    detail: str
    topic: str = ""
    source: str = ""
    link: str = "mqtt"
    payload: bytes = b""
    rx: float = 0.0
    lane: str = ""                         # up/alert: a refused uplink of node `source` (holds back gap skips)
    seqs: tuple[int, int] | None = None    # its seq range, when it could be read


@dataclass
class LaneState:
    contig: int = 0
    floor: int = 0                         # seqs <= floor were compacted into blocks (all acked)
    above: set[int] = field(default_factory=set)  # stored seqs > contig
    gap_since: float | None = None         # when a hole below `above` was first seen
    oldest_hint: int = 0                   # node-reported oldest pending seq (state "oldest")
    refused_at: float | None = None        # last refused uplink that may hold seqs above the cursor

    def copy(self) -> "LaneState":
        return LaneState(self.contig, self.floor, set(self.above), self.gap_since, self.oldest_hint,
                         self.refused_at)


WAL_CHECKPOINT_PAGES = 10000  # [store] wal_checkpoint_pages default (SQLite's own is 1000)
STORE_CACHE_KIB = 16384  # page cache of the ingest connection (SQLite's default is 2000 KiB)


def connect(path: Path, synchronous: str = "FULL", readonly: bool = False,
            checkpoint_pages: int = WAL_CHECKPOINT_PAGES) -> sqlite3.Connection:
    """Open the ingest database (WAL) with the schema in place."""
    if readonly:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
        con.execute("PRAGMA query_only=1")
        return con
    path.parent.mkdir(parents=True, exist_ok=True)
    con = sqlite3.connect(str(path), timeout=30, isolation_level=None, check_same_thread=False)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute(f"PRAGMA synchronous={synchronous.upper()}")
    con.execute("PRAGMA busy_timeout=10000")
    # A commit of many nodes dirties a leaf page per node and per series; checkpointing every 1000 WAL
    # pages copied those same pages back to the database after almost every commit. A longer WAL copies
    # each hot page once per checkpoint (500 nodes: -22 % insert CPU, tools/bench/store_layout.py).
    con.execute(f"PRAGMA wal_autocheckpoint={int(checkpoint_pages)}")
    # The pages a commit of many nodes touches (a readings leaf per lane, an index leaf per series, their
    # parents) outgrew SQLite's 2 MiB cache: 500 nodes re-read ~290 pages from the WAL/OS per commit.
    con.execute(f"PRAGMA cache_size=-{STORE_CACHE_KIB}")
    con.executescript(SCHEMA)
    return con


class _Pending:
    """Rows of the batch being built (per lane), looked up by (nid, lane, seq) only on the rare duplicate path."""

    def __init__(self, lanes: dict[tuple[int, int], list[tuple[int, int, int, int, float, float, float]]]):
        self.lanes = lanes
        self.index: dict[tuple[int, int, int], tuple[int, float, float]] = {}
        self.upto: dict[tuple[int, int], int] = {}

    def get(self, key: tuple[int, int, int]) -> tuple[int, float, float] | None:
        lane = key[0], key[1]
        rows, idx = self.lanes.get(lane, ()), self.index
        for i in range(self.upto.get(lane, 0), len(rows)):
            r = rows[i]
            idx[(r[0], r[1], r[2])] = (r[3], r[4], r[5])
        self.upto[lane] = len(rows)
        return idx.get(key)
