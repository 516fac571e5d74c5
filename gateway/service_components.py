"""Optional gateway components wired onto a Gateway: relay + twin, inference, metrics HTTP, Home Assistant.

`fogline gateway` (serve.py) and `fogline demo` both call `attach(gw, cfg)`, so the demo runs the
same service as a Pi. Each component is attached only when its module imports and its config enables
it; a component that cannot start is reported (log + returned note), never fatal for ingest.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from fogline.gateway import config as config_mod

log = logging.getLogger(__name__)


def _section(cfg: Any, name: str, cls: Any) -> Any:
    sec = cfg.section(name)
    if isinstance(sec, dict):
        sec = config_mod.build_section(name, cls, sec)
    return sec


class InferenceComponent:
    """Feeds closed windows to the InferenceEngine; decisions go to the relay's outbox (or are counted)."""

    def __init__(self, engine: Any, flush_every_s: float = 1.0):
        self.engine = engine
        self.flush_every_s = flush_every_s
        self._task: asyncio.Task | None = None
        self.gw: Any = None
        self.stopped = False
        self.late_windows = 0
        self.window_problem: str | None = None

    async def start(self, gw: Any) -> None:
        self.gw = gw
        await asyncio.get_running_loop().run_in_executor(None, self.engine.start)
        self.window_problem = self._check_window(gw)
        if hasattr(gw, "query_hot"):  # G-INFER: "raw" decisions forward the window's raw readings
            self.engine.raw_fetch = gw.query_hot
        gw.on_window(self._on_window)
        self._task = asyncio.create_task(self._tick(), name="inference-flush")  # G-INFER: once, not per window

    def _check_window(self, gw: Any) -> str | None:
        """Loud at start: a scored window the model was not trained on gives meaningless scores."""
        from fogline.gateway.inference.registry import window_mismatch
        agg = getattr(getattr(getattr(gw, "config", None), "aggregate", None), "windows_s", ())
        problem = window_mismatch(self.engine.model.manifest, self.engine.cfg.window_s, agg)
        if problem:
            log.error("event=model_window_mismatch %s", problem)
            if getattr(gw, "metrics", None) is not None:
                gw.metrics.set("inference_window_mismatch", 1)
        return problem

    def _on_window(self, w: Any) -> None:
        if self.stopped:  # the gateway flushes partial windows after its components stopped
            self.late_windows += 1
            return
        model = self.engine.model
        metric = self.engine.aliases.get(w.metric, w.metric)
        if model is not None and metric not in model.manifest["features"]["metrics"]:
            # not a model input (e.g. an alert record's rule name): the set must not wait for it, nor call it late
            self.gw.metrics.inc("windows_not_scored", why="not_a_model_metric")
            return
        may = getattr(self.gw, "may_relay", None)
        if may is not None and not may(w.node, w.start):  # CLUSTER: lease held here since the window began?
            self.gw.metrics.inc("windows_not_leased", part="inference")
            return
        self.engine.submit(w)

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self.flush_every_s)
            try:
                self.engine.flush()
                self._export()
            except Exception:
                log.exception("event=inference_flush_failed")

    def _export(self) -> None:
        m = getattr(self.gw, "metrics", None)
        if m is None:
            return
        st = self.engine.stats()
        for k, v in st.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                m.set("inference_" + k, v)
        model = getattr(self.engine, "model", None)
        if model is not None:
            m.set("model_version", float(model.manifest.get("version", 0) or 0), model=str(model.ident))

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
        self.stopped = True
        try:
            self.engine.flush(force=True)
        except Exception:
            log.exception("event=inference_final_flush_failed")


def attach(gw: Any, cfg: Any | None = None) -> dict[str, str]:
    """Attach every available component; returns {component: "on" | "off: why" | "error: ..."}."""
    cfg = cfg or gw.config
    notes: dict[str, str] = {}
    relay = None
    relay_comp = None
    try:  # CLUSTER: first, so its ingest gate is in place before any message is accepted
        from fogline.gateway.cluster import service as cluster_service
        notes["cluster"] = "on" if cluster_service.attach(gw) is not None else "off: [cluster] enabled = false"
    except Exception as e:
        notes["cluster"] = f"error: {e}"
        log.warning("event=component_unavailable component=cluster error=%s", e)
    try:
        from fogline.gateway.relay import component as relay_mod
        comps = relay_mod.attach(gw)
        for c in comps:
            if hasattr(c, "relay"):
                relay = c.relay
                relay_comp = c
        notes["relay"] = "on" if relay is not None else "off: [cloud] enabled = false"
        notes["twin"] = "on" if any(not hasattr(c, "relay") for c in comps) else "off: no [twin] file"
    except Exception as e:  # a broken or missing relay must not stop ingest
        notes["relay"] = f"error: {e}"
        log.warning("event=component_unavailable component=relay error=%s", e)
    try:
        from fogline.gateway.inference import core as inf
        icfg = _section(cfg, "inference", inf.InferenceConfig)
        if icfg.enabled:
            sink = inf.relay_sink(relay, getattr(relay_comp, "note_decision", None)) if relay is not None else None
            eng = inf.InferenceEngine(icfg, sink=sink, data_dir=cfg.site.data_dir)
            gw.add_component(InferenceComponent(eng))
            if relay is not None and icfg.accept_cloud_models:  # G-INFER: models published to fogline/<site>/model
                relay.link.subscribe(inf.model_topic(cfg.site.id), lambda _t, p: eng.handle_model_message(p))
            gw.inference = eng
            notes["inference"] = "on" + ("" if sink else " (no relay: decisions counted only)")
        else:
            notes["inference"] = "off: [inference] enabled = false"
    except Exception as e:
        notes["inference"] = f"error: {e}"
        log.warning("event=component_unavailable component=inference error=%s", e)
    try:
        mcfg = cfg.metrics
        if getattr(mcfg, "http_port", None) is not None:
            from fogline.gateway.ops.http import MetricsHTTP
            srv = MetricsHTTP(gw.metrics, mcfg.http_host, mcfg.http_port)
            gw.add_component(srv)
            gw.metrics_http = srv
            notes["metrics_http"] = f"on {mcfg.http_host}:{mcfg.http_port}"
        else:
            notes["metrics_http"] = "off: [metrics] http_port unset"
    except Exception as e:
        notes["metrics_http"] = f"error: {e}"
    try:
        from fogline.gateway.ops.discovery import Discovery, HomeAssistantConfig
        hcfg = _section(cfg, "homeassistant", HomeAssistantConfig)
        if hcfg.enabled:
            gw.add_component(Discovery(hcfg))
            notes["homeassistant"] = "on"
        else:
            notes["homeassistant"] = "off: [homeassistant] enabled = false"
    except Exception as e:
        notes["homeassistant"] = f"error: {e}"
    try:
        from fogline.gateway.placement import core as placement_mod  # PLACEMENT (issue 11): after the relay/twin
        notes["placement"] = "on" if placement_mod.attach(gw, cfg) is not None else "off: [placement] enabled = false"
    except Exception as e:
        notes["placement"] = f"error: {e}"
        log.warning("event=component_unavailable component=placement error=%s", e)
    log.info("event=components %s", " ".join(f"{k}={v.split(':')[0].split(' ')[0]}" for k, v in notes.items()))
    return notes
