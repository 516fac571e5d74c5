"""The relay as a gateway component: store-fed alerts/readings, summary windows, health, metrics; `attach`.

`attach(gw)` adds the relay (if `[cloud] enabled`) and the twin (if `[twin] file` or `accept_cloud`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Iterable

from fogline.gateway.relay.cloud import CloudConfig
from fogline.gateway.relay.outbox import OutboxConfig
from fogline.gateway.relay.core import Relay
from fogline.shared import topics

log = logging.getLogger(__name__)


class RelayComponent:
    name = "relay"
    """Gateway component (`gw.add_component`): store-fed alerts/readings and windows in, relay state into gw.metrics.

    Alerts (and with `forward_readings` every up-lane reading) come from the gateway store through
    `fogline.gateway.relay.feed.RelayFeeder` (durable cursor, catch-up at start); windows from `gw.on_window`.
    Series data in an outbox row is marked relayed once the cloud acknowledges the row, so tier
    retention prunes only what the cloud has.
    """

    def __init__(self, relay: Relay, summary_windows_s: Iterable[float] = (60.0,), metrics_every_s: float = 1.0,
                 forward_readings: bool = False, forward_batch: int = 100, health_every_s: float = 0.0):
        self.relay = relay
        self.health_every_s = health_every_s
        self.summary_windows_s = {float(x) for x in summary_windows_s}
        self.metrics_every_s = metrics_every_s
        self.forward_readings = forward_readings
        self.forward_batch = forward_batch
        self.svc: Any = None  # fogline.gateway.services.Services
        self.feeder: Any = None
        self._task: asyncio.Task | None = None

    async def start(self, services: Any) -> None:
        from fogline.gateway import services as services_mod
        from fogline.gateway.relay.feed import RelayFeeder

        self.svc = svc = services_mod.of(services)
        if self.summary_windows_s:
            svc.on_window(self._on_window)
        await self.relay.start()
        self.feeder = RelayFeeder(self.relay, svc, forward_readings=self.forward_readings, batch=self.forward_batch)
        self.relay.on_acked.append(self.feeder.note_acked)
        await self.feeder.start()
        self._task = asyncio.create_task(self._export(), name="relay-metrics")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
        if self.feeder is not None:
            await self.feeder.stop()
        await self.relay.stop(drain_s=2.0)
        self._export_once()
        self.relay.outbox.close()

    def _on_window(self, w: Any) -> None:
        if round(float(w.end - w.start), 3) not in self.summary_windows_s:
            return
        if not self.svc.may_relay(w.node, w.start):  # relay lease held here since the window began?
            self.svc.metrics.inc("windows_not_leased", part="relay")
            return
        rid = self.relay.submit_window(w)
        if rid is not None and self.feeder is not None:
            self.feeder.note_submitted(rid, w.node, w.metric, float(w.start), float(w.end))

    def note_decision(self, d: Any, row_id: int) -> None:
        """An inference decision is outbox row row_id: the data its windows summarise waits for its cloud ack."""
        if self.feeder is not None:
            for w in getattr(d, "windows", ()):
                self.feeder.note_submitted(row_id, d.node, w.metric, float(d.start), float(d.end))

    async def _export(self) -> None:
        next_health = time.monotonic() + self.health_every_s
        while True:
            if self.health_every_s > 0 and time.monotonic() >= next_health:
                next_health = time.monotonic() + self.health_every_s
                try:
                    self.report_health()
                except Exception:
                    log.exception("event=relay_health_report_failed")
            await asyncio.sleep(self.metrics_every_s)
            try:
                self._export_once()
            except Exception:
                log.exception("event=relay_metrics_export_failed")

    def report_health(self) -> int | None:
        """This gateway's health snapshot -> summary lane (the cloud side's view of its gateways)."""
        from fogline.gateway.placement.health import snapshot

        svc = self.svc
        devices = svc.registry.devices if svc is not None and svc.registry is not None else {}
        return self.relay.submit("summary", {"kind": "gateway_health", "gw": self.relay.gateway_id,
                                             "health": snapshot(svc.data_dir if svc else "."), "nodes": len(devices)})

    def _export_once(self) -> None:
        if self.svc is None or self.svc.metrics is None:
            return
        m = self.svc.metrics
        st = self.relay.stats()
        m.set("cloud_breaker_state", st["breaker"]["state_code"])  # 0 closed, 1 half-open, 2 open
        m.set("cloud_breaker_opened", st["breaker"]["opened"])
        m.set("cloud_mode", st["bandwidth"]["mode_code"])  # 0 low, 1 middle, 2 high
        m.set("cloud_kbps", st["bandwidth"]["kbps"] or 0.0)
        m.set("cloud_connected", 1 if st["link"]["connected"] else 0)
        for mode, n in st["bandwidth"]["bytes_by_mode"].items():
            m.set("cloud_bytes", n, mode=mode)
        for k, v in st["relay"].items():
            m.set("relay_" + k, v)
        if self.feeder is not None:
            for k, v in self.feeder.stats().items():
                m.set("relay_feed_" + k, v)
        for lane, d in st["outbox"]["depth"].items():
            m.set("outbox_rows", d["rows"], lane=lane)
            m.set("outbox_bytes", d["bytes"], lane=lane)
        for c, per_lane in st["outbox"]["counters"].items():
            for lane, v in per_lane.items():
                m.set("outbox_" + c, v, lane=lane)


def attach(gw: Any) -> list[Any]:
    """Add the relay (if [cloud].enabled) and the twin (if [twin].file or accept_cloud) to a Gateway."""
    from fogline.gateway.twin.core import TwinConfig, twin_of

    cfg = gw.config
    site, gw_id, data_dir = cfg.site.id, cfg.site.gateway_id, cfg.site.data_dir
    out: list[Any] = []
    cloud = cfg.section("cloud")
    if isinstance(cloud, dict):
        cloud = CloudConfig.from_dict(cloud)
    if cloud.enabled:
        ob = cfg.section("outbox")
        if isinstance(ob, dict):
            ob = OutboxConfig.from_dict(ob)
        relay = Relay.build(ob, cloud, gw_id, site, data_dir)
        wins = cloud.summary_windows_s
        if wins is None:
            wins = [] if cfg.section("inference").enabled else [60.0]
        comp = RelayComponent(relay, wins, forward_readings=cloud.forward_readings, forward_batch=cloud.forward_batch,
                              health_every_s=cloud.health_every_s)
        gw.add_component(comp)
        out.append(comp)
    tw = cfg.section("twin")
    if isinstance(tw, dict):
        tw = TwinConfig(**tw)
    if tw.file or tw.accept_cloud:
        twin = twin_of(gw, cfg)
        out.append(twin)
        relay_comp = next((c for c in out if isinstance(c, RelayComponent)), None)
        if tw.accept_cloud and relay_comp is not None:
            relay_comp.relay.link.subscribe(twin_topic(site), twin.on_cloud_document)
    return out


def twin_topic(site: str) -> str:
    """Cloud topic of desired twin documents: fogline/<site>/twin (CBOR map shaped like the twin file)."""
    return topics.cloud(site, "twin")

