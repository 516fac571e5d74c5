"""Gateway-shaped traffic for the cloud service's tests and bench: relay envelopes published to a broker.

Messages are built with the gateway's own envelope/bundle code (fogline.gateway.relay.cloud), in the bodies the store-fed
relay sends (fogline.gateway.relay.feed): raw lane {"node", "lane": "up", "first_seq", "records"}, alert lane
{"node", "seq", "records"}. `expected()` names every (site, node, lane, seq) a feed contains.
"""

from __future__ import annotations

import threading
import time
from typing import Iterator

import cbor2
import paho.mqtt.client as mqtt

from fogline.gateway.relay.cloud import bundle, envelope

T0 = 1_780_000_000.0  # readings time base (2026)


def raw_message(gw: str, row_id: int, node: str, first_seq: int, n: int, t0: float = T0) -> bytes:
    """One raw-lane envelope with n readings of node, seqs first_seq..first_seq+n-1."""
    recs = [["temperature", "Cel", 20.0 + ((first_seq + i) % 100) / 10, t0 + first_seq + i] for i in range(n)]
    body = cbor2.dumps({"node": node, "lane": "up", "first_seq": first_seq, "records": recs})
    return envelope(gw, row_id, "raw", time.time(), body)


def raw_bundle(gw: str, first_id: int, node: str, first_seq: int, per_env: int, envs: int) -> bytes:
    """A compressed bundle of `envs` raw envelopes (like the relay's bundling), consecutive seqs."""
    items = [raw_message(gw, first_id + i, node, first_seq + i * per_env, per_env) for i in range(envs)]
    return bundle(gw, "raw", items, first_id, first_id + envs - 1)


def alert_message(gw: str, row_id: int, node: str, seq: int, sent: float | None = None) -> bytes:
    """One alert-lane envelope (ts = sent: the gateway's outbox time, for latency)."""
    body = cbor2.dumps({"node": node, "seq": seq, "records": [["temperature", "Cel", 85.0, T0 + seq]]})
    return envelope(gw, row_id, "alert", time.time() if sent is None else sent, body)


def summary_message(gw: str, row_id: int, node: str, start: float, rev: int, mean: float) -> bytes:
    """A window summary (rev = readings it summarises; the cloud keeps the highest)."""
    body = cbor2.dumps({"node": node, "metric": "temperature", "start": start, "end": start + 60.0, "count": rev,
                        "min": mean - 1, "max": mean + 1, "mean": mean, "last": mean, "stddev": 0.5,
                        "unit": "Cel", "rev": rev, **({"corr": 1} if rev > 1 else {})})
    return envelope(gw, row_id, "summary", time.time(), body)


def feed_plan(nodes: int, messages: int, per_msg: int, site: str = "s1") -> Iterator[tuple[str, bytes, list]]:
    """(topic, payload, keys) of a stream: raw messages round-robin over nodes, keys (site, node, 0, seq)."""
    nexts = [1] * nodes
    for i in range(messages):
        k = i % nodes
        node = f"n{k}"
        first = nexts[k]
        nexts[k] += per_msg
        yield (f"fogline/{site}/raw", raw_message("gw1", i + 1, node, first, per_msg),
               [(site, node, 0, s) for s in range(first, first + per_msg)])


class Publisher:
    """A QoS 1 publisher (one MQTT client) with a bounded in-flight window; publish() blocks when full."""

    def __init__(self, port: int, client_id: str = "feed", inflight: int = 200):
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
        self.c.max_inflight_messages_set(inflight)
        self.c.max_queued_messages_set(0)
        self.acked = 0
        self.sent = 0
        self.cv = threading.Condition()
        self.c.on_publish = self._on_publish
        self.c.connect("127.0.0.1", port)
        self.c.loop_start()
        self.window = inflight

    def _on_publish(self, *_a) -> None:
        with self.cv:
            self.acked += 1
            self.cv.notify_all()

    def publish(self, topic: str, payload: bytes) -> None:
        with self.cv:
            while self.sent - self.acked >= self.window:
                self.cv.wait(1.0)
            self.sent += 1
        self.c.publish(topic, payload, qos=1)

    def drain(self, timeout: float = 120) -> bool:
        """Wait until every publish is acknowledged by the broker."""
        deadline = time.monotonic() + timeout
        with self.cv:
            while self.acked < self.sent and time.monotonic() < deadline:
                self.cv.wait(0.5)
            return self.acked >= self.sent

    def stop(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()
