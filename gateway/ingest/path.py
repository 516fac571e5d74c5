"""The ingest hot path of the Gateway: messages in -> validate -> queue -> group commit -> acks -> aggregate -> hooks.

`IngestPath` is a mixin of `fogline.gateway.app.Gateway` (it uses the gateway's store, registry, metrics,
aggregator and hooks); it holds the code every reading runs through, apart from the lifecycle.
"""

from __future__ import annotations

import asyncio
import logging
import time
from operator import attrgetter
from collections.abc import Sequence
from typing import Any

from fogline.gateway.aggregate.core import Window
from fogline.gateway.ingest.acks import AckSender
from fogline.gateway.ingest.epochs import EpochEvent
from fogline.gateway.ingest.readings import BatchReadings, pack_columns
from fogline.gateway.store.core import LANE_NAME, DeadLetter
from fogline.gateway.ingest.validate import Message, Reading, Rejected, decode_state, decode_uplink, parse_topic
from fogline.shared import topics

log = logging.getLogger(__name__)


class IngestPath(AckSender):
    """Mixin: MQTT/BLE messages into durable, acked, aggregated readings (see fogline.gateway.app)."""

    _series: dict[str, set[str]] | None = None  # node -> metrics admitted (the store's series and newer)
    _series_total = 0
    _inflight = 0  # group commits running on the store thread: flush() waits for them too
    # ------------------------------------------------------------------ ingest
    def _on_mqtt(self, items: list[tuple[str, bytes, float]]) -> None:
        self.metrics.inc("messages_in", len(items), link="mqtt")
        one = self._ingest_one
        for topic, payload, rx in items:
            one(topic, payload, rx, "mqtt")

    def ingest(self, topic: str, payload: bytes, rx: float | None = None, link: str = "mqtt") -> None:
        """Validate one node message and queue it for commit; refusals go to dead-letter."""
        self.metrics.inc("messages_in", link=link)
        self._ingest_one(topic, payload, self.clock() if rx is None else rx, link)

    def _ingest_one(self, topic: str, payload: bytes, rx: float, link: str) -> None:
        node = kind = ""
        msg = None
        try:
            nk = self._topics.get(topic)
            if nk is None:
                nk = parse_topic(topic, self.site)
                if len(self._topics) > 100000:  # bounded: thousands of bogus node ids must not grow it
                    self._topics.clear()
                self._topics[topic] = nk
            node, kind = nk
            if kind in ("up", "alert"):
                msg = decode_uplink(node, kind, payload, self.policy, rx)
                msg.topic = topic
                for v in self._validators:
                    v(msg)
                self.accept(msg)
            elif kind == "state":
                st = decode_state(payload, self.policy)
                self._state(node, st, rx)
            else:
                raise Rejected("topic", f"gateway does not ingest kind {kind!r}")
        except Rejected as e:
            self.reject(e.reason, e.detail, topic=topic, source=node, link=link, payload=payload, rx=rx,
                        **_uplink_of(kind, msg))
        except Exception as e:  # a bug must not stop ingest: dead-letter it and go on
            log.exception("event=ingest_bug topic=%s", topic)
            self.reject("internal", f"{type(e).__name__}: {e}", topic=topic, source=node, link=link,
                        payload=payload, rx=rx, **_uplink_of(kind, msg))

    def accept(self, msg: Message) -> None:
        """Queue a validated message (MQTT or BLE) for durable commit."""
        if not self.registry.admit(msg.node, msg.link, msg.rx):
            raise Rejected("unknown_device", f"node {msg.node!r} is not registered "
                                             f"(policy {self.registry.policy}, {len(self.registry.devices)} devices)")
        if self._gate is not None and not self._gate(msg):
            return  # another gateway of the cluster is this node's primary: it commits and acks, not us
        self._cap_series(msg)
        n = len(msg.readings)
        self.registry.touch(msg.node, msg.link, msg.rx, n)
        self._msgs.append(msg)
        self._n_readings += n
        self._readings_in[msg.lane] = self._readings_in.get(msg.lane, 0) + n
        if msg.lane == "alert":
            self._urgent = True  # an alert does not wait for the group-commit window
        if len(self._msgs) == 1 or self._n_readings >= self._batch_max or self._urgent:
            self._work.set()

    def _cap_series(self, msg: Message) -> None:
        """Readings of series beyond [ingest] max_series_per_node / max_series become refused records."""
        series = self._series if self._series is not None else self._load_series()
        known = series.get(msg.node)
        pk = pack_columns(msg.readings)
        if pk is not None and known is not None and known.issuperset(pk.metrics):
            return  # the common case: every series of the pack is known
        ing = self.config.ingest
        if pk is not None:
            if known is None:
                known = series[msg.node] = set()
            fresh = [mt for mt in dict.fromkeys(pk.metrics) if mt not in known]
            if (len(known) + len(fresh) <= ing.max_series_per_node
                    and self._series_total + len(fresh) <= ing.max_series):
                if fresh:  # every new series fits: the pack stays columns
                    known.update(fresh)
                    self._series_total += len(fresh)
                    self.metrics.set("series", self._series_total)
                return
        elif known is None:
            known = series[msg.node] = set()
        else:
            last = None
            for r in msg.readings:  # records of one group share the metric object
                if r.metric is not last:
                    if r.metric not in known:
                        break
                    last = r.metric
            else:
                return
        keep: list[Reading] = []
        for r in msg.readings:
            if r.metric not in known:
                if len(known) >= ing.max_series_per_node or self._series_total >= ing.max_series:
                    msg.bad.append((r.seq, "series_cap", f"{r.metric}: node has {len(known)} series "
                                    f"(max_series_per_node {ing.max_series_per_node}), gateway "
                                    f"{self._series_total} (max_series {ing.max_series})"))
                    continue
                known.add(r.metric)
                self._series_total += 1
            keep.append(r)
        if len(keep) < len(msg.readings):
            msg.readings = keep
        self.metrics.set("series", self._series_total)

    def _load_series(self) -> dict[str, set[str]]:
        series: dict[str, set[str]] = {}
        store = self.store
        if store is not None:
            names = store.names.copy()  # copies are atomic: the store thread may be adding series
            for nid, metric in store.sids.copy():
                series.setdefault(names.get(nid, ""), set()).add(metric)
        self._series = series
        self._series_total = sum(len(v) for v in series.values())
        return series

    def reject(self, reason: str, detail: str, *, topic: str = "", source: str = "", link: str = "mqtt",
               payload: bytes = b"", rx: float | None = None, lane: str = "",
               seqs: tuple[int, int] | None = None) -> None:
        """Record a refused message in the dead-letter table (with the next batch) and count it.

        lane (up/alert) marks a refused uplink of node `source` (seqs: its range, if known)."""
        self.metrics.inc("dead_letters", reason=reason)
        log.info("event=dead_letter reason=%s source=%s topic=%s detail=%s", reason, source, topic, detail[:200])
        self._dead.append(DeadLetter(reason, detail, topic, source, link, payload[:4096],
                                     self.clock() if rx is None else rx, lane, seqs))
        self._work.set()

    def _state(self, node: str, st: dict[str, Any], now: float) -> None:
        if not self.registry.admit(node, "mqtt", now):
            raise Rejected("unknown_device", f"node {node!r} is not registered (policy quarantine)")
        dev = self.registry.update_state(node, st, now)
        self.metrics.inc("state_messages")
        if isinstance(dev.backlog, dict):
            for lane in ("up", "alert"):  # label values from a fixed set: a node cannot invent label sets
                n = dev.backlog.get(lane)
                if isinstance(n, (int, float)):
                    self.metrics.set("node_backlog", n, node=node, lane=lane)
        if dev.oldest and self.store is not None:
            ep = st.get("epoch", 0)
            for lane, seq in dev.oldest.items():
                if isinstance(seq, int) and isinstance(ep, int):
                    self._spawn(self._note_oldest(node, lane, seq, ep))
        for cb in self._hooks["state"]:
            self._call(cb, node, st, dev)
        self._work.set()

    async def _note_oldest(self, node: str, lane: str, seq: int, epoch: int = 0) -> None:
        assert self.store is not None
        gap = await self._run(self.store.note_oldest, node, lane, seq, epoch)
        if gap:
            self.metrics.inc("seq_gaps_skipped", lane=lane)
            log.warning("event=seq_gap_skipped node=%s lane=%s lo=%d hi=%d why=node_oldest", node, lane, *gap)
            self._publish_ack(node, self.store.ack_state(node))

    # ------------------------------------------------------------------ commit
    async def _commit_loop(self) -> None:
        while True:
            try:
                if await self._commit_once():
                    return
            except asyncio.CancelledError:
                raise
            except Exception:  # never let the committer die: flush() and stop() wait on it
                self.metrics.inc("commit_loop_errors")
                log.exception("event=commit_loop_error")
                self._idle.set()
                await asyncio.sleep(0.1)

    async def _commit_once(self) -> bool:
        """One group commit; True when stopped and drained."""
        sc = self.config.store
        await self._work.wait()
        if self._n_readings < sc.batch_max and self._running and sc.batch_ms > 0 and not self._urgent:
            await asyncio.sleep(sc.batch_ms / 1000.0)  # group commit: let the batch fill
        self._work.clear()
        self._urgent = False
        if self.mqtt is not None:
            self.mqtt._drain()
        msgs, self._msgs = self._msgs, []
        dead, self._dead = self._dead, []
        wins, self._windows = self._windows, []
        self._n_readings = 0
        devs = {}
        now_m = time.monotonic()
        if self.registry.dirty and (now_m - self._devs_saved >= 1.0 or not self._running or self._force_devs):
            devs = self.registry.take_dirty()  # device rows: at most once a second (or on flush)
            self._devs_saved = now_m
            self._force_devs = False
        if msgs or dead or wins or devs:
            self._inflight += 1
            try:
                await self._commit(msgs, dead, wins, devs)
            finally:
                self._inflight -= 1
        if not (self._msgs or self._dead or self._windows):
            self._idle.set()
            if not self._running:
                return True
        return False

    async def _commit(self, msgs: list[Message], dead: list[DeadLetter], wins: list[Window],
                      devs: dict[str, dict[str, Any]]) -> None:
        assert self.store is not None
        try:
            res = await self._run(self.store.commit_batch, msgs, dead, wins, devs, self.clock())
        except Exception:
            # Nothing of this batch is acked: the nodes re-send. Dead letters/windows are retried.
            self.metrics.inc("commit_errors")
            log.exception("event=commit_failed messages=%d", len(msgs))
            self._dead[:0] = dead
            self._windows[:0] = wins
            await asyncio.sleep(0.5)
            return
        m = self.metrics
        m.inc("commits")
        rin, self._readings_in = self._readings_in, {}
        for lane, n in rin.items():
            m.inc("readings_in", n, lane=lane)
        m.set("commit_seconds_last", res.commit_s)
        new_all: list[Sequence[Reading]] = []
        wall = self.clock()
        for msg, r in zip(msgs, res.results):
            for seq, reason in r.dead:
                m.inc("dead_letters", reason=reason)
                m.inc("records_refused", lane=msg.lane)
                log.info("event=dead_letter reason=%s source=%s lane=%s seq=%d (record refused, pack kept)",
                         reason, msg.node, msg.lane, seq)
            if r.refused:
                m.inc("readings_refused", r.refused, lane=msg.lane)
                self.reject(r.reason, r.detail, topic=topics.node(self.site, msg.node, msg.lane),
                            source=msg.node, link=msg.link, payload=msg.raw, rx=msg.rx)
            if r.status == "duplicate":  # counted in readings, like partial overlaps
                m.inc("duplicates", len(msg.readings), lane=msg.lane)
                m.inc("duplicate_messages", lane=msg.lane)
            elif r.status == "partial" and len(msg.readings) - len(r.new) - r.refused:
                m.inc("duplicates", len(msg.readings) - len(r.new) - r.refused, lane=msg.lane)
            if r.new:
                new_all.append(r.new)
        for node, lane, lo, hi, why in res.gaps:
            m.inc("seq_gaps_skipped", lane=lane)
            log.warning("event=seq_gap_skipped node=%s lane=%s lo=%d hi=%d why=%s", node, lane, lo, hi, why)
        for ev in res.epochs:
            self._epoch_event(ev)
        batch = BatchReadings(new_all)
        m.inc("readings_stored", len(batch))
        mqtt_nodes = {x.node for x in msgs if x.link == "mqtt"}
        for node, ack in res.acks.items():
            if ack and node in mqtt_nodes:
                self._publish_ack(node, ack)
        if new_all:
            agg = self.aggregator
            hot = self.hot
            alerts = []
            for rs in new_all:  # hot tier and windows pack by pack, from the pack's columns
                pk = pack_columns(rs)
                if pk is not None:
                    node, lane = pk.node, pk.lane
                    metrics, units, values, times = pk.metrics, pk.units, pk.values, pk.times
                else:
                    node, lane = rs[0].node, rs[0].lane
                    metrics, units, values, times = _columns(rs)
                hot.add_pack(node, metrics, times, values)
                agg.add_many(node, metrics, units, values, times, wall)
                if lane == "alert":
                    alerts.extend(rs)
            for cb in self._hooks["readings"]:
                self._call(cb, batch)
            for rd in alerts:
                m.inc("alerts_in")
                for cb in self._hooks["alert"]:
                    self._call(cb, rd)
            await self._late_windows(flush=False)  # re-opens before the next commit: they read exactly what is stored

    def _epoch_event(self, ev: EpochEvent) -> None:
        assert self.store is not None
        node, lane = self.store.names.get(ev.nid, "?"), LANE_NAME.get(ev.lane, "?")
        if ev.old is not None:
            self.metrics.inc("epoch_resets", lane=lane)
            log.warning("event=node_epoch_reset node=%s lane=%s old=%d new=%d base=%d skipped=%d",
                        node, lane, ev.old, ev.new, ev.base, ev.skipped)
        self.registry.note_epoch(node, ev.new, ev.old is not None, ev.skipped)

_METRIC, _UNIT, _VALUE, _T = (attrgetter(a) for a in ("metric", "unit", "value", "t"))


def _columns(rs: list[Reading]) -> tuple[list[str], list[str | None], list[float], list[float]]:
    """(metrics, units, values, times) of readings, each column built in C."""
    return list(map(_METRIC, rs)), list(map(_UNIT, rs)), list(map(_VALUE, rs)), list(map(_T, rs))


def _uplink_of(kind: str, msg: Message | None) -> dict[str, Any]:
    """reject() keywords for a refused up/alert message: its lane and, once decoded, its seq range."""
    if kind not in ("up", "alert"):
        return {}
    if msg is None:
        return {"lane": kind}
    return {"lane": kind, "seqs": (msg.first_seq, msg.first_seq + max(msg.records, 1) - 1)}
