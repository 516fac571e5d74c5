"""The ledger: what the nodes kept against what the gateways stored and the cloud holds (chaos, failover, benches).

One set of rules for every system test, the stricter of the chaos and failover ones where they differed:
- the ground truth is each node's flash log: kept = the highest durable seq per lane (FINAL line);
- a seq no gateway stored is explained only by a gap the gateway skipped on the node's word, and only up
  to the readings the node's capacity policy counted as dropped in that lane; a gap a gateway skipped
  because another gateway acked it (why "cluster: ...") explains nothing: it must be stored elsewhere;
- nothing stored above kept (no seq reuse); the cloud record after de-duplication by row key, then by
  (node, seq) per lane, holds every stored alert (and forwarded reading) and nothing never stored;
- every stored reading lies in a delivered summary window whose final revision matches it.
"""

from __future__ import annotations

import math
import sqlite3
from pathlib import Path
from typing import Any

from fogline.shared import summary as wire
from harness.cloudkit import envelope_body

LANES = ((0, "up"), (1, "alert"))


def ro(db: Path) -> sqlite3.Connection:
    """A read-only connection to a gateway database (the gateway may still be writing)."""
    return sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)


def stored_seqs(dbs: dict[str, Path]) -> dict[str, dict[tuple[str, int], set[int]]]:
    """gateway -> (node, lane id) -> stored seqs."""
    out: dict[str, dict[tuple[str, int], set[int]]] = {}
    for g, db in dbs.items():
        d: dict[tuple[str, int], set[int]] = {}
        if db.exists():
            con = ro(db)
            try:
                for node, lane, seq in con.execute("SELECT n.name, r.lane, r.seq FROM readings r "
                                                   "JOIN nodes n ON n.nid=r.nid"):
                    d.setdefault((node, lane), set()).add(seq)
            finally:
                con.close()
        out[g] = d
    return out


def stored_by_lane(dbs: dict[str, Path]) -> dict[str, set[tuple[str, int]]]:
    """(node, seq) any gateway stored, per lane name."""
    out: dict[str, set[tuple[str, int]]] = {"up": set(), "alert": set()}
    for d in stored_seqs(dbs).values():
        for (node, li), seqs in d.items():
            if li in (0, 1):
                out[LANES[li][1]].update((node, s) for s in seqs)
    return out


def _skip_gaps(dbs: dict[str, Path]) -> dict[tuple[str, int], set[int]]:
    """(node, lane id) -> seqs a gateway skipped on the node's word (not the cluster's: those explain nothing)."""
    out: dict[tuple[str, int], set[int]] = {}
    for db in dbs.values():
        if not db.exists():
            continue
        con = ro(db)
        try:
            for node, lane, lo, hi, why in con.execute("SELECT n.name, g.lane, g.lo, g.hi, g.why FROM gaps g "
                                                       "JOIN nodes n ON n.nid=g.nid"):
                if not str(why).startswith("cluster:"):
                    out.setdefault((node, lane), set()).update(range(lo, hi + 1))
        finally:
            con.close()
    return out


def lane_drops(fin: dict, lane: str) -> int:
    """Readings of a lane the node's capacity policy dropped (persisted counters, FINAL line)."""
    d = fin.get("dropped")
    if isinstance(d, dict):
        return int(d.get(f"{lane}_capacity", 0)) + int(d.get(f"{lane}_nospace", 0))
    # a runner without per-reason counters: the total is all "up" (alerts go only when no readings are left)
    return int(fin.get("store", {}).get("dropped_by_policy", 0)) if lane == "up" else 0


def _node_order(name: str) -> tuple[int, str]:
    return (int(name[1:]) if name[1:].isdigit() else 0, name)


def reconcile(dbs: dict[str, Path], finals: dict[str, dict], peaks: dict[str, dict] | None = None,
              cloud_seen: dict[str, set[tuple[str, int]] | None] | None = None) -> list[dict[str, Any]]:
    """Per node and lane: the node's durable seqs 1..kept against the union of what the gateways stored,
    skipped on the node's word (explained only up to its counted policy drops) and, with cloud_seen, the cloud got."""
    per_gw = stored_seqs(dbs)
    gaps = _skip_gaps(dbs)
    peaks = peaks or {}
    rows = []
    for node, fin in sorted(finals.items(), key=lambda kv: _node_order(kv[0])):
        st = fin.get("store", {})
        pk = peaks.get(node, {})
        for li, lane in LANES:
            kept = int(st.get(f"durable_{lane}", 0))  # highest seq the node holds durably (ground truth)
            per = {g: per_gw[g].get((node, li), set()) for g in dbs}
            seqs = set().union(*per.values())
            skipped = {s for s in gaps.get((node, li), set()) if s not in seqs and s <= kept}
            drops = lane_drops(fin, lane)
            missing = [s for s in range(1, kept + 1) if s not in seqs and s not in skipped]
            r = {"node": node, "lane": lane, "sampled": pk.get("sampled" if lane == "up" else "alerts_raised", 0),
                 "kept": kept, "acked": int(fin.get("acked", {}).get(lane, 0) or 0), "stored": len(seqs),
                 **{f"at_{g}": len(s) for g, s in per.items()},
                 "on_both": len(set.intersection(*per.values())) if per else 0,
                 "skipped": len(skipped), "policy": drops,
                 "unexplained": len(missing) + max(0, len(skipped) - drops), "missing": missing[:10],
                 "beyond_kept": len([s for s in seqs if s > kept]),
                 "backlog": int(fin.get("backlog", {}).get(lane, 0)),
                 "dropped_by_policy": int(st.get("dropped_by_policy", 0))}
            if cloud_seen is not None and cloud_seen.get(lane) is not None:
                got = {s for (n, s) in cloud_seen[lane] if n == node}  # type: ignore[union-attr]
                r["cloud"] = len([s for s in got if s <= kept])
                r["cloud_beyond"] = len([s for s in got if s > kept])
                lost = [s for s in range(1, kept + 1) if s not in got and s not in skipped]
                r["cloud_unexplained"] = len(lost) + max(0, len(skipped) - drops)
                r["cloud_missing"] = lost[:10]
            rows.append(r)
    return rows


def dead_letters(db: Path) -> dict[str, int]:
    """Dead-lettered messages by reason (the persisted totals, else the rows still held)."""
    con = ro(db)
    try:
        try:
            dead = dict(con.execute("SELECT reason, n FROM dead_letter_totals"))
        except sqlite3.Error:
            dead = {}
        return dead or dict(con.execute("SELECT reason, count(*) FROM dead_letters GROUP BY reason"))
    finally:
        con.close()


def _cloud_sets(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Cloud items de-duplicated by row key, then counted per (node, seq) of each lane; summaries by window key."""
    by_key: dict[str, dict[str, Any]] = {}
    key_dups = 0
    for it in items:
        if it["k"] in by_key:
            key_dups += 1  # a re-send of the same outbox row (same key): absorbed
            continue
        by_key[it["k"]] = it
    seen: dict[str, dict[tuple[str, int], int]] = {"alert": {}, "up": {}}
    summaries: dict[tuple, set[str]] = {}  # window key (shared/summary.py) -> gateways that sent one
    latest: dict = {}                      # window key -> its highest revision (what the cloud keeps)
    counts: dict[str, int] = {}
    for it in by_key.values():
        b = envelope_body(it)
        lane = it.get("lane")
        if lane == "alert":
            k = (b["node"], b["seq"])
            seen["alert"][k] = seen["alert"].get(k, 0) + 1
        elif lane == "raw" and isinstance(b, dict) and b.get("lane", "up") == "up" and "first_seq" in b:
            for i in range(len(b.get("records", []))):
                k = (b["node"], b["first_seq"] + i)
                seen["up"][k] = seen["up"].get(k, 0) + 1
        elif lane == "summary" and isinstance(b, dict) and wire.body_key(b) is not None:
            sk = wire.body_key(b)
            if sk not in summaries and b.get("node"):
                counts[b["node"]] = counts.get(b["node"], 0) + int(b.get("count", 0))
            summaries.setdefault(sk, set()).add(it.get("gw", ""))
            wire.keep_highest(latest, b)
    return {"seen": seen, "summaries": summaries, "latest": latest, "counts": counts, "keys": len(by_key),
            "key_dups": key_dups}


def reconcile_cloud(stored: dict[str, set[tuple[str, int]]], items: list[dict[str, Any]], bad: int,
                    forward_readings: bool, deliveries: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The cloud record after de-duplication: each stored alert (and, with forward_readings, each stored up
    reading) once; nothing the gateways never stored. deliveries: the wire tap, for summaries sent twice."""
    cs = _cloud_sets(items)
    ws = _cloud_sets(deliveries) if deliveries is not None else cs
    seen = cs["seen"]
    per_node: dict[str, dict[str, int]] = {}
    for lane in ("alert", "up") if forward_readings else ("alert",):
        st, sn = stored.get(lane, set()), seen[lane]
        for node, seq in st | set(sn):
            r = per_node.setdefault(node, {f"{ln}_{k}": 0 for ln in ("alert", "up")
                                           for k in ("stored", "in_cloud", "missing", "not_stored", "dups")})
            r[f"{lane}_stored"] += (node, seq) in st
            r[f"{lane}_in_cloud"] += (node, seq) in sn
            r[f"{lane}_missing"] += (node, seq) in st and (node, seq) not in sn
            r[f"{lane}_not_stored"] += (node, seq) not in st
            r[f"{lane}_dups"] += max(0, sn.get((node, seq), 0) - 1)  # same item under another key: absorbed
    up, al = stored.get("up", set()), stored.get("alert", set())
    dup_up = sum(n - 1 for n in seen["up"].values())
    dup_alert = sum(n - 1 for n in seen["alert"].values())
    return {"per_node": dict(sorted(per_node.items())),
            "missing": sum(r["alert_missing"] + r["up_missing"] for r in per_node.values()),
            "forward_readings": forward_readings, "forwarding": forward_readings,
            "readings_stored": len(up), "readings_in_cloud": len(seen["up"]),
            "readings_missing": len(up - set(seen["up"])) if forward_readings else None,
            "readings_not_stored": len(set(seen["up"]) - up),
            "alerts_stored": len(al), "alerts_in_cloud": len(seen["alert"]),
            "alerts_missing": len(al - set(seen["alert"])), "alerts_not_stored": len(set(seen["alert"]) - al),
            "seen_up": set(seen["up"]), "seen_alert": set(seen["alert"]),
            "summaries": len(cs["summaries"]), "summary_counts": cs["counts"],
            "summary_corrections": sum(1 for b in cs["latest"].values() if b.get(wire.CORR)),
            "doubled_summaries": sum(1 for g in ws["summaries"].values() if len(g) > 1),
            "keys": cs["keys"], "deliveries": len(items), "key_dups": cs["key_dups"],
            "duplicate_readings": dup_up, "duplicate_alerts": dup_alert, "seq_dups": dup_up + dup_alert,
            "undecodable": bad}


def latest_windows(items: list[dict[str, Any]]) -> dict:
    """The cloud's window record after de-duplication by row key: the highest revision per window key."""
    from harness.cloudkit import latest_windows as latest
    by_key = {it["k"]: it for it in items}
    return latest(list(by_key.values()))


def reconcile_summaries(db: Path, latest: dict, length: float) -> dict[str, Any]:
    """The gateway's stored readings against the cloud's final window revisions of `length`.

    stored_in_no_summary: stored readings whose window the cloud does not hold (per node/lane in
    no_summary_by); windows_mismatch: windows whose final count/min/max/mean differ from the stored
    readings of that window (or that cover none)."""
    from fogline.gateway.store.tiers import unpack_block

    con = ro(db)
    truth: dict[tuple, list] = {}
    by: dict[str, int] = {}
    try:
        rows = con.execute("SELECT n.name, s.metric, r.lane, r.t, r.v FROM readings r JOIN series s ON s.sid=r.sid "
                           "JOIN nodes n ON n.nid=s.nid").fetchall()
        for name, metric, data in con.execute("SELECT n.name, s.metric, b.data FROM blocks b JOIN series s ON "
                                              "s.sid=b.sid JOIN nodes n ON n.nid=s.nid"):
            rows.extend((name, metric, 0, t, v) for t, v in unpack_block(data))
    finally:
        con.close()
    for node, metric, lane, t, v in rows:
        start = math.floor(t / length) * length
        k = wire.key(node, metric, start, start + length)
        truth.setdefault(k, []).append(v)
        if k not in latest:
            lk = f"{node}/{'alert' if lane == 1 else 'up'}"
            by[lk] = by.get(lk, 0) + 1
    mismatch = []
    held = [(k, b) for k, b in latest.items() if k[1] != wire.SET and k[2] == length]
    for k, b in held:
        vals = truth.get(k)
        if vals is None or b.get("count") != len(vals) or b.get("min") != min(vals) or b.get("max") != max(vals) \
                or not math.isclose(b.get("mean", math.nan), math.fsum(vals) / len(vals), rel_tol=1e-9, abs_tol=1e-9):
            mismatch.append({"key": k, "cloud": {f: b.get(f) for f in ("count", "min", "max", "mean", "rev")},
                             "stored": None if vals is None else {"count": len(vals), "min": min(vals),
                                                                  "max": max(vals), "mean": math.fsum(vals) / len(vals)}})
    return {"windows_in_cloud": len(held), "windows_stored": len(truth),
            "stored_in_no_summary": sum(by.values()), "no_summary_by": by,
            "windows_mismatch": len(mismatch), "mismatch_examples": mismatch[:3],
            "windows_corrected_in_cloud": sum(1 for _, b in held if b.get(wire.CORR))}
