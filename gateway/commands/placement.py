"""`fogline placement`: where each workload runs, every candidate's score and the reason."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from fogline.gateway import config as config_mod


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("placement", help="workload placements with per-candidate scores and reasons")
    p.add_argument("--config", "-c", default=None, help="gateway TOML file")
    p.add_argument("--data-dir", default=None, help="override [site] data_dir")
    p.add_argument("--file", default=None, help="decisions file (default <data_dir>/placement.json)")
    p.add_argument("--json", action="store_true", help="print the decisions file as JSON")
    return p


def decisions_path(args: argparse.Namespace) -> Path:
    """The decisions file the running gateway writes, from --file/--config/--data-dir."""
    if args.file:
        return Path(args.file)
    ov = {"site": {"data_dir": args.data_dir}} if args.data_dir else None
    cfg = config_mod.load(args.config, ov)
    pc = cfg.section("placement")
    f = pc.get("decisions_file") if isinstance(pc, dict) else getattr(pc, "decisions_file", "")
    return Path(f) if f else Path(cfg.site.data_dir) / "placement.json"


def render(rep: dict[str, Any], now: float | None = None) -> str:
    """Human-readable table of a decisions report."""
    now = time.time() if now is None else now
    lines = [f"gateway {rep.get('gw')} site {rep.get('site')}, decided {now - float(rep.get('ts') or now):.0f} s ago"]
    decs = rep.get("decisions") or {}
    if not decs:
        lines.append("no workloads ([placement] workloads is empty or placement never ran)")
    for name in sorted(decs):
        d = decs[name]
        ver = d.get("config_version")
        rep_v = d.get("node_reports")
        cfgs = "" if ver is None else f"  node config v{ver} (node runs v{rep_v})"
        lines.append(f"\n{name}  [{d.get('kind')} of node {d.get('node')}]  -> {d.get('placed') or 'UNPLACED'}{cfgs}")
        lines.append(f"  reason: {d.get('reason')}")
        if d.get("config_error"):
            lines.append(f"  config: {d['config_error']}")
        for s in d.get("scores", []):
            if s.get("feasible"):
                parts = " ".join(f"{k}={v:.2f}" for k, v in (s.get("parts") or {}).items())
                lines.append(f"    {s['candidate']:<24} {s['score']:.3f}  {parts}")
            else:
                lines.append(f"    {s['candidate']:<24}   -    excluded: {s.get('reason')}")
    gws = rep.get("gateway_workloads") or {}
    if gws:
        lines.append("\nrunning on this gateway:")
        for name, st in sorted(gws.items()):
            lines.append(f"  {name}: in={st.get('in')} out={st.get('out')} alerts={st.get('alerts')} "
                         f"shed={st.get('shed')} cpu_ms={st.get('cpu_ms')}")
    ev = rep.get("events") or []
    if ev:
        lines.append("\nrecent moves:")
        for e in ev[-10:]:
            lines.append(f"  {time.strftime('%H:%M:%S', time.localtime(e['ts']))} {e['workload']}: "
                         f"{e.get('from') or '-'} -> {e.get('to') or '-'}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    try:
        path = decisions_path(args)
    except config_mod.ConfigError as e:
        print(f"fogline placement: {e}", file=sys.stderr)
        return 2
    try:
        rep = json.loads(path.read_text())
    except FileNotFoundError:
        print(f"fogline placement: no decisions at {path} (is [placement] enabled on the gateway?)", file=sys.stderr)
        return 1
    except (OSError, ValueError) as e:
        print(f"fogline placement: cannot read {path}: {e}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(rep, indent=1))
    else:
        print(render(rep))
    return 0
