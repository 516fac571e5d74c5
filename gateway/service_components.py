"""Optional gateway components wired onto a Gateway: relay + twin, inference, metrics HTTP, Home Assistant.

`fogline gateway` (serve.py) and `fogline demo` both call `attach(gw, cfg)`, so the demo runs the
same service as a Pi. A component is imported and attached only when its config enables it; an
enabled one that cannot be built (here) or started (`Gateway.start`) stops the gateway with a
`ComponentError` naming it.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from fogline.gateway import config as config_mod
from fogline.gateway.services import ComponentError, Services, of as services_of

log = logging.getLogger(__name__)


def _section(cfg: Any, name: str, cls: Any) -> Any:
    sec = cfg.section(name)
    if isinstance(sec, dict):
        sec = config_mod.build_section(name, cls, sec)
    return sec


class InferenceComponent:
    name = "inference"
    """Feeds closed windows to the InferenceEngine; decisions go to the relay's outbox (or are counted)."""

    def __init__(self, engine: Any, flush_every_s: float = 1.0):
        self.engine = engine
        self.flush_every_s = flush_every_s
        self._task: asyncio.Task | None = None
        self.svc: Services | None = None
        self.stopped = False
        self.late_windows = 0
        self.window_problem: str | None = None

    async def start(self, services: Any) -> None:
        self.svc = svc = services_of(services)
        await asyncio.get_running_loop().run_in_executor(None, self.engine.start)
        self.window_problem = self._check_window(svc)
        if svc.query_hot is not None:  # "raw" decisions forward the window's raw readings
            self.engine.raw_fetch = svc.query_hot
        svc.on_window(self._on_window)
        self._task = asyncio.create_task(self._tick(), name="inference-flush")  # once, not per window

    def _check_window(self, svc: Services) -> str | None:
        """Loud at start: a scored window the model was not trained on gives meaningless scores."""
        from fogline.gateway.inference.registry import window_mismatch
        agg = svc.config.aggregate.windows_s if svc.config is not None else ()
        problem = window_mismatch(self.engine.model.manifest, self.engine.cfg.window_s, agg)
        if problem:
            log.error("event=model_window_mismatch %s", problem)
            if svc.metrics is not None:
                svc.metrics.set("inference_window_mismatch", 1)
        return problem

    def _on_window(self, w: Any) -> None:
        if self.stopped:  # the gateway flushes partial windows after its components stopped
            self.late_windows += 1
            return
        model = self.engine.model
        metric = self.engine.aliases.get(w.metric, w.metric)
        if model is not None and metric not in model.manifest["features"]["metrics"]:
            # not a model input (e.g. an alert record's rule name): the set must not wait for it, nor call it late
            self.svc.metrics.inc("windows_not_scored", why="not_a_model_metric")
            return
        if not self.svc.may_relay(w.node, w.start):  # relay lease held here since the window began?
            self.svc.metrics.inc("windows_not_leased", part="inference")
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
        m = self.svc.metrics if self.svc is not None else None
        if m is None:
            return
        st = self.engine.stats()
        for k, v in st.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                m.set("inference_" + k, v)
        model = self.engine.model
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


def _on(cfg: Any, name: str, default: bool = False) -> bool:
    """Whether [name] enabled is true (its config section only: the component's own module is not imported)."""
    sec = cfg.section(name)
    return bool(sec.get("enabled", default) if isinstance(sec, dict) else sec.enabled)


def attach(gw: Any, cfg: Any | None = None) -> dict[str, str]:
    """Attach every component the config enables; {component: "on ..." | "off: why"}.

    A disabled component's module is not imported; an enabled one that cannot be built raises
    ComponentError naming it (the gateway must not run without what its config asks for)."""
    cfg = cfg or gw.config
    notes: dict[str, str] = {}
    parts: dict[str, Any] = {}  # what a later component needs of an earlier one (inference: the relay)
    for name, fn in _ATTACH:
        try:
            notes[name] = fn(gw, cfg, notes, parts)
        except ComponentError:
            raise
        except Exception as e:
            log.error("event=component_failed component=%s error=%s", name, e)
            raise ComponentError(name, f"{type(e).__name__}: {e}") from e
    log.info("event=components %s", " ".join(f"{k}={v.split(':')[0].split(' ')[0]}" for k, v in notes.items()))
    return notes


def _cluster(gw: Any, cfg: Any, _notes: dict[str, str], _parts: dict[str, Any]) -> str:
    # first, so its ingest gate is in place before any message is accepted
    if not _on(cfg, "cluster"):
        return "off: [cluster] enabled = false"
    from fogline.gateway.cluster import service as cluster_service
    cluster_service.attach(gw)
    return "on"


def _relay(gw: Any, cfg: Any, notes: dict[str, str], parts: dict[str, Any]) -> str:
    tw = cfg.section("twin")
    tw = tw if isinstance(tw, dict) else vars(tw)
    if not _on(cfg, "cloud") and not (tw.get("file") or tw.get("accept_cloud")):
        notes["twin"] = "off: no [twin] file"
        return "off: [cloud] enabled = false"
    from fogline.gateway.relay import component as relay_mod
    comps = relay_mod.attach(gw)
    rc = next((c for c in comps if isinstance(c, relay_mod.RelayComponent)), None)
    notes["twin"] = "on" if gw.twin is not None else "off: no [twin] file"
    parts["relay"] = rc
    return "on" if rc is not None else "off: [cloud] enabled = false"


def _inference(gw: Any, cfg: Any, _notes: dict[str, str], parts: dict[str, Any]) -> str:
    if not _on(cfg, "inference", default=True):
        return "off: [inference] enabled = false"
    from fogline.gateway.inference import core as inf
    icfg = _section(cfg, "inference", inf.InferenceConfig)
    rc = parts.get("relay")
    relay = rc.relay if rc is not None else None
    sink = inf.relay_sink(relay, rc.note_decision) if relay is not None else None
    eng = inf.InferenceEngine(icfg, sink=sink, data_dir=cfg.site.data_dir)
    gw.add_component(InferenceComponent(eng))
    if relay is not None and icfg.accept_cloud_models:  # models published to fogline/<site>/model
        relay.link.subscribe(inf.model_topic(cfg.site.id), lambda _t, p: eng.handle_model_message(p))
    gw.inference = eng
    return "on" + ("" if sink else " (no relay: decisions counted only)")


def _metrics_http(gw: Any, cfg: Any, _notes: dict[str, str], _parts: dict[str, Any]) -> str:
    mcfg = cfg.metrics
    if mcfg.http_port is None:
        return "off: [metrics] http_port unset"
    from fogline.gateway.ops.http import MetricsHTTP
    srv = MetricsHTTP(gw.metrics, mcfg.http_host, mcfg.http_port)
    gw.add_component(srv)
    gw.metrics_http = srv
    return f"on {mcfg.http_host}:{mcfg.http_port}"


def _homeassistant(gw: Any, cfg: Any, _notes: dict[str, str], _parts: dict[str, Any]) -> str:
    if not _on(cfg, "homeassistant"):
        return "off: [homeassistant] enabled = false"
    from fogline.gateway.ops.discovery import Discovery, HomeAssistantConfig
    gw.add_component(Discovery(_section(cfg, "homeassistant", HomeAssistantConfig)))
    return "on"


def _placement(gw: Any, cfg: Any, _notes: dict[str, str], _parts: dict[str, Any]) -> str:
    # after the relay: it reuses the relay's twin
    if not _on(cfg, "placement"):
        return "off: [placement] enabled = false"
    from fogline.gateway.placement import core as placement_mod
    placement_mod.attach(gw, cfg)
    return "on"


_ATTACH = (("cluster", _cluster), ("relay", _relay), ("inference", _inference), ("metrics_http", _metrics_http),
           ("homeassistant", _homeassistant), ("placement", _placement))
