"""CPU per reading of the gateway's own ingest work, no broker: validate -> admit -> group commit -> aggregate -> hooks.

The drain figures of gateway_ingest.py include paho and the broker and swing by +-20 % on a shared host;
this drives the same Gateway code (`_ingest_one` per message, then `_commit` per group of --batch messages,
SQLite with synchronous=FULL in a temporary directory, hot tier, windows, an on_readings hook that counts)
from payloads built beforehand, and reports process CPU (store thread included) per reading, median and
minimum of --repeat runs, each on a fresh store (the minimum is the run least disturbed by other load when
comparing two versions of the code), split by thread CPU into validate + admit (loop thread), commit_batch
(store thread) and what follows a commit (loop thread: counters, hot tier, windows, hooks). Last line: one JSON object.

--load-rows N instead times a gateway restart: Store() opening a store of N readings (--nodes lanes, holes above
some cursors), against the full scan of `readings` that Store._load did before it read only the rows above each cursor.

Usage: python tools/bench/ingest_path.py [--nodes 20] [--msgs 500] [--pack 10] [--batch 200] [--repeat 5]
       python tools/bench/ingest_path.py --load-rows 1000000 [--nodes 20] [--repeat 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO), str(REPO / "tools" / "bench")]


async def _one_run(payloads: list[tuple[str, bytes]], batch: int, data: Path) -> tuple[float, int, list[float]]:
    from fogline.gateway import config
    from fogline.gateway.app import Gateway
    from fogline.gateway.store.core import Store
    from gateway_ingest import SITE

    cfg = config.from_dict({"site": {"id": SITE, "data_dir": str(data)},
                            "tiers": {"maintenance_s": 3600.0, "compress_after_s": 1e9}})
    gw = Gateway(cfg)
    data.mkdir(parents=True, exist_ok=True)
    sc = cfg.store
    gw.store = await gw._run(Store, data / sc.db_file, sc.synchronous, cfg.ingest.gap_skip_s)
    got = [0]
    gw.on_readings(lambda rs: got.__setitem__(0, got[0] + len(rs)))
    parts = [0.0, 0.0, 0.0]  # loop thread: validate + admit; store thread: commit_batch; loop: the rest of _commit
    commit = gw.store.commit_batch

    def timed_commit(*args):  # noqa: ANN002, ANN202
        c = time.thread_time()
        try:
            return commit(*args)
        finally:
            parts[1] += time.thread_time() - c
    gw.store.commit_batch = timed_commit  # type: ignore[method-assign]
    now = time.time()
    cpu0 = time.process_time()
    for i in range(0, len(payloads), batch):
        c = time.thread_time()
        for topic, p in payloads[i:i + batch]:
            gw._ingest_one(topic, p, now, "mqtt")
        msgs, gw._msgs = gw._msgs, []
        gw._n_readings = 0
        c2 = time.thread_time()
        parts[0] += c2 - c
        await gw._commit(msgs, [], [], {})
        parts[2] += time.thread_time() - c2
    cpu = time.process_time() - cpu0
    gw.store.close()
    gw._exec.shutdown(wait=True)
    return cpu, got[0], parts


def _load_bench(rows: int, nodes: int, repeat: int) -> int:
    """Seconds to open a Store of `rows` readings (wall, best of `repeat`) vs the old full scan of readings."""
    from fogline.gateway.store.base import connect
    from fogline.gateway.store.core import Store

    per = rows // nodes
    with tempfile.TemporaryDirectory(prefix="fogline-load-") as td:
        db = Path(td) / "ingest.sqlite"
        con = connect(db, "OFF")  # building the store is not what is timed
        con.executemany("INSERT INTO nodes(nid, name) VALUES (?, ?)", [(n, f"n{n}") for n in range(1, nodes + 1)])
        con.executemany("INSERT INTO series(sid, nid, metric) VALUES (?, ?, 'm')",
                        [(n, n) for n in range(1, nodes + 1)])
        con.execute("BEGIN")
        for n in range(1, nodes + 1):
            con.executemany("INSERT INTO readings VALUES (?, 0, ?, ?, ?, 20.5, ?)",
                            ((n, s, n, 1e9 + s, 1e9 + s) for s in range(1, per + 1)
                             if not (n % 3 == 0 and s == per - 50)))
        # every third lane has a hole 50 seqs below its newest reading: 50 stored seqs above its cursor
        con.executemany("INSERT INTO lanes(nid, lane, contig) VALUES (?, 0, ?)",
                        [(n, per - 51 if n % 3 == 0 else per) for n in range(1, nodes + 1)])
        con.execute("COMMIT")
        con.close()
        new, old = [], []
        for _ in range(repeat):
            t = time.perf_counter()
            st = Store(db)
            new.append(time.perf_counter() - t)
            above = sum(len(x.above) for x in st.lanes.values())
            t = time.perf_counter()
            st.con.execute("SELECT r.nid, r.lane, r.seq FROM readings r LEFT JOIN lanes l ON l.nid=r.nid "
                           "AND l.lane=r.lane WHERE r.seq > IFNULL(l.contig, 0)").fetchall()
            old.append(time.perf_counter() - t)
            st.close()
    print(f"Store() load of {per * nodes} readings, {nodes} lanes, {above} seqs above the cursors: "
          f"{min(new):.4f} s (best of {repeat}); the full readings scan of the load before: {min(old):.3f} s")
    print(json.dumps({"readings": per * nodes, "lanes": nodes, "above": above, "load_s": round(min(new), 4),
                      "full_scan_s": round(min(old), 4)}))
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, default=20)
    ap.add_argument("--msgs", type=int, default=500, help="messages per node")
    ap.add_argument("--pack", type=int, default=10)
    ap.add_argument("--batch", type=int, default=200, help="messages per group commit")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--load-rows", type=int, default=0, help="time Store() opening a store of this many readings")
    a = ap.parse_args()
    if a.load_rows:
        return _load_bench(a.load_rows, a.nodes, a.repeat)
    from gateway_ingest import build_payloads

    payloads = build_payloads(a.nodes, a.msgs, a.pack, time.time() - a.msgs * a.pack - 60)
    total = len(payloads) * a.pack
    runs, split = [], []
    for k in range(a.repeat):
        with tempfile.TemporaryDirectory(prefix="fogline-path-") as td:
            cpu, got, parts = asyncio.run(_one_run(payloads, a.batch, Path(td) / "data"))
        if got != total:
            print(f"run {k}: {got} of {total} readings stored", file=sys.stderr)
            return 1
        runs.append(cpu / total * 1e6)
        split.append([x / total * 1e6 for x in parts])
    us = statistics.median(runs)
    best = split[runs.index(min(runs))]
    print(f"{a.nodes} nodes, packs of {a.pack}, {a.batch} messages a commit: {us:.2f} us CPU per reading "
          f"median, {min(runs):.2f} min (runs {', '.join(f'{r:.2f}' for r in runs)}); min run: validate+admit "
          f"{best[0]:.2f}, commit_batch {best[1]:.2f}, after commit {best[2]:.2f} us (thread CPU)")
    print(json.dumps({"nodes": a.nodes, "pack": a.pack, "batch": a.batch, "readings": total,
                      "cpu_us_per_reading": round(us, 2),
                      "min_cpu_us_per_reading": round(min(runs), 2),
                      "min_run_split_us": {"validate_admit": round(best[0], 2), "commit_batch": round(best[1], 2),
                                           "after_commit": round(best[2], 2)}, "runs": [round(r, 2) for r in runs]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
