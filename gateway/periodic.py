"""The gateway's once-a-second work: idle windows, late corrections, gauges, tier maintenance, metrics snapshot."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from fogline.gateway.store.tiers import maintain

log = logging.getLogger(__name__)


async def tick_loop(gw: Any) -> None:
    """Run until the gateway stops; a failing tick is logged and the next one runs."""
    # the first compaction also waits a whole interval, so maintenance_s means what it says (a caller
    # that runs maintain() itself is not raced by a run one second after start)
    last_maint = time.monotonic()
    last_snap = 0.0
    while gw._running:
        await asyncio.sleep(1.0)
        try:
            n = gw.aggregator.close_idle(gw.clock())
            if n:
                gw._work.set()
            await gw._late_windows()  # also exports the window gauges
            gw.metrics.set("devices", len(gw.registry.devices))
            gw.metrics.set("uptime_s", gw.clock() - gw.started_at)
            now = time.monotonic()
            if now - last_maint >= gw.config.tiers.maintenance_s:
                last_maint = now
                stats = await gw._run(maintain, gw.store, gw.config.tiers, gw.config.ingest, gw.clock())
                for k, v in stats.items():
                    if v:
                        gw.metrics.inc("tiers_" + k, v)
            gw.metrics.set("hot_tier_bytes", gw.hot.memory_bytes())
            if now - last_snap >= gw.config.metrics.snapshot_s:
                last_snap = now
                await write_metrics(gw)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("event=tick_failed")


async def write_metrics(gw: Any) -> None:
    """The metrics snapshot file `fogline status` reads (data_dir/metrics.json)."""
    try:
        await asyncio.to_thread(gw.metrics.write_snapshot, gw.data_dir / "metrics.json")
    except OSError:
        log.warning("event=metrics_snapshot_failed")
