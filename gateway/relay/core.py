"""The relay: outbox -> (bandwidth policy, circuit breaker, hard cap) -> cloud link.

One asyncio task picks the next message in lane priority order, publishes it QoS 1 and
deletes its rows only when the PUBACK future resolves. A failed or timed-out send gives the
rows back; they go again later with the same idempotency key. Producers call `submit*`
(from the event-loop thread); each accepted item is durable when the call returns.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import asdict, dataclass, is_dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import cbor2

from fogline.gateway.relay.bandwidth import BandwidthPolicy
from fogline.gateway.relay.breaker import OPEN, Breaker
from fogline.gateway.relay.cloud import CloudConfig, CloudError, CloudLink, bundle, envelope
from fogline.gateway.relay.outbox import LANES, Outbox, OutboxConfig, Row
from fogline.shared import summary as wire
from fogline.shared import topics
from fogline.gateway.aio import wait_event

log = logging.getLogger(__name__)
MQTT_OVERHEAD = 5  # fixed header + packet id of a QoS 1 PUBLISH, counted with topic and payload


@dataclass
class RelayConfig:
    """Knobs of the send loop (in `[cloud]`: max_inflight, ack_timeout_s; `[outbox]`: expire_every_s)."""

    max_inflight: int = 20
    ack_timeout_s: float = 30.0
    expire_every_s: float = 60.0


class Relay:
    """Drains the outbox to the cloud, highest lane first, as the bandwidth mode and breaker allow."""

    def __init__(self, outbox: Outbox, link: CloudLink, site: str, *, bandwidth: BandwidthPolicy | None = None,
                 breaker: Breaker | None = None, cfg: RelayConfig | None = None, clock=time.monotonic):
        self.outbox = outbox
        self.link = link
        self.site = topics.check_id(site, "site")
        self.gateway_id = outbox.gateway_id
        self.bw = bandwidth or BandwidthPolicy(link.cfg.bandwidth)
        self.breaker = breaker or Breaker(link.cfg.breaker)
        self.cfg = cfg or RelayConfig(max_inflight=link.cfg.max_inflight, ack_timeout_s=link.cfg.ack_timeout_s)
        self.clock = clock
        self._wake = asyncio.Event()
        self._tasks: set[asyncio.Task] = set()
        self._runner: asyncio.Task | None = None
        self._stopping = False
        self._last_expire = clock()
        self.latencies: deque[float] = deque(maxlen=2000)
        self.on_acked: list[Callable[[list[int]], None]] = []  # outbox row ids the cloud acknowledged
        self.counters = {"messages": 0, "bundles": 0, "rows_sent": 0, "send_failures": 0, "timeouts": 0,
                         "probes": 0, "submitted": 0, "submit_rejected": 0, "submit_errors": 0,
                         # window summaries/decisions accepted (body bytes); corrections (a later revision) apart
                         "summary_items": 0, "summary_bytes": 0, "correction_items": 0, "correction_bytes": 0}
        link._on_connect_cb = self._on_link_up
        link._on_disconnect_cb = self._on_link_down

    @classmethod
    def build(cls, outbox_cfg: OutboxConfig, cloud_cfg: CloudConfig, gateway_id: str, site: str,
              data_dir: str | Path = "fogline-data") -> "Relay":
        """Outbox, link, bandwidth policy and breaker from the `[outbox]` and `[cloud]` sections."""
        if not cloud_cfg.client_id:
            cloud_cfg.client_id = f"fogline-{gateway_id}"
        ob = Outbox(outbox_cfg, gateway_id, data_dir)
        rc = RelayConfig(max_inflight=cloud_cfg.max_inflight, ack_timeout_s=cloud_cfg.ack_timeout_s,
                         expire_every_s=outbox_cfg.expire_every_s)
        return cls(ob, CloudLink(cloud_cfg), site, cfg=rc)

    # -- producers ---------------------------------------------------------------------------
    def submit(self, lane: str, obj: Any, *, critical: bool = False) -> int | None:
        """Encode obj as CBOR and accept it durably into a lane; id, or None if refused (counted)."""
        return self.submit_many([(lane, obj, critical)])[0]

    def submit_many(self, items: Iterable[tuple[str, Any, bool]]) -> list[int | None]:
        """Accept many items in one transaction."""
        enc: list[tuple[str, bytes, bool]] = []
        kinds: list[str | None] = []
        for lane, obj, crit in items:
            try:
                plain = _plain(obj)
                enc.append((lane, cbor2.dumps(plain), crit))
                kinds.append(None if wire.body_key(plain) is None else
                             ("correction" if plain.get(wire.CORR) else "summary"))
            except Exception as e:  # unencodable producer object: refuse it loudly, keep going
                self.counters["submit_errors"] += 1
                log.error("event=relay_submit_error lane=%s error=%s", lane, e)
                enc.append((lane, None, crit))  # type: ignore[arg-type]
                kinds.append(None)
        ids = self.outbox.put_many(enc)
        for (_, body, _), kind, i in zip(enc, kinds, ids):
            if kind is not None and i is not None:
                self.counters[kind + "_items"] += 1
                self.counters[kind + "_bytes"] += len(body)
        self.counters["submitted"] += sum(1 for i in ids if i is not None)
        self.counters["submit_rejected"] += sum(1 for i in ids if i is None)
        self._wake.set()
        if self._runner is not None and not self._stopping and any(
                (lane == "alert" or crit) and i is not None for (lane, _, crit), i in zip(enc, ids)):
            # Alerts go out now, from the caller's stack: waiting for the send task to be
            # scheduled costs milliseconds when the loop is busy with an ingest batch.
            try:
                self._pump()
            except Exception:
                log.exception("event=relay_pump_error")
        return ids

    def submit_alert(self, node: str, seq: int, records: list[Any], critical: bool = True) -> int | None:
        """A node alert (already durable at ingest) -> alert lane, sent alone and at once."""
        return self.submit("alert", {"node": node, "seq": seq, "records": [list(r) for r in records]},
                           critical=critical)

    def submit_window(self, window: Any) -> int | None:
        """An aggregation Window (its wire body: key + revision, shared/summary.py) or a dict -> summary lane."""
        return self.submit("summary", window.as_dict() if hasattr(window, "as_dict") else window)

    # -- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        """Connect the link and start the send loop."""
        await self.link.start()
        self._runner = asyncio.create_task(self._run(), name="relay")

    async def stop(self, drain_s: float = 0.0) -> None:
        """Stop sending (optionally wait up to drain_s for in-flight PUBACKs), close the link."""
        self._stopping = True
        self._wake.set()
        if self._runner:
            await self._runner
        if self._tasks and drain_s > 0:
            await asyncio.wait(list(self._tasks), timeout=drain_s)
        for t in list(self._tasks):
            t.cancel()
        await self.link.stop()

    def _on_link_up(self) -> None:
        # A fresh connection is the best evidence of recovery: probe now instead of at backoff.
        if self.breaker.state == OPEN:
            self.breaker._retry_at = self.clock()
        self._wake.set()

    def _on_link_down(self, reason: str) -> None:
        self.breaker.trip(self.clock(), f"link_down:{reason}")
        self._wake.set()

    # -- send loop ---------------------------------------------------------------------------
    async def _run(self) -> None:
        while not self._stopping:
            self._wake.clear()
            try:
                delay = self._pump()
            except Exception:
                log.exception("event=relay_pump_error")
                delay = 1.0
            if self._stopping:
                break
            await wait_event(self._wake, delay)

    def _pump(self) -> float:
        """Send what may go now; return seconds until it is worth looking again."""
        now = self.clock()
        if now - self._last_expire >= self.cfg.expire_every_s:
            self._last_expire = now
            self.outbox.expire()
        if not self.link.connected.is_set():
            return 1.0
        if self.breaker.state == OPEN and self.breaker.retry_in(now) > 0:
            return self.breaker.retry_in(now)
        self.bw.update()
        allowed = set(self.bw.lanes())
        wait = 1.0
        probe_lane = None
        if self.bw.mode == "low" and any(self.outbox.pending(ln) for ln in LANES if ln not in allowed):
            if self.bw.probe_due():
                probe_lane = next(ln for ln in LANES if ln not in allowed and self.outbox.pending(ln))
        while len(self._tasks) < self.cfg.max_inflight:
            pick = self._next_message(allowed, probe_lane)
            if isinstance(pick, float):
                wait = min(wait, pick)
                break
            if not self.breaker.allow(self.clock()):
                return max(0.05, self.breaker.retry_in(self.clock()))
            lane, rows = pick
            if lane == probe_lane:
                self.counters["probes"] += 1
                probe_lane = None
            self._send(lane, rows)
            if self.breaker.state != "closed":
                break  # half-open: one probe at a time
        return max(0.001, wait)

    def _next_message(self, allowed: set[str], probe_lane: str | None) -> tuple[str, list[Row]] | float:
        """Rows of the next message in priority order, or seconds to wait if none is ready."""
        cfgb = self.bw.cfg
        wait = 1.0
        now_wall = time.time()
        for lane in LANES:
            if lane not in allowed and lane != probe_lane:
                continue
            if self.outbox.pending(lane) <= 0:
                continue
            if lane == "alert":
                rows = self.outbox.peek(lane, 1, 1 << 30)
            else:
                rows = self.outbox.peek(lane, cfgb.bundle_max_items, cfgb.bundle_max_bytes)
                if rows and rows[0].critical:
                    rows = rows[:1]  # critical items bypass batching
                elif rows and self.bw.batching() and lane != probe_lane and len(rows) < cfgb.bundle_max_items:
                    age = now_wall - rows[0].created
                    if age < cfgb.linger_s and sum(len(r.body) for r in rows) < cfgb.bundle_max_bytes // 2:
                        wait = min(wait, cfgb.linger_s - age)
                        continue  # let the bundle fill
            if not rows:
                continue
            size = sum(len(r.body) for r in rows)
            if lane != "alert" and not rows[0].critical:
                w = self.bw.bucket.wait_s(size)
                if w > 0:
                    wait = min(wait, w)
                    continue
            return lane, rows
        return wait

    def _send(self, lane: str, rows: list[Row]) -> None:
        envs = [envelope(self.gateway_id, r.id, r.lane, r.created, r.body) for r in rows]
        if len(envs) == 1:
            payload = envs[0]
        else:
            payload = bundle(self.gateway_id, lane, envs, rows[0].id, rows[-1].id, self.bw.cfg.compress_level)
            self.counters["bundles"] += 1
        topic = topics.cloud(self.site, lane)
        nbytes = len(payload) + len(topic) + MQTT_OVERHEAD
        self.bw.bucket.debit(nbytes)
        self.outbox.claim(rows)
        t0 = self.clock()
        fut = self.link.publish(topic, payload)
        self.bw.meter.sent(t0)
        self.counters["messages"] += 1
        task = asyncio.ensure_future(self._await_ack(fut, lane, rows, nbytes, t0))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _await_ack(self, fut: asyncio.Future, lane: str, rows: list[Row], nbytes: int, t0: float) -> None:
        ids = [r.id for r in rows]
        try:
            await asyncio.wait_for(fut, self.cfg.ack_timeout_s)
        except (CloudError, asyncio.TimeoutError) as e:
            now = self.clock()
            self.outbox.release(ids)
            self.bw.meter.failed(now)
            self.counters["send_failures"] += 1
            if isinstance(e, asyncio.TimeoutError):
                self.counters["timeouts"] += 1
            self.breaker.failure(now, reason=type(e).__name__)
            log.info("event=relay_send_failed lane=%s rows=%d error=%s", lane, len(rows), e)
            self._wake.set()
            return
        except asyncio.CancelledError:
            self.outbox.release(ids)
            raise
        now = self.clock()
        self.outbox.ack(ids)
        for cb in self.on_acked:
            cb(ids)
        self.bw.meter.acked(nbytes, now)
        self.bw.account(nbytes)
        self.breaker.success(now, now - t0)
        self.latencies.append(now - t0)
        self.counters["rows_sent"] += len(rows)
        self._wake.set()

    def stats(self) -> dict[str, Any]:
        """Everything `fogline status` shows about the relay."""
        lat = sorted(self.latencies)
        pct = (lambda q: round(lat[min(len(lat) - 1, int(q * len(lat)))] * 1000, 2)) if lat else (lambda q: None)
        return {"relay": dict(self.counters), "ack_ms": {"p50": pct(0.5), "p99": pct(0.99)},
                "outbox": self.outbox.stats(), "bandwidth": self.bw.stats(), "breaker": self.breaker.stats(),
                "link": self.link.stats()}


def _plain(obj: Any) -> Any:
    """Dataclasses (e.g. aggregate.Window) become dicts so cbor2 can encode them."""
    if is_dataclass(obj) and not isinstance(obj, type):
        return asdict(obj)
    return obj
