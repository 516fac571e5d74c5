"""The demo's cloud: the real `fogline cloud` service in-process, on embedded SQLite, with its query API.

It consumes the demo's cloud broker exactly as a deployment would (plain subscriptions: the embedded amqtt
broker speaks MQTT 3.1.1 without shared subscriptions) and gives the dashboard and the summary what they
show: bytes received, rows per lane (read back from the cloud database), duplicates absorbed, recent
alert and anomaly arrivals.
"""

from __future__ import annotations

import secrets
import sqlite3
import time
from collections import deque
from pathlib import Path
from typing import Any, Mapping

from fogline.gateway.cloudsvc import config as cfg_mod
from fogline.gateway.cloudsvc.rows import Batch
from fogline.gateway.cloudsvc.service import CloudService
from fogline.tools.demo.events import describe_alert

MQTT_OVERHEAD = 5  # fixed header + packet id of a QoS 1 PUBLISH (as the site monitor counts)
# rows per relay lane in the cloud record: what each lane's messages became
LANE_COUNTS = {
    "alert": "SELECT count(*) FROM alerts",
    "anomaly": "SELECT count(*) FROM decisions WHERE lane = 'anomaly'",
    "summary": "SELECT (SELECT count(*) FROM windows) + (SELECT count(*) FROM decisions WHERE lane = 'summary') "
               "+ (SELECT count(*) FROM gateway_health)",
    "raw": "SELECT count(*) FROM decisions WHERE lane = 'raw'",
}


def lane_counts(db_path: Path) -> dict[str, int]:
    """Rows per lane in a cloud SQLite database (lanes with none left out)."""
    with sqlite3.connect(str(db_path)) as con:
        out = {lane: int(con.execute(sql).fetchone()[0]) for lane, sql in LANE_COUNTS.items()}
    return {k: v for k, v in out.items() if v}


class DemoCloud:
    """CloudService (SQLite under data_dir, HTTP API on a free port, a token for the site) for the demo."""

    def __init__(self, host: str, port: int, site: str, data_dir: Path,
                 rules: Mapping[str, Mapping[str, Any]] | None = None):
        self.site = site
        self.rules = dict(rules or {})  # rule name -> rule config: alerts are told with their threshold
        self.token = secrets.token_urlsafe(16)
        self.cfg = cfg_mod.from_dict({"cloud": {
            "broker": {"host": host, "port": port, "shared": False, "protocol": "3.1.1",
                       "client_id": f"fogline-demo-cloud-{int(time.time() * 1000) % 100000}"},
            "db": {"data_dir": str(data_dir)},
            "http": {"port": 0, "tokens": {site: self.token}}}})
        self.svc = CloudService(self.cfg)
        self.svc.consumer.on_written = self._written
        self.counters = {"messages": 0, "bytes": 0, "rows": 0, "duplicates": 0, "undecodable": 0}
        self.events: deque[str] = deque(maxlen=12)
        self._lanes: dict[str, int] = {}
        self._lanes_at = 0.0

    @property
    def db_path(self) -> Path:
        return self.cfg.db.sqlite_path

    @property
    def query_url(self) -> str:
        return f"http://127.0.0.1:{self.svc.http.port}" if self.svc.http else ""

    @property
    def connected(self) -> bool:
        return self.svc.consumer.connected.is_set()

    async def start(self) -> None:
        """Start the service and wait (bounded) for its subscription, so no early message is missed."""
        await self.svc.start()
        await self.svc.consumer.wait_subscribed(10)

    async def stop(self) -> None:
        await self.svc.stop()
        self._lanes_at = 0.0
        self.lanes  # noqa: B018 - final counts read while the file is certainly complete

    def _written(self, b: Batch, counts: dict[str, int]) -> None:
        c = self.counters
        c["messages"] += b.messages
        c["bytes"] += b.wire_bytes + MQTT_OVERHEAD * b.messages
        c["rows"] += sum(v for k, v in counts.items() if k != "dead")
        c["undecodable"] += len(b.dead)
        c["duplicates"] = int(self.svc.metrics.total("cloud_duplicates"))
        now = time.strftime("%H:%M:%S")
        for _site, node, _seq, metric, u, v, _t, _gw, _ts in b.alerts[-3:]:
            self.events.appendleft(f"{now} cloud got {describe_alert(node, metric, v, u, self.rules)}")
        for d in b.decisions.values():
            if d["lane"] == "anomaly":
                score = d.get("score")
                self.events.appendleft(f"{now} cloud got ANOMALY {d['node']}"
                                       + (f" score={score:.2f}" if isinstance(score, float) else ""))
        self._lanes_at = 0.0

    @property
    def lanes(self) -> dict[str, int]:
        """Rows per lane in the cloud database (re-read at most once a second)."""
        if time.monotonic() - self._lanes_at > 1.0 and self.db_path.exists():
            try:
                self._lanes = lane_counts(self.db_path)
                self._lanes_at = time.monotonic()
            except sqlite3.Error:
                pass
        return self._lanes

    def count(self, lane: str) -> int:
        return self.lanes.get(lane, 0)
