"""`fogline demo`: a whole site on one machine: brokers, virtual nodes on the real firmware, the gateway
(ingest, store, ack, aggregate, inference, relay), a local cloud, a live dashboard and a summary.

Every piece that is not available degrades to a note in the summary (`components`), never a crash.
"""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import signal
import tempfile
import time
from pathlib import Path
from typing import Any

from fogline.tools.demo.cloud import DemoCloud
from fogline.tools.demo.fleet import RULES, Fleet
from fogline.tools.demo.observe import SiteMonitor
from fogline.tools.demo.embedded_broker import EmbeddedBroker, parse_url
from fogline.gateway.aio import wait_event

log = logging.getLogger(__name__)
SITE = "demo"


def model_window_s(model_dir: Path | None = None) -> float:
    """Window length the bundled model was trained on (manifest features.window_s)."""
    from fogline.gateway.inference.registry import BUNDLED_DIR
    man = json.loads(((model_dir or BUNDLED_DIR) / "manifest.json").read_text())
    return float(man["features"]["window_s"])


class Demo:
    """Runs the demo until duration or stop(); `summary()` afterwards."""

    def __init__(self, nodes: int = 5, duration: float | None = None, seed: int = 1, broker: str | None = None,
                 workdir: str | Path | None = None, sample_ms: int = 1000, time_scale: float = 1.0,
                 window_s: float | None = None, node_heap: str | None = None, keep: bool = False):
        if not 1 <= nodes <= 50:
            raise ValueError("--nodes must be between 1 and 50")
        trained = model_window_s()
        if window_s is None:
            window_s = trained
        elif abs(window_s - trained) > 1e-6:
            raise ValueError(f"--window-s {window_s:g} differs from the model's window ({trained:g} s in "
                             "gateway/models/manifest.json): its features would not mean what it learned")
        self.n = nodes
        self.duration = duration
        self.seed = seed
        self.broker_url = broker
        self.keep = keep or workdir is not None
        self.workdir = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="fogline-demo-"))
        self.sample_ms, self.time_scale, self.window_s, self.node_heap = sample_ms, time_scale, window_s, node_heap
        self.site = SITE
        self.notes: dict[str, str] = {}
        self.brokers: list[EmbeddedBroker] = []
        self.gw: Any = None
        self.fleet: Fleet | None = None
        self.monitor: SiteMonitor | None = None
        self.sink: DemoCloud | None = None  # the cloud service (fogline cloud) in-process
        self.radio: Any = None
        self.decisions: list[dict[str, Any]] = []  # every model decision (node, start, end, label, ...)
        self.t0 = time.time()
        self.t_end: float | None = None
        self._stop = asyncio.Event()
        self._summary: dict[str, Any] | None = None

    # -- setup -----------------------------------------------------------------------------------
    async def _broker(self, name: str, url: str | None) -> tuple[str, int]:
        if url:
            host, port = parse_url(url)
            self.notes[f"{name}_broker"] = f"external {host}:{port}"
            return host, port
        b = await EmbeddedBroker(name=name).start()
        self.brokers.append(b)
        self.notes[f"{name}_broker"] = f"embedded amqtt {b.host}:{b.port}"
        return b.host, b.port

    def gateway_config(self, host: str, port: int, cloud: tuple[str, int]) -> dict[str, Any]:
        """The gateway's config for the demo: the model's window; a watermark longer than a pack spans
        (a pack lists one metric's records before the next) and an idle close longer than a Wi-Fi outage,
        so neither closes a window before its readings are in."""
        gdir = self.workdir / "gateway"
        names = self.fleet.ble_names() if self.fleet else {}
        return {
            "site": {"id": self.site, "gateway_id": "gw-demo", "data_dir": str(gdir)},
            "mqtt": {"host": host, "port": port, "keepalive": 10},
            "aggregate": {"windows_s": [self.window_s], "watermark_s": 10.0, "idle_close_s": 30.0,
                          "flush_on_stop": False},
            "ble": {"enabled": bool(names), "names": names, "require_encryption": False, "stall_s": 3600.0},
            "cloud": {"enabled": True, "host": cloud[0], "port": cloud[1], "tls": False, "allow_plaintext": True,
                      "summary_windows_s": [], "ack_timeout_s": 10.0},
            "inference": {"window_s": self.window_s, "set_timeout_s": 5.0},
            "metrics": {"snapshot_s": 2.0},
        }

    async def _start_gateway(self, site: tuple[str, int], cloud: tuple[str, int]) -> None:
        from fogline.gateway import config as config_mod
        from fogline.gateway.app import Gateway
        # the demo's own config: a ConfigError here is a bug of the demo, never hidden by running with less
        cfg = config_mod.from_dict(self.gateway_config(site[0], site[1], cloud))
        backend = None
        if self.fleet and self.fleet.ble_logs():
            try:
                from fogline.tools.demo.sim_radio import SimRadioBackend
                backend = self.radio = SimRadioBackend(self.fleet.ble_logs())
                self.notes["ble"] = "simulated radio -> gateway BLE ingest (bthome-ble)"
            except ImportError as e:
                self.notes["ble"] = f"unavailable: {e}"
        try:
            self.gw = Gateway(cfg, ble_backend=backend)
            try:
                from fogline.gateway import service_components
                self.notes.update(service_components.attach(self.gw, cfg))
            except ImportError as e:
                self.notes["components"] = f"unavailable: {e}"
            self._record_decisions()
            await self.gw.start()
            self.notes["gateway"] = "on"
        except Exception as e:
            log.exception("event=demo_gateway_failed")
            self.notes["gateway"] = f"failed: {e}"
            self.gw = None

    def _record_decisions(self) -> None:
        """Keep every decision the model makes (for the summary's ground-truth check; also as lines in
        <workdir>/decisions.jsonl), then pass it on."""
        eng = getattr(self.gw, "inference", None)
        if eng is None:
            return
        downstream = eng.sink

        log_path = self.workdir / "decisions.jsonl"

        def sink(decisions: list[Any]) -> Any:
            rows = [{"node": d.node, "start": d.start, "end": d.end, "label": d.label,
                     "score": round(float(d.score), 4), "action": d.action, "reasons": list(d.reasons),
                     "counts": {w.metric: w.count for w in d.windows}}
                    for d in decisions]
            self.decisions.extend(rows)
            try:
                with open(log_path, "a") as f:
                    f.writelines(json.dumps(r) + "\n" for r in rows)
            except OSError as e:
                self.notes["decisions_log"] = f"error: {e}"
            return downstream(decisions) if downstream is not None else None
        eng.sink = sink

    async def start(self) -> None:
        """Brokers, observers, nodes, gateway (in that order so nothing is missed)."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        site = await self._broker("site", self.broker_url)
        cloud = await self._broker("cloud", None)
        rules = {r["name"]: r for r in RULES}
        self.monitor = SiteMonitor(site[0], site[1], self.site, rules=rules)
        self.monitor.start()
        self.sink = DemoCloud(cloud[0], cloud[1], self.site, self.workdir / "cloud", rules=rules)
        try:
            await self.sink.start()
            self.notes["cloud"] = f"fogline cloud in-process: {self.sink.db_path}, query API {self.sink.query_url}"
        except Exception as e:
            log.exception("event=demo_cloud_failed")
            self.notes["cloud"] = f"failed: {e}"
        self.fleet = Fleet(self.workdir, self.site, site[0], site[1], self.n, self.seed, self.sample_ms,
                           self.time_scale, self.node_heap)
        await self._start_gateway(site, cloud)
        try:
            self.fleet.start()
            how = ".mpy" if self.fleet.mpy_dir else "sources"
            how += f", heap {self.fleet.heap_used or 'unix default'}"
            self.notes["nodes"] = f"{self.n} micropython processes (firmware.app + sim HAL, {how})"
        except Exception as e:  # no MicroPython on this host: the rest still runs
            self.notes["nodes"] = f"unavailable: {e}"
            for v in self.fleet.nodes:
                v.error = v.error or f"not started: {e}"
        self.t0 = time.time()

    # -- run -------------------------------------------------------------------------------------
    def stop(self) -> None:
        self._stop.set()

    async def run(self, on_tick=None, tick_s: float = 0.5) -> None:
        """Wait for duration (or stop()); on_tick() is called every tick_s (the dashboard)."""
        end = None if self.duration is None else self.t0 + self.duration
        while not self._stop.is_set():
            if end is not None and time.time() >= end:
                break
            if on_tick:
                on_tick()
            await wait_event(self._stop, tick_s)

    async def shutdown(self) -> None:
        """Nodes drain and stop, then the gateway (commits, acks, relay drains), observers, brokers."""
        self.t_end = time.time()
        loop = asyncio.get_running_loop()
        if self.fleet:
            await loop.run_in_executor(None, self.fleet.stop)
        for name in ("fogline.gateway.relay.cloud", "fogline.gateway.relay.breaker", "fogline.gateway.cloudsvc.consumer"):  # planned disconnects: not news
            logging.getLogger(name).setLevel(logging.ERROR)
        if self.gw is not None:
            try:
                # commit what arrived while inference and relay still run; partial windows are not scored
                # (aggregate.flush_on_stop = false: a half-filled window looks like a sensor losing samples)
                await asyncio.wait_for(self.gw.flush(), 10)
                await asyncio.sleep(0.3)
            except Exception as e:
                self.notes["gateway_flush"] = f"error: {e}"
            try:
                await asyncio.wait_for(self.gw.stop(), 20)
            except Exception as e:
                self.notes["gateway_stop"] = f"error: {e}"
        await asyncio.sleep(0.5)  # last cloud PUBACKs -> the cloud service
        if self.monitor is not None:
            try:
                self.monitor.stop()
            except Exception as e:
                log.warning("event=observer_stop_failed error=%s", e)
        if self.sink is not None:
            try:
                await asyncio.wait_for(self.sink.stop(), 20)
            except Exception as e:
                log.warning("event=cloud_stop_failed error=%s", e)
        for b in self.brokers:
            await b.stop()
        self._summary = self.summary()  # reads the nodes' truth logs and the gateway's store: before cleanup
        if not self.keep:
            shutil.rmtree(self.workdir, ignore_errors=True)

    # -- views -----------------------------------------------------------------------------------
    def ble_recent(self, n: int = 16) -> dict[str, dict[str, list[float]]]:
        """The last n BLE values per node and metric as stored by the gateway (hot tier), for the dashboard."""
        out: dict[str, dict[str, list[float]]] = {}
        if self.gw is None or not self.fleet:
            return out
        for v in self.fleet.nodes:
            if not v.ble_only:
                continue
            for metric in ("temperature", "humidity", "pressure"):
                try:
                    pts = self.gw.query_hot(v.id, metric)
                except Exception:
                    pts = []
                if pts:
                    out.setdefault(v.id, {})[metric] = [float(p[1]) for p in pts[-n:]]
        return out

    def components_line(self) -> str:
        keys = ("gateway", "relay", "inference", "ble")
        return " ".join(f"{k}:{self.notes.get(k, '-').split(':')[0].split(' ')[0]}" for k in keys)

    def summary(self) -> dict[str, Any]:
        """What happened, with the node-side ledger: sampled = kept + filtered (+ store errors) and
        kept = stored at the gateway + dropped by policy + backlog left in flash (BLE-only nodes keep theirs)."""
        if self._summary is not None:
            return self._summary
        from fogline.tools.demo.summary import build_summary
        return build_summary(self)


def install_signal_handlers(demo: Demo) -> None:
    """Ctrl-C / SIGTERM end the demo cleanly (a second Ctrl-C is the default hard stop)."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, demo.stop)
        except (NotImplementedError, RuntimeError):
            pass
