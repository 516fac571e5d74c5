"""Data tiers: hot (bounded ring per series in memory), warm (SQLite raw rows, zlib blocks, windows), cold.

Cold means: relayed to the cloud and pruned here by retention. `maintain()` (run on the
store thread) packs acknowledged raw rows older than `compress_after_s` into zlib
blocks and prunes blocks/windows older than `retention_s` once the cloud has them:
an outbox row carrying a series' data is noted (`note_pending`) when the outbox accepts it
and marks the series relayed up to its end only when the cloud acknowledges it
(`mark_acked`). A noted row that never gets its acknowledgement (expired or overwritten
in the outbox during a long outage) holds retention below its start for good: what the
cloud never got is never pruned here. Pruned ranges are remembered in table `cold` so a
query can say which part of the asked range only the cloud has.
"""

from __future__ import annotations

import array
import sqlite3
import zlib
from dataclasses import dataclass, field
from typing import Any

from fogline.gateway.relay import backfill as relay_backfill
from fogline.gateway.ingest.validate import Reading

BLOCK_MAX = 4096  # readings per compressed block


class _Ring:
    """Fixed-size ring of (t, value) in two float arrays: 16 bytes per point, no per-point objects."""

    __slots__ = ("t", "v", "n", "i")

    def __init__(self, size: int):
        self.t = array.array("d", bytes(8 * size))
        self.v = array.array("d", bytes(8 * size))
        self.n = 0
        self.i = 0

    def append(self, t: float, v: float) -> None:
        i = self.i
        self.t[i] = t
        self.v[i] = v
        self.i = (i + 1) % len(self.t)
        if self.n < len(self.t):
            self.n += 1

    def extend(self, ts: list[float], vs: list[float]) -> None:
        """Append points in order (as append() each): slice writes, one per wrap of the ring."""
        size = len(self.t)
        k = len(ts)
        if k >= size:  # only the newest `size` points stay
            ts, vs, k = ts[k - size:], vs[k - size:], size
        i = self.i
        first = min(k, size - i)
        self.t[i:i + first] = array.array("d", ts[:first])
        self.v[i:i + first] = array.array("d", vs[:first])
        if first < k:
            self.t[0:k - first] = array.array("d", ts[first:])
            self.v[0:k - first] = array.array("d", vs[first:])
        self.i = (i + k) % size
        self.n = min(size, self.n + k)

    def points(self) -> list[tuple[float, float]]:
        size = len(self.t)
        start = (self.i - self.n) % size
        return [(self.t[(start + k) % size], self.v[(start + k) % size]) for k in range(self.n)]


class HotTier:
    """Recent raw readings per (node, metric) in bounded rings (memory per series is fixed)."""

    def __init__(self, points: int):
        self.points = points
        self.series: dict[tuple[str, str], _Ring] = {}

    def add(self, r: Reading) -> None:
        key = (r.node, r.metric)
        d = self.series.get(key)
        if d is None:
            d = self.series[key] = _Ring(self.points)
        d.append(r.t, r.value)

    def add_pack(self, node: str, metrics: list[str], times: list[float], values: list[float]) -> None:
        """Add one pack's readings of a node (columns; same as add() each): one ring lookup per metric run."""
        n = len(metrics)
        i = 0
        while i < n:
            metric = metrics[i]
            j = i + 1
            while j < n and metrics[j] == metric:
                j += 1
            key = (node, metric)
            d = self.series.get(key)
            if d is None:
                d = self.series[key] = _Ring(self.points)
            if j - i == 1:
                d.append(times[i], values[i])
            else:
                d.extend(times[i:j], values[i:j])
            i = j

    def query(self, node: str, metric: str, since: float, until: float) -> list[tuple[float, float]]:
        d = self.series.get((node, metric))
        if not d:
            return []
        return sorted(p for p in d.points() if since <= p[0] < until)

    def oldest(self, node: str, metric: str) -> float | None:
        d = self.series.get((node, metric))
        return min(p[0] for p in d.points()) if d and d.n else None

    def memory_bytes(self) -> int:
        return sum(16 * len(r.t) for r in self.series.values())


def _pack(points: list[tuple[float, float, int, int]]) -> bytes:
    a = array.array("d")
    s = array.array("q")
    for t, v, lane, seq in points:
        a.append(t)
        a.append(v)
        s.append(lane)
        s.append(seq)
    return zlib.compress(len(points).to_bytes(4, "little") + a.tobytes() + s.tobytes(), 6)


def unpack_block(data: bytes) -> list[tuple[float, float]]:
    """(t, value) points of a compressed block."""
    return [(t, v) for t, v, _lane, _seq in _unpack_rows(data)]


def _unpack_rows(data: bytes) -> list[tuple[float, float, int, int]]:
    raw = zlib.decompress(data)
    n = int.from_bytes(raw[:4], "little")
    a = array.array("d")
    a.frombytes(raw[4:4 + 16 * n])
    s = array.array("q")
    s.frombytes(raw[4 + 16 * n:4 + 32 * n])
    return [(a[2 * i], a[2 * i + 1], s[2 * i], s[2 * i + 1]) for i in range(n)]


def _put_block(con: sqlite3.Connection, sid: int, points: list[tuple[float, float, int, int]]) -> None:
    # Blocks are keyed by (sid, first t): a later block starting at the same instant (late readings,
    # equal timestamps) merges with the stored one instead of replacing it.
    old = con.execute("SELECT data FROM blocks WHERE sid=? AND t0=?", (sid, points[0][0])).fetchone()
    if old is not None:
        points = sorted(_unpack_rows(old[0]) + points, key=lambda p: (p[0], p[2], p[3]))
    con.execute("INSERT OR REPLACE INTO blocks(sid, t0, t1, n, data) VALUES (?,?,?,?,?)",
                (sid, points[0][0], max(p[0] for p in points), len(points), _pack(points)))


def maintain(store: Any, tiers: Any, ingest: Any, now: float) -> dict[str, int]:
    """Compress old acked raw rows into blocks, prune relayed data past retention, cap dead letters."""
    con: sqlite3.Connection = store.con
    stats = {"compressed_rows": 0, "pruned_blocks": 0, "pruned_windows": 0, "pruned_dead_letters": 0}
    cutoff = now - tiers.compress_after_s
    # only rows at or below each lane's ack cursor: the cursor logic never needs them again
    con.execute("BEGIN IMMEDIATE")
    try:
        sids = [r[0] for r in con.execute("SELECT DISTINCT sid FROM readings WHERE t < ?", (cutoff,))]
        floors: dict[tuple[int, int], int] = {}
        fed: set[int] = getattr(store, "relay_lanes", set())
        cursor: dict[tuple[int, int], int] = getattr(store, "relay_cursor", {})
        late = relay_backfill.held(con) if fed else set()  # late fills below a cursor, not handed over yet
        for sid in sids:
            rows = con.execute(
                "SELECT r.t, r.v, r.lane, r.seq, r.nid FROM readings r JOIN lanes l ON l.nid=r.nid AND l.lane=r.lane "
                "WHERE r.sid=? AND r.t < ? AND r.seq <= l.contig ORDER BY r.t", (sid, cutoff)).fetchall()
            if fed:  # rows the relay feed has not handed to the outbox yet stay raw (it reads them from there)
                rows = [r for r in rows if r[2] not in fed or (r[3] <= cursor.get((r[4], r[2]), 0)
                                                               and (r[4], r[2], r[3]) not in late)]
            for i in range(0, len(rows), BLOCK_MAX):
                chunk = rows[i:i + BLOCK_MAX]
                _put_block(con, sid, [r[:4] for r in chunk])
                con.executemany("DELETE FROM readings WHERE nid=? AND lane=? AND seq=?",
                                [(r[4], r[2], r[3]) for r in chunk])
                for r in chunk:
                    k = (r[4], r[2])
                    if r[3] > floors.get(k, 0):
                        floors[k] = r[3]
                stats["compressed_rows"] += len(chunk)
        for (nid, lane), fl in floors.items():
            con.execute("UPDATE lanes SET floor=MAX(floor, ?) WHERE nid=? AND lane=?", (fl, nid, lane))
            st = store.lanes.get((nid, lane))
            if st is not None and fl > st.floor:
                st.floor = fl
        horizon = now - tiers.retention_s
        ensure_pending(con)
        hold = dict(con.execute("SELECT sid, MIN(t0) FROM relay_pending GROUP BY sid").fetchall())
        stats["held_series"] = 0
        for sid, upto in con.execute("SELECT sid, upto FROM relayed").fetchall():
            lim = min(horizon, upto, hold.get(sid, upto))
            if sid in hold and hold[sid] < min(horizon, upto):
                stats["held_series"] += 1  # the cloud lacks older data of it: pruned only below that
            blocks = con.execute("DELETE FROM blocks WHERE sid=? AND t1 < ?", (sid, lim)).rowcount
            stats["pruned_blocks"] += blocks
            cur = con.execute('DELETE FROM windows WHERE sid=? AND "end" <= ?', (sid, lim))
            stats["pruned_windows"] += cur.rowcount
            if cur.rowcount or blocks:  # this series lost local data: that range is cloud only now
                con.execute("INSERT INTO cold(sid, upto) VALUES (?, ?) ON CONFLICT(sid) DO UPDATE SET "
                            "upto=MAX(upto, excluded.upto)", (sid, lim))
        cur = con.execute("DELETE FROM dead_letters WHERE id <= (SELECT MAX(id) FROM dead_letters) - ?",
                          (ingest.dead_letter_max_rows,))
        stats["pruned_dead_letters"] = max(cur.rowcount, 0)
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    return stats


PENDING_SCHEMA = ("CREATE TABLE IF NOT EXISTS relay_pending(id INT NOT NULL, sid INT NOT NULL, t0 REAL NOT NULL, "
                  "t1 REAL NOT NULL, PRIMARY KEY(id, sid)); "
                  "CREATE INDEX IF NOT EXISTS relay_pending_sid ON relay_pending(sid, t0)")


def ensure_pending(con: sqlite3.Connection) -> None:
    """Create the table of outbox rows not yet acknowledged by the cloud (idempotent)."""
    for stmt in PENDING_SCHEMA.split("; "):
        con.execute(stmt)


def note_pending(store: Any, row_id: int, node: str, metric: str, t0: float, t1: float) -> None:
    """Outbox row `row_id` carries node/metric data in [t0, t1]: hold it until the cloud acks the row."""
    nid = store.nids.get(node)
    sid = store.sids.get((nid, metric)) if nid is not None else None
    if sid is None:
        return
    store.con.execute("INSERT INTO relay_pending(id, sid, t0, t1) VALUES (?,?,?,?) ON CONFLICT(id, sid) DO UPDATE "
                      "SET t0=MIN(t0, excluded.t0), t1=MAX(t1, excluded.t1)", (row_id, sid, t0, t1))


def mark_acked(store: Any, row_ids: list[int]) -> int:
    """The cloud acknowledged these outbox rows: their series count as relayed up to each row's end."""
    n = 0
    for rid in row_ids:
        for sid, t1 in store.con.execute("SELECT sid, t1 FROM relay_pending WHERE id=?", (rid,)).fetchall():
            store.con.execute("INSERT INTO relayed(sid, upto) VALUES (?, ?) ON CONFLICT(sid) DO UPDATE SET "
                              "upto=MAX(upto, excluded.upto)", (sid, t1))
            n += 1
        store.con.execute("DELETE FROM relay_pending WHERE id=?", (rid,))
    return n


def mark_relayed(store: Any, node: str, metric: str, upto: float) -> None:
    """Record that node/metric data up to `upto` is in the cloud (store thread)."""
    nid = store.nids.get(node)
    sid = store.sids.get((nid, metric)) if nid is not None else None
    if sid is None:
        return
    store.con.execute("INSERT INTO relayed(sid, upto) VALUES (?, ?) ON CONFLICT(sid) DO UPDATE SET "
                      "upto=MAX(upto, excluded.upto)", (sid, upto))


@dataclass
class QueryResult:
    """Points (t, value) of a series in [since, until) and where they came from."""
    node: str
    metric: str
    unit: str | None
    points: list[tuple[float, float]] = field(default_factory=list)
    sources: dict[str, int] = field(default_factory=dict)   # raw / compressed counts
    cloud_only: list[tuple[float, float]] = field(default_factory=list)  # ranges pruned locally
    windows: list[dict[str, Any]] = field(default_factory=list)
    raw_points: list[tuple[float, float]] = field(default_factory=list)    # of points: raw rows ...
    block_points: list[tuple[float, float]] = field(default_factory=list)  # ... and from compressed blocks


def query(con: sqlite3.Connection, node: str, metric: str, since: float, until: float,
          with_windows: bool = False) -> QueryResult | None:
    """Read a series across raw rows and compressed blocks; report cloud-only ranges. None if unknown."""
    row = con.execute("SELECT s.sid, s.unit FROM series s JOIN nodes n ON n.nid=s.nid "
                      "WHERE n.name=? AND s.metric=?", (node, metric)).fetchone()
    if row is None:
        return None
    sid, unit = row
    res = QueryResult(node, metric, unit)
    pts: list[tuple[float, float]] = []
    for t0, t1, data in con.execute("SELECT t0, t1, data FROM blocks WHERE sid=? AND t1 >= ? AND t0 < ?",
                                    (sid, since, until)):
        got = [p for p in unpack_block(data) if since <= p[0] < until]
        res.sources["compressed"] = res.sources.get("compressed", 0) + len(got)
        pts.extend(got)
        res.block_points.extend(got)
    raw = con.execute("SELECT t, v FROM readings WHERE sid=? AND t >= ? AND t < ?", (sid, since, until)).fetchall()
    res.sources["raw"] = len(raw)
    pts.extend(raw)
    res.raw_points = sorted(raw)
    res.block_points.sort()
    pts.sort()
    res.points = pts
    c = con.execute("SELECT upto FROM cold WHERE sid=?", (sid,)).fetchone()
    if c is not None and since < c[0]:
        res.cloud_only.append((since, min(until, c[0])))
    if with_windows:
        for w in con.execute('SELECT length, start, "end", count, min, max, mean, last, stddev FROM windows '
                             "WHERE sid=? AND start >= ? AND start < ? ORDER BY length, start", (sid, since, until)):
            res.windows.append(dict(zip(("length", "start", "end", "count", "min", "max", "mean", "last",
                                         "stddev"), w)))
    return res


def replay_rows(store: Any, lengths: list[float], limit: int = 200000) -> tuple[dict, list[tuple]]:
    """Rows to re-aggregate after a restart: per series, readings since its newest delivered longest window.

    Returns ({(node, metric, length): newest delivered end}, [(node, metric, unit, value, t), ...] in time order).
    """
    con: sqlite3.Connection = store.con
    longest = max(lengths)
    done: dict[tuple[str, str, float], float] = {}
    for node, metric, length, end in con.execute(
            'SELECT n.name, s.metric, w.length, MAX(w."end") FROM windows w JOIN series s ON s.sid=w.sid '
            "JOIN nodes n ON n.nid=s.nid GROUP BY w.sid, w.length"):
        done[(node, metric, float(length))] = end
    rows: list[tuple] = []
    for sid, node, metric, unit in con.execute(
            "SELECT s.sid, n.name, s.metric, s.unit FROM series s JOIN nodes n ON n.nid=s.nid").fetchall():
        since = done.get((node, metric, longest), float("-inf"))
        for t, v in con.execute("SELECT t, v FROM readings WHERE sid=? AND t >= ? ORDER BY t DESC LIMIT ?",
                                (sid, since if since != float("-inf") else -1e18, limit)):
            rows.append((node, metric, unit, v, t))
    rows.sort(key=lambda r: r[4])
    return done, rows
