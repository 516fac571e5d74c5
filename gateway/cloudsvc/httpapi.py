"""The cloud query API (stdlib ThreadingHTTPServer, JSON): /v1/readings, /v1/windows, /v1/alerts, /healthz, /metrics.

Data endpoints need `Authorization: Bearer <token>` and a `site` parameter; each token belongs to one site
([cloud.http.tokens]) and is refused (403) for any other site. Times are epoch seconds, `since` inclusive,
`until` exclusive. Answers are column lists: {"columns": [...], "rows": [[...], ...], "truncated": bool}.
"""

from __future__ import annotations

import hmac
import json
import logging
import math
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from fogline.gateway.cloudsvc.config import HttpConfig
from fogline.gateway.cloudsvc.db_sql import pg
from fogline.gateway.cloudsvc.rows import LANE_NAME
from fogline.gateway.ops.metrics import CONTENT_TYPE, Metrics

log = logging.getLogger(__name__)

_READINGS = ("SELECT n.node, s.metric, s.unit, r.lane, r.seq, r.t, r.v FROM readings r "
             "JOIN series s ON s.sid = r.sid JOIN nodes n ON n.nid = r.nid "
             "WHERE n.site = ? AND r.t >= ? AND r.t < ?{node}{metric} ORDER BY r.t, r.nid, r.lane, r.seq LIMIT ?")
_WINDOWS = ('SELECT node, metric, length, start, "end", rev, count, min, max, mean, last, stddev, unit, corr '
            "FROM windows WHERE site = ? AND start >= ? AND start < ?{node}{metric} "
            "ORDER BY start, node, metric, length LIMIT ?")
_ALERTS = ("SELECT n.node, s.metric, s.unit, a.seq, a.t, a.v, a.gw, a.sent, a.stored FROM alerts a "
           "JOIN series s ON s.sid = a.sid JOIN nodes n ON n.nid = a.nid "
           "WHERE n.site = ? AND a.t >= ? AND a.t < ?{node}{metric} ORDER BY a.t, a.nid, a.seq LIMIT ?")
_COLUMNS = {
    "readings": ["node", "metric", "unit", "lane", "seq", "t", "v"],
    "windows": ["node", "metric", "length", "start", "end", "rev", "count", "min", "max", "mean", "last", "stddev",
                "unit", "corr"],
    "alerts": ["node", "metric", "unit", "seq", "t", "v", "gw", "sent", "stored"],
}
_SQL = {"readings": (_READINGS, "n.node", "s.metric"), "windows": (_WINDOWS, "node", "metric"),
        "alerts": (_ALERTS, "n.node", "s.metric")}


class ApiError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class QueryApi:
    """HTTP server thread over the backend's read connections."""

    def __init__(self, cfg: HttpConfig, backend: Any, metrics: Metrics, consumer: Any = None):
        self.cfg = cfg
        self.backend = backend
        self.metrics = metrics
        self.consumer = consumer
        self.by_token = {tok: site for site, tok in cfg.tokens.items()}
        self.server: ThreadingHTTPServer | None = None
        self.thread: threading.Thread | None = None
        self.port = cfg.port
        metrics.describe("cloud_http_requests", "query API requests by endpoint and status")

    def start(self) -> None:
        """Listen (port 0 = a free one; self.port is updated) and serve on a thread."""
        api = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                api.handle(self)

            def log_message(self, fmt: str, *args: Any) -> None:
                log.debug("event=cloud_http " + fmt, *args)

        self.server = ThreadingHTTPServer((self.cfg.host, self.cfg.port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, name="cloud-http", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def handle(self, req: BaseHTTPRequestHandler) -> None:
        url = urlsplit(req.path)
        endpoint = url.path
        try:
            if endpoint == "/healthz":
                ok = self.consumer is None or self.consumer.connected.is_set()
                status, ctype, body = (200 if ok else 503), "application/json", json.dumps(
                    {"ok": ok, "db": self.backend.dialect}).encode()
            elif endpoint == "/metrics":
                status, ctype, body = 200, CONTENT_TYPE, self.metrics.render_prometheus().encode()
            elif endpoint.startswith("/v1/") and endpoint[4:] in _SQL:
                params = {k: v[-1] for k, v in parse_qs(url.query).items()}
                site = self._authorize(req.headers.get("Authorization", ""), params.get("site"))
                status, ctype = 200, "application/json"
                body = json.dumps(self._query(endpoint[4:], site, params)).encode()
            else:
                raise ApiError(404, "not found: /v1/readings, /v1/windows, /v1/alerts, /healthz, /metrics")
        except ApiError as e:
            status, ctype, body = e.status, "application/json", json.dumps({"error": str(e)}).encode()
        except Exception as e:  # a database error is the client's 503, never a dead server thread
            log.warning("event=cloud_http_error path=%s error=%s", endpoint, e)
            status, ctype, body = 503, "application/json", json.dumps({"error": f"database: {e}"[:300]}).encode()
        self.metrics.inc("cloud_http_requests", endpoint=endpoint if status != 404 else "other", code=status)
        req.send_response(status)
        req.send_header("Content-Type", ctype)
        req.send_header("Content-Length", str(len(body)))
        req.end_headers()
        req.wfile.write(body)

    def _authorize(self, header: str, site: str | None) -> str:
        if not site:
            raise ApiError(400, "site is required")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise ApiError(401, "Authorization: Bearer <token> required")
        owner = None
        for tok, s in self.by_token.items():
            if hmac.compare_digest(tok.encode(), token.strip().encode()):
                owner = s
        if owner is None:
            raise ApiError(401, "unknown token")
        if owner != site:
            raise ApiError(403, f"this token does not read site {site!r}")
        return site

    def _query(self, what: str, site: str, params: dict[str, str]) -> dict[str, Any]:
        since = _time(params.get("since"), -math.inf)
        until = _time(params.get("until"), math.inf)
        sql, node_col, metric_col = _SQL[what]
        args: list[Any] = [site, max(since, -1e300), min(until, 1e300)]
        node = metric = ""
        if params.get("node"):
            node = f" AND {node_col} = ?"
            args.append(params["node"])
        if params.get("metric"):
            metric = f" AND {metric_col} = ?"
            args.append(params["metric"])
        limit = self.cfg.max_points
        args.append(limit + 1)
        sql = sql.format(node=node, metric=metric)
        con = self.backend.reader()
        try:
            rows = con.execute(pg(sql) if self.backend.dialect == "pg" else sql, tuple(args)).fetchall()
        finally:
            con.close()
        out = [list(r) for r in rows[:limit]]
        if what == "readings":
            for r in out:
                r[3] = LANE_NAME.get(r[3], str(r[3]))
        return {"site": site, "columns": _COLUMNS[what], "rows": out, "truncated": len(rows) > limit}


def _time(s: str | None, default: float) -> float:
    if s is None or s == "":
        return default
    try:
        v = float(s)
    except ValueError:
        raise ApiError(400, f"not an epoch time: {s!r}") from None
    if math.isnan(v):
        raise ApiError(400, "time is NaN")
    return v
