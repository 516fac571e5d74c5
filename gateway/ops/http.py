"""Prometheus endpoint: GET /metrics serves fogline.gateway.ops.metrics.Metrics in text format 0.0.4 (asyncio).

Also GET /healthz (200 "ok" while the gateway runs) and GET /status.json (the JSON snapshot).
A gateway component: `await MetricsHTTP(metrics, host, port).start(gw)` / `await .stop()`.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from fogline.gateway.ops.metrics import CONTENT_TYPE, Metrics

log = logging.getLogger(__name__)
MAX_REQUEST = 8192


class MetricsHTTP:
    name = "metrics_http"
    """Tiny HTTP/1.0 server for scrapes; one request per connection, bounded request size."""

    def __init__(self, metrics: Metrics, host: str = "127.0.0.1", port: int = 9108):
        self.metrics = metrics
        self.host = host
        self.port = port
        self.server: asyncio.AbstractServer | None = None
        self.requests = 0
        self.errors = 0

    async def start(self, gw: Any = None) -> None:
        """Listen (port 0 = pick a free one; self.port is updated)."""
        self.server = await asyncio.start_server(self._handle, self.host, self.port)
        self.port = self.server.sockets[0].getsockname()[1]
        self.metrics.describe("http_requests", "requests served by the metrics endpoint")
        log.info("event=metrics_http_listening host=%s port=%d", self.host, self.port)

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
            self.server = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            line = head.split(b"\r\n", 1)[0].decode("latin-1").split()
            method, path = (line[0], line[1]) if len(line) >= 2 else ("", "")
            status, ctype, body = self._route(method, path.split("?", 1)[0])
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, asyncio.TimeoutError, ConnectionError):
            self.errors += 1
            writer.close()
            return
        self.requests += 1
        self.metrics.inc("http_requests", path=path if status == 200 else "other", code=status)
        hdr = (f"HTTP/1.0 {status} {'OK' if status == 200 else 'Error'}\r\nContent-Type: {ctype}\r\n"
               f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()
        try:
            writer.write(hdr + body)
            await writer.drain()
        except ConnectionError:
            self.errors += 1
        finally:
            writer.close()

    def _route(self, method: str, path: str) -> tuple[int, str, bytes]:
        if method not in ("GET", "HEAD"):
            return 405, "text/plain", b"method not allowed\n"
        if path == "/metrics":
            return 200, CONTENT_TYPE, self.metrics.render_prometheus().encode()
        if path == "/healthz":
            return 200, "text/plain", b"ok\n"
        if path == "/status.json":
            return 200, "application/json", json.dumps(self.metrics.snapshot()).encode()
        return 404, "text/plain", b"not found: try /metrics\n"
