"""`fogline gateway --config gateway.toml`: run the gateway service until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import re
import signal
import sys
import time

from fogline.gateway import config as config_mod


# one log-event scheme: logger = module (__name__), message = "event=<name> key=value ..." (values quoted
# with ' or " when they hold spaces); --log-json lifts those pairs into fields of the JSON object
_FIELD = re.compile(r"""(\w+)=('[^']*'|"[^"]*"|\S+)""")


def log_fields(msg: str) -> dict[str, str]:
    """The key=value pairs of a log message (quotes stripped), e.g. {"event": "mqtt_connected", ...}."""
    return {k: v[1:-1] if len(v) > 1 and v[0] == v[-1] and v[0] in "'\"" else v for k, v in _FIELD.findall(msg)}


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        msg = record.getMessage()
        d = {**log_fields(msg), "ts": round(record.created, 3), "level": record.levelname, "logger": record.name,
             "msg": msg}
        if record.exc_info:
            d["exc"] = self.formatException(record.exc_info)
        return json.dumps(d)


def setup_logging(level: str, as_json: bool) -> None:
    """Structured logs on stderr: key=value lines, or one JSON object per line."""
    h = logging.StreamHandler(sys.stderr)
    h.setFormatter(_JsonFormatter() if as_json else logging.Formatter(
        "ts=%(asctime)s level=%(levelname)s logger=%(name)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [h]
    root.setLevel(level.upper())


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register `fogline gateway`."""
    p = sub.add_parser("gateway", help="run the gateway (ingest, store, ack, aggregate, relay)",
                       description="Run the Fogline gateway service. Stops cleanly on SIGTERM/SIGINT "
                                   "(everything received is committed and acknowledged first).")
    p.add_argument("--config", "-c", default=None, help="gateway TOML file (default: built-in defaults)")
    p.add_argument("--data-dir", default=None, help="override [site] data_dir")
    p.add_argument("--broker", default=None, help="override [mqtt] host:port")
    p.add_argument("--log-level", default="INFO")
    p.add_argument("--log-json", action="store_true", help="JSON log lines")
    p.add_argument("--print-config", action="store_true", help="print every section with its defaults and exit")
    return p


def _overrides(args: argparse.Namespace) -> dict:
    ov: dict = {}
    if args.data_dir:
        ov.setdefault("site", {})["data_dir"] = args.data_dir
    if args.broker:
        host, _, port = args.broker.rpartition(":") if ":" in args.broker else (args.broker, "", "1883")
        ov.setdefault("mqtt", {}).update({"host": host or "127.0.0.1", "port": int(port)})
    return ov


async def serve(cfg: config_mod.Config, ready: "asyncio.Event | None" = None) -> int:
    """Run a Gateway until a stop signal; returns the exit code (3: an enabled component failed to start)."""
    from fogline.gateway.app import Gateway
    from fogline.gateway.services import ComponentError

    log = logging.getLogger(__name__)
    gw = Gateway(cfg)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        _attach_optional(gw, cfg)
        await gw.start()
    except ComponentError as e:
        print(f"fogline gateway: {e}", file=sys.stderr)
        return 3
    if ready is not None:
        ready.set()
    t0 = time.time()
    await stop.wait()
    log.info("event=stopping reason=signal uptime_s=%.1f", time.time() - t0)
    await gw.stop()
    return 0


def _attach_optional(gw, cfg) -> None:
    """The components the config enables (relay, twin, inference, placement, cluster, metrics HTTP, discovery)."""
    from fogline.gateway import service_components
    service_components.attach(gw, cfg)


def run(args: argparse.Namespace) -> int:
    setup_logging(args.log_level, args.log_json)
    if args.print_config:
        print(config_mod.example_toml())
        return 0
    try:
        cfg = config_mod.load(args.config, _overrides(args))
    except config_mod.ConfigError as e:
        print(f"fogline gateway: config error: {e}", file=sys.stderr)
        return 2
    warn_if_secrets_readable(args.config, cfg)
    return asyncio.run(serve(cfg))


def warn_if_secrets_readable(path: str | None, cfg: config_mod.Config) -> bool:
    """Log a warning (True) when a config file holding a password is readable by group or others."""
    if not path or not (cfg.mqtt.password or getattr(cfg.cloud, "password", None)):
        return False
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    if mode & 0o077:
        logging.getLogger(__name__).warning(
            "event=config_secrets_readable path=%s mode=%o hint='holds a password: chmod 600 %s'",
            path, mode & 0o777, path)
        return True
    return False
