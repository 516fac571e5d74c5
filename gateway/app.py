"""The gateway service: wires MQTT/BLE ingest -> validate -> durable group commit -> ack -> aggregate -> hooks.

Other components attach through hooks (called on the event loop after the data is durable; sync or
`async def`; exceptions are logged and counted, never propagated into ingest):

    gw = Gateway(config.load("gateway.toml"))
    gw.on_window(cb)        # cb(Window) for every closed window (inference, relay)
    q = gw.window_queue()   # ...or an asyncio.Queue[Window]
    gw.on_alert(cb)         # cb(Reading) for each new durable alert-lane reading
    gw.on_readings(cb)      # cb(Sequence[Reading]) new durable readings of each batch (built lazily)
    gw.on_state(cb)         # cb(node, state_dict, Device) for each node state message
    gw.add_validator(fn)    # fn(Message) before queueing; raise validate.Rejected to refuse
    gw.add_component(obj)   # await obj.start(services) after the core (fogline.gateway.services); await
                            # obj.stop() after the final commit/windows, while the broker connection is up
    await gw.start(); ...; await gw.stop()

`await gw.publish(topic, payload, qos=1, retain=False)` publishes on the site broker
(twin config push, discovery); `gw.mark_relayed(node, metric, upto_t)` tells the
tiers what reached the cloud (retention prunes only that). Windows open at a stop or
crash are rebuilt from the stored readings at the next start (delivered once; a crash
between delivery and the next commit can deliver a window again, same node/metric/start).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import logging
import time
from pathlib import Path
from typing import Any, Awaitable, Callable

from fogline.gateway import config as config_mod
from fogline.gateway.aggregate.core import Aggregator, Window
from fogline.gateway.ingest.devices import Device, DeviceRegistry
from fogline.gateway.ingest.path import IngestPath
from fogline.gateway.ops.metrics import Metrics
from fogline.gateway.services import ComponentError, Services, build as build_services, start_all
from fogline.gateway.store.core import DeadLetter, Store
from fogline.gateway.store.tiers import HotTier
from fogline.gateway import periodic
from fogline.gateway.ingest.validate import Message, Policy

log = logging.getLogger(__name__)

Hook = Callable[..., Any]


class Gateway(IngestPath):
    """One gateway process: start(), stop(), hooks. Construct with a `fogline.gateway.config.Config`."""

    def __init__(self, cfg: config_mod.Config | None = None, *, ble_backend: Any = None,
                 metrics: Metrics | None = None, clock: Callable[[], float] = time.time):
        self.config = cfg or config_mod.load(None)
        self.site = self.config.site.id
        self.metrics = metrics or Metrics()
        self.clock = clock
        self.data_dir = Path(self.config.site.data_dir)
        self.policy = Policy.from_config(self.config)
        ing = self.config.ingest
        self.registry = DeviceRegistry(ing.known_devices, ing.unknown_devices, ing.max_devices)
        agg = self.config.aggregate
        self.aggregator = Aggregator(agg.windows_s, agg.watermark_s, self._emit_window, agg.idle_close_s,
                                     agg.allowed_lateness_s)
        self.hot = HotTier(self.config.tiers.hot_points)
        self.verifier: Any = None  # fogline.gateway.ingest.packauth.PackVerifier when [ingest] auth_keys_file is set
        self.store: Store | None = None
        self.mqtt: Any = None
        self.ble: Any = None
        self._ble_backend = ble_backend
        self._exec = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="fogline-store")
        self._hooks: dict[str, list[Hook]] = {"window": [], "alert": [], "readings": [], "state": []}
        self._queues: list[asyncio.Queue[Window]] = []
        self._validators: list[Callable[[Message], None]] = []
        self._gate: Callable[[Message], bool] | None = None  # cluster: commit/ack only a node's primary
        self._relay_pred: Callable[..., bool] | None = None  # cluster: is the node's relay lease held here?
        self.cluster: Any = None
        self.twin: Any = None  # the one Twin (fogline.gateway.twin.core.twin_of) when a component needs it
        self.services: Services | None = None  # what components see of this gateway, built at start
        self._topics: dict[str, tuple[str, str]] = {}
        self._readings_in: dict[str, int] = {}
        self._batch_max = self.config.store.batch_max
        self._devs_saved = 0.0
        self._force_devs = False
        self._components: list[Any] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._msgs: list[Message] = []
        self._n_readings = 0
        self._dead: list[DeadLetter] = []
        self._windows: list[Window] = []
        self._work = asyncio.Event()
        self._urgent = False
        self._idle = asyncio.Event()
        self._running = False
        self._committer: asyncio.Task[None] | None = None
        self._ticker: asyncio.Task[None] | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.started_at = 0.0

    # ------------------------------------------------------------------ hooks
    def on_window(self, cb: Hook) -> None:
        """cb(Window) for each closed window."""
        self._hooks["window"].append(cb)

    def window_queue(self, maxsize: int = 10000) -> "asyncio.Queue[Window]":
        """A queue receiving every closed window (oldest dropped and counted when full)."""
        q: asyncio.Queue[Window] = asyncio.Queue(maxsize)
        self._queues.append(q)
        return q

    def on_alert(self, cb: Hook) -> None:
        """cb(Reading) for each new durable alert-lane reading."""
        self._hooks["alert"].append(cb)

    def on_readings(self, cb: Hook) -> None:
        """cb(Sequence[Reading]) with the new durable readings of each committed batch (objects built on iteration)."""
        self._hooks["readings"].append(cb)

    def on_state(self, cb: Hook) -> None:
        """cb(node, state_dict, Device) for each valid node state message."""
        self._hooks["state"].append(cb)

    def add_validator(self, fn: Callable[[Message], None]) -> None:
        """fn(msg) runs on every decoded up/alert message before it is queued; raise Rejected to refuse it."""
        self._validators.append(fn)

    def set_ingest_gate(self, fn: Callable[[Message], bool] | None) -> None:
        """fn(msg) -> False: do not commit or ack msg (in a cluster: this gateway is not the node's primary)."""
        self._gate = fn

    def set_relay_predicate(self, fn: Callable[..., bool] | None) -> None:
        """fn(node, since) -> bool answers may_relay (in a cluster: the node's relay lease is held here)."""
        self._relay_pred = fn

    def may_relay(self, node: str, since: float | None = None) -> bool:
        """Whether this gateway relays node's data to the cloud now (always True without [cluster]).

        since (epoch s, e.g. a window's start): also require that it has done so since then."""
        return self._relay_pred is None or self._relay_pred(node, since)

    def add_component(self, comp: Any) -> None:
        """Attach a component with `async start(services)` and `async stop()` (started after the core)."""
        self._components.append(comp)

    def node_key(self, node: str) -> bytes | None:
        """node's auth key when [ingest] auth_keys_file is set (acks and pushed configs are sealed with it)."""
        return self.verifier.keys.get(node) if self.verifier is not None else None

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        """Open the store, connect to the broker (in the background), start BLE and components."""
        self.loop = asyncio.get_running_loop()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        sc = self.config.store
        db = self.data_dir / sc.db_file
        self.store = await self._run(Store, db, sc.synchronous, self.config.ingest.gap_skip_s,
                                     self.config.ingest.dead_letter_max_rows, sc.wal_checkpoint_pages)
        self.registry.load(await self._run(self.store.load_devices))
        ing = self.config.ingest
        if ing.auth_keys_file:
            from fogline.gateway.ingest.packauth import PackVerifier
            verifier = PackVerifier.from_file(ing.auth_keys_file, ing.require_auth)
            self.verifier = verifier
            self.add_validator(lambda msg: verifier.check_message(msg) and None)  # from the one decode
        self._running = True
        self.started_at = self.clock()
        if self.config.mqtt.worker_process:
            from fogline.gateway.ingest.worker import MqttWorkerIngest as Ingest
        else:
            from fogline.gateway.ingest.mqtt import MqttIngest as Ingest  # type: ignore[assignment]
        self.mqtt = Ingest(self.config, self.loop, self._on_mqtt, self.metrics, self.config.ingest.queue_max)
        self.mqtt.on_ready = self._mqtt_ready
        self.mqtt.start()
        if self.config.ble.enabled or self._ble_backend is not None:
            from fogline.gateway.ingest.ble import BleIngest
            self.ble = BleIngest(self.config.ble, self, self._ble_backend)
            await self.ble.start()
        self.services = build_services(self)
        try:
            await start_all(self._components, self.services)
        except ComponentError as e:
            log.error("event=component_start_failed component=%s error=%s", e.component, e.cause)
            await self.stop()
            raise
        # components' hooks are in place: rebuild open windows, then start committing (messages that
        # arrived meanwhile wait in the queue, so nothing is aggregated before the replay)
        await self._replay_windows()
        self._committer = asyncio.create_task(self._commit_loop(), name="fogline-commit")
        self._ticker = asyncio.create_task(self._tick_loop(), name="fogline-tick")
        self._work.set()
        log.info("event=gateway_started site=%s data_dir=%s db=%s", self.site, self.data_dir, db)

    async def _replay_windows(self) -> None:
        """Rebuild the windows open at the last stop/crash from the stored readings (fogline.gateway.store.late)."""
        from fogline.gateway.store import late
        await late.replay_into(self)

    async def _late_windows(self, flush: bool = True) -> None:
        from fogline.gateway.store import late
        await late.deliver_corrections(self, flush=flush)

    async def wait_connected(self, timeout: float = 10.0) -> bool:
        """True once the site broker connection is up (subscriptions sent)."""
        assert self.mqtt is not None
        return await asyncio.to_thread(self.mqtt.connected.wait, timeout)

    async def stop(self) -> None:
        """Clean stop: BLE, commit everything received, final windows, components, acks out, disconnect."""
        if not self._running:
            return
        if self.ble is not None:
            await self.ble.stop()
        await self.flush()
        if self.config.aggregate.flush_on_stop:
            self.aggregator.flush()  # partial windows reach the components before they stop
        else:
            self.aggregator.flush_late()  # corrections waiting for the next tick
        await self.flush()
        for c in reversed(self._components):
            try:
                await c.stop()
            except Exception:
                log.exception("event=component_stop_failed component=%r", c)
        if self.mqtt is not None:
            await self.mqtt.stop()
        self._running = False
        self._work.set()
        if self._committer:
            try:
                await asyncio.wait_for(self._committer, 30)
            except asyncio.TimeoutError:
                log.error("event=committer_stop_timeout")
        if self._ticker:
            self._ticker.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._write_metrics()
        if self.store is not None:
            await self._run(self.store.close)
        self._exec.shutdown(wait=True)
        log.info("event=gateway_stopped")

    async def flush(self, timeout: float = 30.0) -> bool:
        """Wait until everything received so far is committed and acked (False on timeout)."""
        try:
            await asyncio.wait_for(self._flush(), timeout)
            return True
        except asyncio.TimeoutError:
            log.error("event=flush_timeout pending_messages=%d", len(self._msgs))
            return False

    async def _flush(self) -> None:
        while self._msgs or self._dead or self._windows or self._inflight or self.registry.dirty or \
                (self.mqtt is not None and self.mqtt.pending()):
            if self.mqtt is not None:
                self.mqtt._drain()
            self._idle.clear()
            self._force_devs = True
            self._work.set()
            await self._idle.wait()

    async def _run(self, fn: Callable[..., Any], *args: Any) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._exec, fn, *args)

    async def run_store(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run fn(store, *args) on the store thread (the only thread that touches SQLite)."""
        return await self._run(fn, self.store, *args)

    def store_call_soon(self, fn: Callable[..., Any], *args: Any) -> "concurrent.futures.Future[Any]":
        """Queue fn(store, *args) on the store thread now: it runs before any commit queued after this call."""
        return self._exec.submit(fn, self.store, *args)

    # ------------------------------------------------------------------ windows and hooks
    def _emit_window(self, w: Window) -> None:
        self._windows.append(w)
        self._work.set()  # wake the committer, else flush()/stop() wait on _idle until timeout
        self.metrics.inc("windows_closed")
        for q in self._queues:
            if q.full():
                try:
                    q.get_nowait()
                    self.metrics.inc("window_queue_overflow")
                except asyncio.QueueEmpty:
                    pass
            q.put_nowait(w)
        for cb in self._hooks["window"]:
            self._call(cb, w)

    def _call(self, cb: Hook, *args: Any) -> None:
        try:
            r = cb(*args)
            if r is not None and inspect.isawaitable(r):  # a plain hook returns None: skip the ABC check
                self._spawn(r)
        except Exception:
            self.metrics.inc("hook_errors")
            log.exception("event=hook_failed hook=%r", cb)

    def _spawn(self, aw: Awaitable[Any]) -> None:
        async def guarded() -> None:
            try:
                await aw
            except Exception:
                self.metrics.inc("hook_errors")
                log.exception("event=async_hook_failed")
        t = asyncio.ensure_future(guarded())
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------------ periodic work
    async def _tick_loop(self) -> None:
        await periodic.tick_loop(self)

    async def _write_metrics(self) -> None:
        await periodic.write_metrics(self)

    # ------------------------------------------------------------------ services for components
    async def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> None:
        """Publish on the site broker (e.g. retained node config)."""
        assert self.mqtt is not None, "gateway not started"
        self.mqtt.publish(topic, payload, qos=qos, retain=retain)

    async def mark_relayed(self, node: str, metric: str, upto_t: float) -> None:
        """Data of node/metric up to upto_t is safely in the cloud (retention may prune it)."""
        from fogline.gateway.store.tiers import mark_relayed
        await self._run(mark_relayed, self.store, node, metric, upto_t)

    def query_hot(self, node: str, metric: str, since: float = float("-inf"),
                  until: float = float("inf")) -> list[tuple[float, float]]:
        """Recent raw readings (t, value) of one series from memory."""
        return self.hot.query(node, metric, since, until)

    def device(self, node: str) -> Device | None:
        return self.registry.devices.get(node)
