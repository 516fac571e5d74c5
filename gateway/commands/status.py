"""`fogline status`: gateway health from the data dir (metrics snapshot, store counts, dead letters)."""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
import time

from fogline.gateway import config as config_mod
from fogline.gateway.commands.devices import db_path
from fogline.gateway.ops.metrics import read_snapshot


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("status", help="gateway status from its data dir (running?, rates, dead letters)")
    p.add_argument("--config", "-c", default=None)
    p.add_argument("--data-dir", default=None)
    p.add_argument("--json", action="store_true")
    return p


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def collect(db, snapshot_path) -> dict:
    """Status dict: process, counters, store row counts, dead letters by reason."""
    snap = read_snapshot(snapshot_path) or {}
    out: dict = {"data_dir": str(db.parent), "snapshot_age_s": None, "running": False, "counters": {},
                 "gauges": {}}
    if snap:
        out["snapshot_age_s"] = round(time.time() - snap.get("time", 0), 1)
        out["running"] = _alive(snap.get("pid")) and out["snapshot_age_s"] < 60
        out["pid"] = snap.get("pid")
        for kind in ("counters", "gauges"):
            for name, rows in snap.get(kind, {}).items():
                out[kind][name] = sum(r["value"] for r in rows) if kind == "counters" else \
                    {",".join(f"{k}={v}" for k, v in r["labels"].items()) or "": r["value"] for r in rows}
    if db.exists():
        from fogline.gateway.store.core import connect
        con = connect(db, readonly=True)
        try:
            q = lambda s: con.execute(s).fetchone()[0]  # noqa: E731
            out["store"] = {"readings_raw": q("SELECT COUNT(*) FROM readings"),
                            "blocks": q("SELECT COUNT(*) FROM blocks"),
                            "readings_compressed": q("SELECT IFNULL(SUM(n),0) FROM blocks"),
                            "windows": q("SELECT COUNT(*) FROM windows"),
                            "nodes": q("SELECT COUNT(*) FROM nodes"),
                            "db_bytes": sum(p.stat().st_size for p in db.parent.glob(db.name + "*"))}
            out["dead_letters"] = dict(con.execute(
                "SELECT reason, COUNT(*) FROM dead_letters GROUP BY reason").fetchall())
            out["gaps_skipped"] = q("SELECT COUNT(*) FROM gaps")
            try:  # tables a store from before the relay feed / dead-letter cap does not have
                out["dead_letter_totals"] = dict(con.execute("SELECT reason, n FROM dead_letter_totals").fetchall())
                out["relay_feed_behind"] = q(
                    "SELECT IFNULL(SUM(MAX(l.contig - IFNULL(c.seq, 0), 0)), 0) FROM lanes l "
                    "JOIN relay_lanes f ON f.lane=l.lane LEFT JOIN relay_cursor c ON c.nid=l.nid AND c.lane=l.lane")
                out["relay_feed_behind"] += q("SELECT COUNT(*) FROM relay_backfill")  # late fills below a cursor
            except sqlite3.OperationalError:
                pass
        finally:
            con.close()
    return out


def run(args: argparse.Namespace) -> int:
    try:
        db = db_path(args)
    except config_mod.ConfigError as e:
        print(f"fogline status: {e}", file=sys.stderr)
        return 2
    if not db.exists() and not (db.parent / "metrics.json").exists():
        print(f"fogline status: no gateway data in {db.parent} (neither {db.name} nor metrics.json): pass the "
              f"gateway's --data-dir or --config", file=sys.stderr)
        return 1
    try:
        st = collect(db, db.parent / "metrics.json")
    except sqlite3.Error as e:
        print(f"fogline status: cannot read {db}: {e}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(st, indent=1, default=str))
        return 0
    age = "no metrics snapshot" if st["snapshot_age_s"] is None else f"metrics snapshot age {st['snapshot_age_s']} s"
    print(f"gateway: {'running (pid %s)' % st.get('pid') if st['running'] else 'not running'}; "
          f"data dir {st['data_dir']}; {age}")
    c = st["counters"]
    for k in ("messages_in", "readings_in", "readings_stored", "duplicates", "acks_sent", "windows_closed",
              "dead_letters", "commit_errors", "mqtt_disconnects", "ble_adverts", "ble_refused"):
        if k in c:
            print(f"  {k:18} {c[k]:g}")
    if "store" in st:
        print("  store: " + ", ".join(f"{k}={v}" for k, v in st["store"].items()))
    if st.get("dead_letters"):
        print("  dead letters: " + ", ".join(f"{k}={v}" for k, v in sorted(st["dead_letters"].items())))
    if st.get("dead_letter_totals"):
        print("  dead letters ever: " + ", ".join(f"{k}={v}" for k, v in sorted(st["dead_letter_totals"].items())))
    if "relay_feed_behind" in st:
        print(f"  relay feed: {st['relay_feed_behind']} stored readings not yet handed to the outbox")
    _print_late(st)
    _print_relay(st, db.parent)
    _print_cluster(st)
    return 0 if st["running"] or not st.get("pid") else 0


def _print_late(st: dict) -> None:
    """Late data: readings for fired windows, corrections sent (their bytes apart from first summaries), re-opens."""
    g, c = st.get("gauges", {}), st.get("counters", {})
    v = lambda name: int(sum(g.get(name, {}).values()) or 0)  # noqa: E731
    if "late_readings" not in g:
        return
    line = (f"  late data: late readings {v('late_readings')}, window corrections {v('window_corrections')}, "
            f"re-opened from the store {int(c.get('windows_reopened', 0))}, kept for corrections "
            f"{v('windows_kept_for_corrections')}")
    if "relay_correction_bytes" in g:
        line += (f"; upstream correction bytes {v('relay_correction_bytes')} ({v('relay_correction_items')} items) vs "
                 f"summary bytes {v('relay_summary_bytes')} ({v('relay_summary_items')} items)")
    print(line)


def _print_cluster(st: dict) -> None:
    """Multi-gateway site ([cluster] gauges): live gateways, nodes served, leases, takeovers."""
    g = st.get("gauges", {})
    if "cluster_live_gateways" not in g:
        return
    v = lambda name: int(sum(g.get(name, {}).values()) or 0)  # noqa: E731
    print(f"  cluster: live gateways {v('cluster_live_gateways')}, serving {v('cluster_primary_nodes')} nodes, "
          f"leases {v('cluster_leases')}, takeovers {v('cluster_takeovers')}, handovers {v('cluster_handovers')}, "
          f"messages held for another primary {v('cluster_not_primary')}, peers died {v('cluster_peers_dead')}")


def _print_relay(st: dict, data_dir) -> None:
    """Cloud link, breaker, bandwidth mode, outbox depth and twin status (the relay's gauges + the twin report)."""
    g = st.get("gauges", {})
    one = lambda name: next(iter(g.get(name, {}).values()), None)  # noqa: E731
    if "cloud_breaker_state" in g:
        breaker = {0: "closed", 1: "half-open", 2: "open"}.get(int(one("cloud_breaker_state") or 0))
        mode = {0: "low", 1: "middle", 2: "high"}.get(int(one("cloud_mode") or 0))
        rows = {k.split("=", 1)[-1]: int(v) for k, v in g.get("outbox_rows", {}).items()}
        print(f"  cloud: connected={int(one('cloud_connected') or 0)} breaker={breaker} mode={mode} "
              f"kbps={one('cloud_kbps')} outbox rows {rows}")
        dropped = {k: int(v) for name in ("outbox_rejected_full", "outbox_overwritten", "outbox_expired")
                   for k, v in g.get(name, {}).items() if v}
        if dropped:
            print(f"  outbox dropped by policy: {dropped}")
    rep = data_dir / "twin_report.json"
    if rep.exists():
        try:
            r = json.loads(rep.read_text())
        except ValueError:
            return
        bad = [n for n in r.get("nodes", []) if n.get("status") != "in_sync"]
        print(f"  twin: {len(r.get('nodes', [])) - len(bad)} in sync, {len(bad)} not"
              + (f"; file error: {r['file_error']}" if r.get("file_error") else ""))
        for n in bad:
            print(f"    {n['node']}: {n['status']} desired={n['desired']} reported={n['reported']}"
                  + (f" ({n['reason']})" if n.get("reason") else ""))
