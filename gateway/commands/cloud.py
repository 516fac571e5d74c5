"""`fogline cloud --config cloud.toml`: the cloud ingest service and query API, until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from dataclasses import asdict

from fogline.gateway.commands.serve import setup_logging


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register `fogline cloud`."""
    p = sub.add_parser("cloud", help="run the cloud ingest service (broker -> PostgreSQL/SQLite) and query API",
                       description="Consume fogline/+/{alert,anomaly,summary,raw} from the cloud broker with shared "
                                   "subscriptions and write them exactly once into PostgreSQL ([cloud.db] dsn) or "
                                   "SQLite (no dsn); serve the query API. Run several for more throughput.")
    p.add_argument("--config", "-c", default=None, help="cloud TOML file (default: built-in defaults)")
    p.add_argument("--data-dir", default=None, help="override [cloud.db] data_dir (SQLite)")
    p.add_argument("--dsn", default=None, help="override [cloud.db] dsn (PostgreSQL)")
    p.add_argument("--client-id", default=None, help="override [cloud.broker] client_id")
    p.add_argument("--http-port", type=int, default=None, help="override [cloud.http] port")
    p.add_argument("--log-level", default="INFO")
    p.add_argument("--log-json", action="store_true", help="JSON log lines")
    p.add_argument("--print-config", action="store_true", help="print the config with its defaults and exit")
    return p


def run(args: argparse.Namespace) -> int:
    from fogline.gateway.cloudsvc import config as cfg_mod
    from fogline.gateway.cloudsvc.service import serve
    try:
        cfg = cfg_mod.load(args.config)
        if args.data_dir:
            cfg.db.data_dir = args.data_dir
        if args.dsn is not None:
            cfg.db.dsn = args.dsn
        if args.client_id:
            cfg.broker.client_id = args.client_id
        if args.http_port is not None:
            cfg.http.port = args.http_port
        cfg.check()
    except (OSError, ValueError) as e:
        print(f"fogline cloud: config error: {e}", file=sys.stderr)
        return 2
    if args.print_config:
        import json
        print(json.dumps({"cloud": asdict(cfg)}, indent=2))
        return 0
    setup_logging(args.log_level, args.log_json)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await serve(cfg, stop)

    asyncio.run(main())
    return 0
