"""The cloud record for system tests: `fogline cloud` on a real PostgreSQL, read back as envelope-shaped items.

`CloudRecord` starts a PostgreSQL (tests/harness/pgkit.py) and the cloud service (in a thread) on a test cloud broker,
and offers what the reconciliations read from the old test subscriber: `snapshot()` (one item per row the
service stored: alerts, forwarded readings, windows and decisions, each under a unique key), `bad` (dead
letters), plus `db_duplicates()` (keys stored twice: must be 0) and `absorbed()` (re-deliveries the keys
absorbed).
"""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path
from typing import Any

from fogline.gateway.cloudsvc import config as cfg_mod
from fogline.gateway.cloudsvc.service import CloudService

_DUPS = ("SELECT count(*) FROM (SELECT 1 FROM readings GROUP BY nid, lane, seq HAVING count(*) > 1) r")


class ServiceThread:
    """A CloudService on its own event loop thread (start() waits until it holds its subscriptions)."""

    def __init__(self, cfg: cfg_mod.ServiceConfig):
        self.cfg = cfg
        self.loop = asyncio.new_event_loop()
        self.svc: CloudService | None = None
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.error: BaseException | None = None

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)

        async def main() -> None:
            self.svc = CloudService(self.cfg)
            await self.svc.start()
            if not await self.svc.consumer.wait_subscribed(60):
                raise RuntimeError("no SUBACK from the cloud broker")
            self.ready.set()

        try:
            self.loop.run_until_complete(main())
            self.loop.run_forever()
        except BaseException as e:  # surfaced by start()
            self.error = e
            self.ready.set()

    def start(self, timeout: float = 60) -> "ServiceThread":
        self.thread.start()
        if not self.ready.wait(timeout) or self.error:
            raise RuntimeError(f"cloud service did not start: {self.error}")
        return self

    def metric(self, name: str, **labels: Any) -> float:
        return self.svc.metrics.get(name, **labels) if self.svc else 0.0

    def stop(self) -> None:
        if self.svc is not None and self.loop.is_running():
            asyncio.run_coroutine_threadsafe(self.svc.stop(), self.loop).result(60)
        if self.loop.is_running():
            self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(30)


class CloudRecord:
    """PostgreSQL + the cloud service consuming `site`'s relay from a (TLS, password) cloud broker."""

    def __init__(self, port: int, ca_file: Path | None, user: str, password: str, site: str, shared: bool = True):
        from harness.pgkit import Postgres
        self.site = site
        self.pg = Postgres().start()
        cfg = cfg_mod.from_dict({"cloud": {
            "broker": {"port": port, "tls": ca_file is not None, "ca_file": str(ca_file) if ca_file else None,
                       "username": user, "password": password, "client_id": f"cloud-record-{site}",
                       "shared": shared},
            "db": {"dsn": self.pg.dsn, "retry_max_s": 1.0}, "http": {"enabled": False}}})
        try:
            self.svc = ServiceThread(cfg).start()
        except BaseException:
            self.pg.destroy()
            raise

    def _rows(self, sql: str, params: tuple = ()) -> list[tuple]:
        import psycopg
        with psycopg.connect(self.pg.dsn) as c:
            return c.execute(sql, params).fetchall()

    def snapshot(self) -> list[dict[str, Any]]:
        """Every stored row of the site as a relay envelope {"k", "lane", "gw", "body"} (keys unique per row)."""
        s = self.site
        out: list[dict[str, Any]] = []
        for node, seq, gw in self._rows("SELECT n.node, a.seq, a.gw FROM alerts a JOIN nodes n ON n.nid = a.nid "
                                        "WHERE n.site = %s", (s,)):
            out.append({"k": f"alert:{node}:{seq}", "lane": "alert", "gw": gw, "body": {"node": node, "seq": seq}})
        for node, seq in self._rows("SELECT n.node, r.seq FROM readings r JOIN nodes n ON n.nid = r.nid "
                                    "WHERE n.site = %s AND r.lane = 0", (s,)):
            out.append({"k": f"up:{node}:{seq}", "lane": "raw", "gw": "",
                        "body": {"node": node, "lane": "up", "first_seq": seq, "records": [None]}})
        cols = ("node", "metric", "start", "end", "count", "min", "max", "mean", "last", "stddev", "unit", "rev", "corr")
        for r in self._rows('SELECT node, metric, start, "end", count, min, max, mean, last, stddev, unit, rev, corr, '
                            "gw FROM windows WHERE site = %s", (s,)):
            b = dict(zip(cols, r[:-1]))
            b["count"] = int(b["count"]) if b["count"] is not None else None
            if not b["corr"]:
                del b["corr"]
            out.append({"k": f"w:{b['node']}:{b['metric']}:{b['start']}:{b['end']}", "lane": "summary", "gw": r[-1],
                        "body": b})
        for lane, gw, body in self._rows("SELECT lane, gw, body FROM decisions WHERE site = %s", (s,)):
            b = json.loads(body)
            out.append({"k": f"d:{b.get('node')}:{b.get('start')}:{b.get('end')}", "lane": lane, "gw": gw, "body": b})
        return out

    @property
    def bad(self) -> int:
        return int(self._rows("SELECT count(*) FROM dead_letters")[0][0])

    def db_duplicates(self) -> int:
        """(node, lane, seq) stored more than once: 0 by construction."""
        return int(self._rows(_DUPS)[0][0])

    def absorbed(self) -> int:
        """Re-deliveries the keys absorbed (readings, alerts, health rows already stored)."""
        return int(self.svc.svc.metrics.total("cloud_duplicates")) if self.svc.svc else 0

    def stop(self) -> None:
        try:
            self.svc.stop()
        finally:
            self.pg.destroy()
