"""Raw-reading layouts of the ingest store: one row per reading (today) vs one row per pack.

Same SQLite settings as the gateway (WAL, synchronous=FULL, one transaction per group commit of
--batch readings). Layouts:
  rows      today's `readings` table: (nid, lane, seq) WITHOUT ROWID + index (sid, t)
  rows_*    the same table with other connection settings or without the index (see LAYOUTS)
  pack_json one row per pack (nid, lane, seq0, n, t_min, t_max, rx, body = JSON [[sid, t, v], ...]) and a
            `readings` VIEW expanding it with json_each, so SQL readers stay row-wise
  pack_blob one row per pack, body = packed arrays (struct); readers expand in Python (no SQL view)
Insert: CPU (process_time: user + system) per reading, building the rows from a pack's columns included,
into a store that already holds --prefill readings (an empty store hides what a grown B-tree costs).
Queries (the gateway's real ones, against a store of 20 nodes x --per-node readings, packs of 10, two
series per node; pack layouts bound their scans by the longest stored pack's time span and MAXPACK seqs):
  feed     relay feed: the next 2000 readings of a lane after a cursor (joined to series)
  range    `fogline query` / tier read: one series over an hour (SELECT t, v ... sid=? AND t in range)
  window   late-data recompute: one series over one 60 s window
  recent   replay: a series' newest 2000 readings (ORDER BY t DESC LIMIT)
  dedupe   a resent pack: read the stored readings of its seq range (Store._classify)
  compact  tiers.maintain: the acked rows of one series older than the cutoff, then delete them

Usage: python tools/bench/store_layout.py [--quick] [--nodes 20 500] [--pack 10 500] [--prefill 300000]
The last line is one JSON object: {layout: {"insert_us": {case: us}, "commit_ms_p50_max": {case: [p50, max]},
"query_ms": {query: median ms}, ...}, "answers_agree": every layout returned the same row counts}.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sqlite3
import struct
import tempfile
import time
from pathlib import Path

ROWS_SCHEMA = """
CREATE TABLE series(sid INTEGER PRIMARY KEY, nid INT NOT NULL, metric TEXT NOT NULL, unit TEXT, UNIQUE(nid, metric));
CREATE TABLE lanes(nid INT NOT NULL, lane INT NOT NULL, contig INT NOT NULL, floor INT NOT NULL DEFAULT 0,
  PRIMARY KEY(nid, lane));
CREATE TABLE readings(nid INT NOT NULL, lane INT NOT NULL, seq INT NOT NULL, sid INT NOT NULL,
  t REAL NOT NULL, v REAL NOT NULL, rx REAL NOT NULL, PRIMARY KEY(nid, lane, seq)) WITHOUT ROWID;
CREATE INDEX readings_series ON readings(sid, t);
"""
NOIDX_SCHEMA = ROWS_SCHEMA.replace("CREATE INDEX readings_series ON readings(sid, t);", "")
PACK_SCHEMA = """
CREATE TABLE series(sid INTEGER PRIMARY KEY, nid INT NOT NULL, metric TEXT NOT NULL, unit TEXT, UNIQUE(nid, metric));
CREATE TABLE lanes(nid INT NOT NULL, lane INT NOT NULL, contig INT NOT NULL, floor INT NOT NULL DEFAULT 0,
  PRIMARY KEY(nid, lane));
CREATE TABLE packs(nid INT NOT NULL, lane INT NOT NULL, seq0 INT NOT NULL, n INT NOT NULL, t_min REAL NOT NULL,
  t_max REAL NOT NULL, rx REAL NOT NULL, body NOT NULL, PRIMARY KEY(nid, lane, seq0)) WITHOUT ROWID;
CREATE INDEX packs_time ON packs(nid, t_min);
CREATE VIEW readings AS SELECT p.nid AS nid, p.lane AS lane, p.seq0 + j.key AS seq, j.value->>0 AS sid,
  j.value->>1 AS t, j.value->>2 AS v, p.rx AS rx FROM packs p, json_each(p.body) j;
"""
MAXPACK = 512  # a pack holds at most this many seqs: bounds the index range a seq lookup scans
METRICS = 2    # readings alternate between two series of the node (e.g. temperature, humidity)


def connect(path: Path, layout: str) -> sqlite3.Connection:
    con = sqlite3.connect(str(path), isolation_level=None)
    schema, pragmas = LAYOUTS[layout]
    for pr in pragmas:  # before WAL: page_size cannot change after
        con.execute(f"PRAGMA {pr}")
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=FULL")
    con.executescript(schema)
    return con


def pack_cols(nid: int, seq0: int, n: int, t0: float) -> tuple[list[int], list[float], list[float]]:
    """A pack's columns as the validated message carries them: sids, times, values."""
    sids = [nid * METRICS + (i % METRICS) for i in range(n)]
    ts = [t0 + (seq0 + i) // METRICS for i in range(n)]
    vs = [round(20 + 5 * random.random(), 2) for _ in range(n)]
    return sids, ts, vs


def body_blob(sids: list[int], ts: list[float], vs: list[float]) -> bytes:
    n = len(sids)
    return struct.pack(f"<{n}i{n}d{n}d", *sids, *ts, *vs)


def unblob(body: bytes, n: int) -> tuple[tuple, tuple, tuple]:
    a = struct.unpack(f"<{n}i{n}d{n}d", body)
    return a[:n], a[n:2 * n], a[2 * n:]


def write_batch(con: sqlite3.Connection, layout: str, packs: list[tuple], rx: float) -> None:
    """One group commit of packs [(nid, lane, seq0, sids, ts, vs)] in `layout`."""
    con.execute("BEGIN IMMEDIATE")
    if layout.startswith("rows"):
        rows: list[tuple] = []
        ext = rows.extend
        for nid, lane, seq0, sids, ts, vs in packs:
            n = len(sids)
            ext(zip([nid] * n, [lane] * n, range(seq0, seq0 + n), sids, ts, vs, [rx] * n))
        rows.sort(key=lambda r: (r[0], r[1]))
        con.executemany("INSERT OR IGNORE INTO readings(nid, lane, seq, sid, t, v, rx) VALUES (?,?,?,?,?,?,?)", rows)
    else:
        enc = (lambda s, t, v: json.dumps([list(x) for x in zip(s, t, v)])) if layout == "pack_json" else body_blob
        con.executemany("INSERT OR IGNORE INTO packs(nid, lane, seq0, n, t_min, t_max, rx, body) VALUES (?,?,?,?,?,?,?,?)",
                        [(nid, lane, seq0, len(sids), min(ts), max(ts), rx, enc(sids, ts, vs))
                         for nid, lane, seq0, sids, ts, vs in sorted(packs, key=lambda p: (p[0], p[1]))])
    con.execute("COMMIT")


def fill(con: sqlite3.Connection, layout: str, nodes: int, per_node: int, pack: int, batch: int,
         t0: float, untimed: int = 0, walls: list[float] | None = None) -> float:
    """Store per_node readings of each node in packs (nodes interleaved, as they arrive); CPU s per reading.

    The first `untimed` readings of each node are the store's earlier content: stored, not timed;
    `walls` gets the wall ms of each timed group commit."""
    con.executemany("INSERT INTO series(sid, nid, metric, unit) VALUES (?,?,?,?)",
                    [(nid * METRICS + k, nid, f"m{k}", "u") for nid in range(1, nodes + 1) for k in range(METRICS)])
    seq = {nid: 1 for nid in range(1, nodes + 1)}
    total = nodes * per_node
    pending: list[tuple] = []
    npend = 0
    cpu = 0.0
    done = timed_n = 0
    while done < total:
        for nid in range(1, nodes + 1):
            s0 = seq[nid]
            n = min(pack, per_node - s0 + 1)
            if n <= 0:
                continue
            sids, ts, vs = pack_cols(nid, s0, n, t0)  # the validator's output: not the store's cost
            c0 = time.process_time()
            pending.append((nid, 0, s0, sids, ts, vs))
            npend += n
            if npend >= batch:
                w0 = time.perf_counter()
                write_batch(con, layout, pending, t0 + s0)
                if walls is not None and s0 > untimed:
                    walls.append((time.perf_counter() - w0) * 1000)
                pending, npend = [], 0
            if s0 > untimed:
                cpu += time.process_time() - c0
                timed_n += n
            seq[nid] = s0 + n
            done += n
    if pending:
        c0 = time.process_time()
        write_batch(con, layout, pending, t0)
        cpu += time.process_time() - c0
    con.executemany("INSERT INTO lanes(nid, lane, contig) VALUES (?,?,?)",
                    [(nid, 0, per_node) for nid in range(1, nodes + 1)])
    return cpu / max(1, timed_n)


# ---------------------------------------------------------------- queries, both ways
def q_feed(con: sqlite3.Connection, layout: str, nid: int, after: int, upto: int, limit: int) -> list[tuple]:
    if not layout.startswith("pack_blob"):  # the relay feed's own SQL (rows), with a pack-range bound for the view
        bound = "" if layout.startswith("rows") else f" AND r.nid=? AND r.lane=0 AND p.seq0 > {after} - {MAXPACK}"
        sql = ("SELECT r.seq, s.metric, s.unit, r.v, r.t FROM readings r JOIN series s ON s.sid=r.sid "
               "WHERE r.nid=? AND r.lane=0 AND r.seq > ? AND r.seq <= ? ORDER BY r.seq LIMIT ?")
        if bound:
            sql = ("SELECT p.seq0 + j.key AS seq, s.metric, s.unit, j.value->>2, j.value->>1 FROM packs p, "
                   "json_each(p.body) j JOIN series s ON s.sid=j.value->>0 WHERE p.nid=? AND p.lane=0 "
                   f"AND p.seq0 > ? - {MAXPACK} AND p.seq0 <= ? AND p.seq0 + j.key > ? AND p.seq0 + j.key <= ? "
                   "ORDER BY p.seq0, j.key LIMIT ?")
            return con.execute(sql, (nid, after, upto, after, upto, limit)).fetchall()
        return con.execute(sql, (nid, after, upto, limit)).fetchall()
    names = {sid: (m, u) for sid, m, u in con.execute("SELECT sid, metric, unit FROM series WHERE nid=?", (nid,))}
    out: list[tuple] = []
    for seq0, n, body in con.execute("SELECT seq0, n, body FROM packs WHERE nid=? AND lane=0 AND seq0 > ? AND seq0 <= ?"
                                     " ORDER BY seq0", (nid, after - MAXPACK, upto)):
        sids, ts, vs = unblob(body, n)
        for i in range(n):
            s = seq0 + i
            if after < s <= upto:
                m, u = names[sids[i]]
                out.append((s, m, u, vs[i], ts[i]))
                if len(out) >= limit:
                    return out
    return out


def q_range(con: sqlite3.Connection, layout: str, sid: int, since: float, until: float, span: float = 0.0
            ) -> list[tuple]:
    """One series' (t, v) in [since, until); span: the longest t_max - t_min of a stored pack (kept by the store)."""
    if layout.startswith("rows"):
        return con.execute("SELECT t, v FROM readings WHERE sid=? AND t >= ? AND t < ?", (sid, since, until)).fetchall()
    nid = sid // METRICS
    if layout == "pack_json":
        return con.execute("SELECT j.value->>1, j.value->>2 FROM packs p, json_each(p.body) j WHERE p.nid=? "
                           "AND p.t_min >= ? AND p.t_min < ? AND p.t_max >= ? AND j.value->>0 = ? "
                           "AND j.value->>1 >= ? AND j.value->>1 < ?",
                           (nid, since - span, until, since, sid, since, until)).fetchall()
    out = []
    for n, body in con.execute("SELECT n, body FROM packs WHERE nid=? AND t_min >= ? AND t_min < ? AND t_max >= ?",
                               (nid, since - span, until, since)):
        sids, ts, vs = unblob(body, n)
        out.extend((ts[i], vs[i]) for i in range(n) if sids[i] == sid and since <= ts[i] < until)
    return out


def q_recent(con: sqlite3.Connection, layout: str, sid: int, limit: int) -> list[tuple]:
    if layout.startswith("rows"):
        return con.execute("SELECT t, v FROM readings WHERE sid=? ORDER BY t DESC LIMIT ?", (sid, limit)).fetchall()
    nid = sid // METRICS
    if layout == "pack_json":
        return con.execute("SELECT j.value->>1 AS t, j.value->>2 FROM packs p, json_each(p.body) j WHERE p.nid=? "
                           "AND j.value->>0 = ? ORDER BY p.t_min DESC, t DESC LIMIT ?", (nid, sid, limit)).fetchall()
    out: list[tuple] = []
    for n, body in con.execute("SELECT n, body FROM packs WHERE nid=? ORDER BY t_min DESC", (nid,)):
        sids, ts, vs = unblob(body, n)
        out.extend((ts[i], vs[i]) for i in range(n - 1, -1, -1) if sids[i] == sid)
        if len(out) >= limit:
            break
    return out[:limit]


def q_dedupe(con: sqlite3.Connection, layout: str, nid: int, lo: int, hi: int) -> dict[int, tuple]:
    if layout.startswith("rows"):
        return {s: (a, b, c) for s, a, b, c in con.execute(
            "SELECT seq, sid, t, v FROM readings WHERE nid=? AND lane=0 AND seq BETWEEN ? AND ?", (nid, lo, hi))}
    out = {}
    for seq0, n, body in con.execute("SELECT seq0, n, body FROM packs WHERE nid=? AND lane=0 AND seq0 > ? AND seq0 <= ?",
                                     (nid, lo - MAXPACK, hi)):
        if layout == "pack_json":
            trip = json.loads(body)
            sids, ts, vs = [x[0] for x in trip], [x[1] for x in trip], [x[2] for x in trip]
        else:
            sids, ts, vs = unblob(body, n)
        for i in range(n):
            if lo <= seq0 + i <= hi:
                out[seq0 + i] = (sids[i], ts[i], vs[i])
    return out


def q_compact(con: sqlite3.Connection, layout: str, sid: int, cutoff: float) -> int:
    """tiers.maintain for one series: read the acked rows older than cutoff, delete them (rolled back)."""
    con.execute("BEGIN IMMEDIATE")
    try:
        if layout.startswith("rows"):
            rows = con.execute("SELECT r.t, r.v, r.lane, r.seq, r.nid FROM readings r JOIN lanes l ON l.nid=r.nid AND "
                               "l.lane=r.lane WHERE r.sid=? AND r.t < ? AND r.seq <= l.contig ORDER BY r.t",
                               (sid, cutoff)).fetchall()
            con.executemany("DELETE FROM readings WHERE nid=? AND lane=? AND seq=?", [(r[4], r[2], r[3]) for r in rows])
            return len(rows)
        # a pack holds several series: a pack goes once all of it is old (the rows of its series are read)
        nid = sid // METRICS
        packs = con.execute("SELECT seq0, n, body FROM packs WHERE nid=? AND lane=0 AND t_max < ?", (nid, cutoff)).fetchall()
        got = 0
        for seq0, n, body in packs:
            sids = [x[0] for x in json.loads(body)] if layout == "pack_json" else unblob(body, n)[0]
            got += sum(1 for s in sids if s == sid)
        con.executemany("DELETE FROM packs WHERE nid=? AND lane=0 AND seq0=?", [(nid, p[0]) for p in packs])
        return got
    finally:
        con.execute("ROLLBACK")


def timed(fn, reps: int) -> float:
    """Median wall ms of reps calls (single thread, nothing else in the process)."""
    out = []
    for _ in range(reps):
        c0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - c0) * 1000)
    out.sort()
    return round(out[len(out) // 2], 3)


CACHE = ("cache_size=-65536", "mmap_size=268435456")
LAYOUTS = {"rows": (ROWS_SCHEMA, ()),                  # today's table and connection
           "rows_cache": (ROWS_SCHEMA, CACHE),         # same table, 64 MiB page cache + mmap reads
           "rows_ckpt": (ROWS_SCHEMA, ("wal_autocheckpoint=10000",)),  # checkpoint every 40 MiB, not 4 MiB
           "rows_page1k": (ROWS_SCHEMA, ("page_size=1024",)),  # a node's dirty leaf is 1 KiB, not 4 KiB
           "rows_noidx": (NOIDX_SCHEMA, ()),           # what the (sid, t) index costs (queries need it)
           "pack_json": (PACK_SCHEMA, ()),
           "pack_blob": (PACK_SCHEMA.split("CREATE VIEW")[0], ()),
           "pack_blob_cache": (PACK_SCHEMA.split("CREATE VIEW")[0], CACHE)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, nargs="+", default=[20, 500])
    ap.add_argument("--per-node", type=int, default=4000, help="readings per node in the query store (20 nodes)")
    ap.add_argument("--pack", type=int, nargs="+", default=[10, 500], help="readings per pack")
    ap.add_argument("--batch", type=int, default=2000, help="readings per group commit ([store] batch_max)")
    ap.add_argument("--insert-total", type=int, default=40000, help="readings per insert measurement")
    ap.add_argument("--prefill", type=int, default=300000,
                    help="readings already in the store before the timed inserts (an hour of raw rows of a site)")
    ap.add_argument("--reps", type=int, default=15)
    ap.add_argument("--layouts", nargs="+", default=list(LAYOUTS))
    ap.add_argument("--quick", action="store_true", help="a short run: 20 nodes, packs of 10, small stores")
    a = ap.parse_args()
    if a.quick:
        a.nodes, a.pack, a.insert_total, a.prefill, a.per_node, a.reps = [20], [10], 10000, 50000, 1000, 3
    random.seed(1)
    out: dict[str, dict] = {}
    t0 = 1.7e9
    with tempfile.TemporaryDirectory() as tmp:
        for layout in a.layouts:
            res: dict[str, dict] = {"insert_us": {}, "commit_ms_p50_max": {}, "query_ms": {},
                                    "db_bytes_per_reading": None}
            for pack in a.pack:
                for nodes in a.nodes:
                    per = max(pack, a.insert_total // nodes)
                    pre = (a.prefill // nodes) // pack * pack
                    p = Path(tmp) / f"{layout}-{pack}-{nodes}.sqlite"
                    con = connect(p, layout)
                    walls: list[float] = []
                    case = f"pack{pack}_nodes{nodes}"
                    res["insert_us"][case] = round(fill(con, layout, nodes, pre + per, pack, a.batch, t0, pre,
                                                        walls) * 1e6, 3)
                    walls.sort()
                    res["commit_ms_p50_max"][case] = [round(walls[len(walls) // 2], 1), round(walls[-1], 1)] \
                        if walls else None
                    con.close()
                    for f in Path(tmp).glob(f"{layout}-{pack}-{nodes}.sqlite*"):
                        f.unlink()
            # the query store: 20 nodes, packs of 10, per-node readings each
            qn, per = 20, a.per_node
            p = Path(tmp) / f"{layout}-q.sqlite"
            con = connect(p, layout)
            fill(con, layout, qn, per, 10, a.batch, t0)
            con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            res["db_bytes_per_reading"] = round(os.path.getsize(p) / (qn * per), 1)
            span = 0.0 if layout.startswith("rows") else con.execute("SELECT MAX(t_max - t_min) FROM packs").fetchone()[0]
            mid = per // 2
            sid = 7 * METRICS + 1
            tmid = t0 + mid // METRICS
            q = res["query_ms"]
            q["feed_2000"] = timed(lambda: q_feed(con, layout, 7, mid + 3, per, 2000), a.reps)
            q["range_1h"] = timed(lambda: q_range(con, layout, sid, tmid - 1800, tmid + 1800, span), a.reps)
            q["window_60s"] = timed(lambda: q_range(con, layout, sid, tmid, tmid + 60, span), a.reps)
            q["recent_2000"] = timed(lambda: q_recent(con, layout, sid, 2000), a.reps)
            q["dedupe_pack10"] = timed(lambda: q_dedupe(con, layout, 7, mid + 1, mid + 10), a.reps)
            q["compact_half"] = timed(lambda: q_compact(con, layout, sid, tmid), max(3, a.reps // 5))
            # the answers must agree between layouts (same data): compared below
            res["answers"] = {"feed": len(q_feed(con, layout, 7, mid + 3, per, 2000)),
                              "range": len(q_range(con, layout, sid, tmid - 1800, tmid + 1800, span)),
                              "window": len(q_range(con, layout, sid, tmid, tmid + 60, span)),
                              "recent": len(q_recent(con, layout, sid, 2000)),
                              "dedupe": len(q_dedupe(con, layout, 7, mid + 1, mid + 10))}
            con.close()
            out[layout] = res
            print(layout, json.dumps(res), flush=True)
    answers = {json.dumps(r["answers"], sort_keys=True) for r in out.values()}
    out["answers_agree"] = len(answers) == 1  # type: ignore[assignment]
    print(json.dumps(out))


if __name__ == "__main__":
    main()
