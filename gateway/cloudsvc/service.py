"""`fogline cloud`: the consumer, its database backend, retention and the query API, composed and run."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from fogline.gateway.cloudsvc.config import ServiceConfig
from fogline.gateway.cloudsvc.consumer import Consumer
from fogline.gateway.ops.metrics import Metrics
from fogline.gateway.aio import cancel_and_wait

log = logging.getLogger(__name__)
RETENTION_EVERY_S = 3600.0


def make_backend(cfg: ServiceConfig) -> Any:
    """PostgreSQL when [cloud.db] dsn is set, else SQLite in [cloud.db] data_dir."""
    if cfg.db.dsn:
        from fogline.gateway.cloudsvc.db_pg import PgBackend
        return PgBackend(cfg.db.dsn, cfg.db.partition_days, cfg.db.retention_days)
    from fogline.gateway.cloudsvc.db_sqlite import SqliteBackend
    return SqliteBackend(cfg.db.sqlite_path, cfg.db.retention_days)


class CloudService:
    """Consumer + query API; `await start()`, `await stop()`; usable in-process (the demo) or from the CLI."""

    def __init__(self, cfg: ServiceConfig, metrics: Metrics | None = None):
        self.cfg = cfg
        self.metrics = metrics or Metrics()
        self.backend = make_backend(cfg)
        self.consumer = Consumer(cfg.broker, cfg.db, self.backend, self.metrics)
        self.http: Any = None
        self._retention: asyncio.Task | None = None

    async def start(self) -> None:
        """Database (migrated), MQTT session, write loop, HTTP API (when enabled)."""
        await self.consumer.start()
        if self.cfg.http.enabled:
            from fogline.gateway.cloudsvc.httpapi import QueryApi
            api = QueryApi(self.cfg.http, self.backend, self.metrics, self.consumer)
            try:
                api.start()
                self.http = api
            except OSError as e:  # e.g. a second consumer on this host with the same port: ingest goes on
                self.metrics.inc("cloud_http_unavailable")
                log.error("event=cloud_http_unavailable host=%s port=%d error=%s (set [cloud.http] port)",
                          self.cfg.http.host, self.cfg.http.port, e)
        self._retention = asyncio.create_task(self._retention_loop(), name="cloud-retention")
        log.info("event=cloud_service_started db=%s http=%s", self.backend.dialect,
                 f"{self.cfg.http.host}:{self.http.port}" if self.http else "off")

    async def _retention_loop(self) -> None:
        while True:
            try:
                await self.consumer._db(self.backend.drop_expired, time.time())
            except Exception:
                log.exception("event=cloud_retention_failed")
            await asyncio.sleep(RETENTION_EVERY_S)

    async def stop(self) -> None:
        await cancel_and_wait(self._retention)
        if self.http is not None:
            self.http.stop()
        await self.consumer.stop()


async def serve(cfg: ServiceConfig, stop: asyncio.Event) -> None:
    """Run until `stop` is set."""
    svc = CloudService(cfg)
    await svc.start()
    try:
        await stop.wait()
    finally:
        await svc.stop()
