"""`fogline demo`: the whole system on this machine (virtual nodes on the real firmware, gateway, cloud)."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys


def add_parser(sub) -> argparse.ArgumentParser:
    """Register `fogline demo`."""
    p = sub.add_parser("demo", help="run a whole site locally: virtual nodes, gateway, cloud, live dashboard",
                       description="Embedded MQTT brokers (amqtt), N virtual nodes running the real firmware on "
                                   "the MicroPython unix port with simulated sensors and flash, the gateway with "
                                   "inference and relay, and a local cloud (SQLite). Ctrl-C stops cleanly.")
    p.add_argument("--nodes", type=int, default=5, help="virtual nodes, 1-50 (default 5; the last is BLE-only)")
    p.add_argument("--duration", type=float, default=None, help="stop after this many seconds (default: Ctrl-C)")
    p.add_argument("--seed", type=int, default=1, help="scenario seed (same seed, same signals)")
    p.add_argument("--broker", default=None, help="use this site broker (mqtt://host:port) instead of the embedded one")
    p.add_argument("--headless", action="store_true", help="no dashboard; print the summary as JSON")
    p.add_argument("--workdir", default=None, help="keep flash images, databases and logs here")
    p.add_argument("--sample-ms", type=int, default=1000,
                   help="node sampling period (default 1000 ms: the model was trained on 1 Hz readings)")
    p.add_argument("--time-scale", type=float, default=1.0, help="scenario time runs this much faster (default 1)")
    p.add_argument("--window-s", type=float, default=None,
                   help="aggregation window scored by the model (default and only accepted value: the model's "
                        "manifest window_s, 60)")
    p.add_argument("--node-heap", default=None,
                   help="micropython -X heapsize for nodes (default: a Pico W's, 190000w; 'none' = 2 MB)")
    p.add_argument("--log-level", default="WARNING")
    return p


async def _main(args: argparse.Namespace) -> dict:
    from fogline.tools.demo.core import Demo, install_signal_handlers

    demo = Demo(nodes=args.nodes, duration=args.duration, seed=args.seed, broker=args.broker, workdir=args.workdir,
                sample_ms=args.sample_ms, time_scale=args.time_scale, window_s=args.window_s,
                node_heap=args.node_heap)
    install_signal_handlers(demo)
    live = None
    try:
        await demo.start()
        if args.headless:
            await demo.run()
        else:
            from rich.live import Live

            from fogline.tools.demo.dashboard import render

            with Live(render(demo), refresh_per_second=4, screen=False, transient=False) as live:
                await demo.run(on_tick=lambda: live.update(render(demo, live.console.width)))
    finally:
        if not args.headless:
            print("stopping: nodes drain their flash, the gateway commits and relays ...", file=sys.stderr)
        await demo.shutdown()
    return demo.summary()


def _print_human(s: dict) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    c = Console()
    t = Table(title="Fogline demo summary", show_header=False)
    t.add_row("nodes", f"{s['nodes']['came_up']}/{s['nodes']['started']} came up ({s['nodes']['ble_only']} BLE-only)")
    t.add_row("readings sampled", str(s["sampled"]))
    t.add_row("  filtered on the node", str(s["filtered"]))
    t.add_row("  stored at the gateway (acked)", str(s["stored"]))
    t.add_row("  dropped by policy", str(s["dropped_by_policy"]))
    t.add_row("  still in MQTT node flash (unacked)", str(s["backlog_mqtt"]))
    t.add_row("  kept on BLE nodes", f"{s['kept_on_ble_nodes']} (BLE sends the latest values, not the log)")
    t.add_row("  unexplained", str(s["unexplained"]))
    t.add_row("BLE readings at the gateway", f"{s['ble_readings_at_gateway']} from "
                                             f"{s['gateway'].get('ble_adverts', 0)} adverts")
    r = s["stored_reconciled"]
    t.add_row("gateway rows stored", f"{r['gateway_readings_stored']} = {r['stored']} acked + {r['alert_records']} "
                                     f"alerts + {r['ble_readings']} BLE + {r['committed_ack_in_flight']} ack in flight"
              + ("" if r["matches"] else " [red](differs)[/red]"))
    t.add_row("alerts raised / stored / at cloud", f"{s['alerts']['raised']} / {s['alerts']['stored']} / "
                                                   f"{s['alerts']['relayed']}")
    t.add_row("anomalies detected / at cloud", f"{s['anomalies']['detected']} / {s['anomalies']['relayed']}")
    det = s.get("detection") or {}
    for node, d in (det.get("per_node") or {}).items():
        fp = "-" if d["fp_rate"] is None else f"{d['fp_rate']:.0%}"
        short = (f", {d['short_windows']} short (node started/stopped in it or readings missing; "
                 f"{d['short_flagged']} flagged)" if d["short_windows"] else "")
        t.add_row(f"  {node} ({d['scenario']})", f"{d['windows_scored']} windows of {det.get('window_s', 0):g} s "
                                                 f"scored, {d['truth_anomalous']} anomalous in truth, false positives "
                                                 f"{d['false_positives']}/{d['truth_normal']} ({fp}){short}")
    for i in det.get("injected", []):
        how = ", ".join(i["found_by"]) if i["found"] else "[red]missed[/red]"
        t.add_row(f"  injected {'+'.join(i['faults'])} on {i['node']}", how)
    t.add_row("relayed to cloud (rows)", json.dumps(s["relayed_by_lane"]))
    b = s["bytes"]
    t.add_row("bytes upstream vs naive JSON", f"{b['sent_upstream']:,} vs {b['naive_json']:,}"
                                              + (f" ({b['reduction']}x less)" if b["reduction"] else ""))
    for k, v in s["components"].items():
        t.add_row(f"component {k}", escape(str(v)))
    for n, e in s["nodes"]["failed"].items():
        t.add_row(f"node {n}", f"[red]{escape(str(e))}[/red]")
    c.print(t)


def run(args: argparse.Namespace) -> int:
    """Run the demo; exit 0 when it ran (the summary says what worked), 1 on a setup error."""
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="ts=%(asctime)s level=%(levelname)s logger=%(name)s %(message)s")
    for noisy in ("amqtt", "transitions", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.CRITICAL)
    try:
        summary = asyncio.run(_main(args))
    except ValueError as e:
        print(f"fogline demo: {e}", file=sys.stderr)
        return 2
    if args.headless:
        print(json.dumps(summary, indent=1, default=str))
    else:
        _print_human(summary)
    return 0
