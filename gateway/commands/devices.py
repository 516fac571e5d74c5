"""`fogline devices`: the gateway's device registry (from node state messages, uplinks and adverts)."""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import time
from pathlib import Path

from fogline.gateway import config as config_mod


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("devices", help="list known nodes (last seen, link, battery, backlog, versions)")
    p.add_argument("--config", "-c", default=None, help="gateway TOML file")
    p.add_argument("--data-dir", default=None, help="override [site] data_dir")
    p.add_argument("--json", action="store_true", help="print JSON")
    return p


def db_path(args: argparse.Namespace) -> Path:
    """Ingest database path from --config/--data-dir."""
    ov = {"site": {"data_dir": args.data_dir}} if getattr(args, "data_dir", None) else None
    cfg = config_mod.load(args.config, ov)
    return Path(cfg.site.data_dir) / cfg.store.db_file


def load_devices(db: Path) -> list[dict]:
    from fogline.gateway.store.core import connect
    con = connect(db, readonly=True)
    try:
        rows = con.execute("SELECT node, data FROM devices ORDER BY node").fetchall()
    finally:
        con.close()
    return [json.loads(d) for _, d in rows]


def _ago(t: float | None, now: float) -> str:
    if not t:
        return "-"
    s = now - t
    return f"{s:.0f}s" if s < 120 else f"{s / 60:.0f}m" if s < 7200 else f"{s / 3600:.1f}h"


def _uplink(q: dict | None) -> str:
    """The node's uplink quality from `state` (loss fraction, last PUBACK round trip)."""
    if not q:
        return "-"
    rtt = q.get("rtt_ms")
    return f"loss {q.get('loss', 0):.2f}" + (f" rtt {rtt}ms" if rtt is not None else "")


def _epoch(d: dict) -> str:
    """The node's epoch in hex and how often its seqs restarted (flash erased, board replaced)."""
    e = d.get("epoch")
    if not e:
        return "-"
    n = d.get("epoch_resets", 0)
    return f"{e:08x}" + (f" ({n} reset{'s' if n != 1 else ''})" if n else "")


def run(args: argparse.Namespace) -> int:
    try:
        db = db_path(args)
    except config_mod.ConfigError as e:
        print(f"fogline devices: {e}", file=sys.stderr)
        return 2
    if not db.exists():
        print(f"fogline devices: no gateway database at {db}", file=sys.stderr)
        return 1
    try:
        devs = load_devices(db)
    except sqlite3.Error as e:
        print(f"fogline devices: cannot read {db}: {e}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(devs, indent=1))
        return 0
    now = time.time()
    from rich.console import Console
    from rich.table import Table
    t = Table(title=f"{len(devs)} devices ({db})")
    for col in ("node", "link", "last seen", "rssi", "battery", "power", "uplink", "fw", "config", "backlog", "dropped",
                "readings", "epoch", "state"):
        t.add_column(col)
    for d in devs:
        rej = d.get("config_rejected")
        t.add_row(d["node"], d.get("link") or "-", _ago(d.get("last_seen"), now), str(d.get("rssi") or "-"),
                  str(d.get("battery") if d.get("battery") is not None else "-"), str(d.get("power") or "-"),
                  _uplink(d.get("link_quality")), str(d.get("fw") or "-"),
                  str(d.get("config_version") if d.get("config_version") is not None else "-")
                  + (f" (rejected: {rej})" if rej else ""),
                  " ".join(f"{k}={v}" for k, v in (d.get("backlog") or {}).items()) or "-",
                  " ".join(f"{k}={v}" for k, v in (d.get("dropped") or {}).items()) or "-",
                  str(d.get("readings", 0)), _epoch(d),
                  ("ok" if d.get("approved", True) else "quarantined")
                  + (" offline" if d.get("online") is False else ""))
    Console().print(t)
    return 0
