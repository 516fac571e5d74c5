"""`fogline query --node N --metric M --since --until`: one series across the tiers, each point with its tier.

hot = raw rows in the gateway store, warm = its compressed blocks, cold = the ranges pruned here, fetched from
the cloud tier's query API when `[cloud] query_url` is set (else those ranges are only named).
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from fogline.gateway import config as config_mod


def parse_time(s: str, now: float) -> float:
    """Epoch seconds from '1700000000', ISO 8601, or a relative '-15m' / '-2h' / '-1d' / 'now'."""
    s = s.strip()
    if s == "now":
        return now
    if s and s[-1] in "smhd":  # "-2h" or "2h": that long ago
        mult = {"s": 1, "m": 60, "h": 3600, "d": 86400}[s[-1]]
        return now - abs(float(s[:-1])) * mult
    try:
        return float(s)
    except ValueError:
        pass
    dt = datetime.fromisoformat(s)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.timestamp()


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("query", help="read a node's metric across hot/warm storage; says what only the cloud has")
    p.add_argument("--config", "-c", default=None)
    p.add_argument("--data-dir", default=None)
    p.add_argument("--node", required=True)
    p.add_argument("--metric", required=True)
    p.add_argument("--since", default="1h",
                   help="epoch s, ISO time, or an age like 15m / 2h / 1d (default: %(default)s)")
    p.add_argument("--until", default="now")
    p.add_argument("--windows", action="store_true", help="also list aggregated windows")
    p.add_argument("--json", action="store_true")
    p.add_argument("--limit", type=int, default=50, help="points printed in table mode")
    p.add_argument("--cloud-url", default=None, help="override [cloud] query_url ('' = do not ask the cloud)")
    return p


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="seconds")


def run(args: argparse.Namespace) -> int:
    from fogline.gateway.cloudsvc.query_client import tiered
    from fogline.gateway.store.core import connect
    from fogline.gateway.store.tiers import query
    now = time.time()
    try:
        since, until = parse_time(args.since, now), parse_time(args.until, now)
        cfg = config_mod.load(args.config, {"site": {"data_dir": args.data_dir}} if args.data_dir else None)
        db = Path(cfg.site.data_dir) / cfg.store.db_file
    except (ValueError, config_mod.ConfigError) as e:
        print(f"fogline query: {e}", file=sys.stderr)
        return 2
    if not db.exists():
        print(f"fogline query: no gateway database at {db}", file=sys.stderr)
        return 1
    try:
        con = connect(db, readonly=True)
        res = query(con, args.node, args.metric, since, until, args.windows)
        con.close()
    except sqlite3.Error as e:
        print(f"fogline query: cannot read {db}: {e}", file=sys.stderr)
        return 1
    if res is None:
        print(f"fogline query: no series {args.node}/{args.metric}", file=sys.stderr)
        return 1
    url = cfg.cloud.query_url if args.cloud_url is None else args.cloud_url
    cloud = {"url": url, "token": cfg.cloud.query_token, "timeout_s": cfg.cloud.query_timeout_s} if url else None
    points, cloud_error = tiered(res, cloud, cfg.site.id)
    sources = dict(res.sources)
    if cloud:
        sources["cloud"] = sum(1 for p in points if p[2] == "cold")
    if cloud_error:
        print(f"fogline query: {cloud_error}", file=sys.stderr)
    if args.json:
        print(json.dumps({"node": res.node, "metric": res.metric, "unit": res.unit, "since": since, "until": until,
                          "points": points, "sources": sources, "cloud_only": res.cloud_only,
                          "cloud_error": cloud_error, "windows": res.windows}))
        return 0
    print(f"{res.node}/{res.metric} [{res.unit or ''}] {_iso(since)} .. {_iso(until)}: {len(points)} readings "
          f"({', '.join(f'{k} {v}' for k, v in sources.items())})")
    for a, b in res.cloud_only:
        how = "fetched from the cloud" if cloud and not cloud_error else "pruned here by retention"
        print(f"  only in the cloud: {_iso(a)} .. {_iso(b)} ({how})")
    pts = points if len(points) <= args.limit else points[-args.limit:]
    if len(pts) < len(points):
        print(f"  (last {len(pts)} shown)")
    for t, v, tier in pts:
        print(f"  {_iso(t)}  {v:g}  {tier}")
    for w in res.windows:
        print(f"  window {w['length']:g}s {_iso(w['start'])} n={w['count']} mean={w['mean']:.4g} "
              f"min={w['min']:.4g} max={w['max']:.4g} sd={w['stddev']:.3g}")
    return 0
