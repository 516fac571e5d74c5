"""Helpers of the cloud service tests: the service in a thread or a child process, and the database's record."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from fogline.gateway.cloudsvc import config as cfg_mod
from harness.cloudrecord import ServiceThread  # noqa: F401 (the tests import it from here)


def service_config(broker_port: int, dsn: str = "", data_dir: str | Path = "", client_id: str = "c1",
                   http: bool = False, tokens: dict[str, str] | None = None, **db: Any) -> cfg_mod.ServiceConfig:
    return cfg_mod.from_dict({"cloud": {
        "broker": {"port": broker_port, "client_id": client_id},
        "db": {"dsn": dsn, "data_dir": str(data_dir), **db},
        "http": {"enabled": http, "port": 0, "tokens": tokens or {}}}})


def write_config(path: Path, broker_port: int, dsn: str, client_id: str, data_dir: str = "") -> Path:
    path.write_text(f'[cloud.broker]\nport = {broker_port}\nclient_id = "{client_id}"\n\n'
                    f'[cloud.db]\ndsn = "{dsn}"\ndata_dir = "{data_dir}"\n\n[cloud.http]\nenabled = false\n')
    return path


def spawn(config: Path, log: Path) -> subprocess.Popen:
    """`fogline cloud --config` as a child process (its own process group)."""
    return subprocess.Popen([sys.executable, "-m", "fogline.tools.cli", "cloud", "--config", str(config)],
                            stdout=subprocess.DEVNULL, stderr=open(log, "ab"), start_new_session=True)


def kill9(p: subprocess.Popen) -> None:
    os.killpg(p.pid, signal.SIGKILL)
    p.wait(10)


def term(p: subprocess.Popen) -> None:
    if p.poll() is None:
        os.killpg(p.pid, signal.SIGTERM)
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            kill9(p)


_KEYS = "SELECT n.site, n.node, r.lane, r.seq FROM readings r JOIN nodes n ON n.nid = r.nid"


def reading_keys(dsn: str = "", sqlite_path: Path | None = None) -> list[tuple[str, str, int, int]]:
    """Every (site, node, lane, seq) row in the cloud database (duplicates would show twice)."""
    if sqlite_path is not None:
        with sqlite3.connect(str(sqlite_path)) as c:
            return [tuple(r) for r in c.execute(_KEYS)]
    import psycopg
    try:
        with psycopg.connect(dsn, connect_timeout=5) as c:
            return [tuple(r) for r in c.execute(_KEYS)]
    except psycopg.Error:
        return []  # restarting, or the schema is not created yet


def scalar(dsn: str, sql: str, sqlite_path: Path | None = None) -> Any:
    if sqlite_path is not None:
        with sqlite3.connect(str(sqlite_path)) as c:
            return c.execute(sql).fetchone()
    import psycopg
    with psycopg.connect(dsn) as c:
        return c.execute(sql).fetchone()


def wait_for(cond, timeout: float = 120.0, every: float = 0.2):
    """Poll cond() until truthy (returned) or the deadline (returns the last falsy value)."""
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v or time.monotonic() > deadline:
            return v
        time.sleep(every)
