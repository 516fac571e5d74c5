"""Demo observer: what the dashboard shows, measured on the wire of the site broker.

SiteMonitor listens on the site broker (up/alert/state/ack) like a passive tap; it runs paho's network
thread and only touches its own state under a lock. The demo's cloud is the real cloud service
(tools/demo/cloud.py).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Mapping

import cbor2
import paho.mqtt.client as mqtt

from fogline.tools.demo.events import describe_alert
from fogline.shared import senml, topics

log = logging.getLogger(__name__)
MQTT_OVERHEAD = 5  # fixed header + packet id of a QoS 1 PUBLISH


def naive_json_bytes(site: str, node: str, name: str, unit: Any, value: Any, t: Any) -> int:
    """Bytes of the naive design: one JSON message per reading on its own topic."""
    metric = name.split("/", 1)[-1]
    topic = f"{site}/{node}/{metric}"
    body = json.dumps({"node": node, "metric": metric, "value": value, "unit": unit, "time": t})
    return len(topic) + len(body) + MQTT_OVERHEAD


@dataclass
class NodeView:
    """Latest state of one node as seen on the site broker."""
    node: str
    last_seen: float = 0.0
    values: dict[str, deque] = field(default_factory=dict)  # metric -> recent values
    units: dict[str, str] = field(default_factory=dict)
    readings: int = 0
    seqs: dict[str, int] = field(default_factory=lambda: {"up": 0, "alert": 0})
    acked: dict[str, int] = field(default_factory=lambda: {"up": 0, "alert": 0})
    alerts: int = 0
    alert_log: list[tuple[str, float]] = field(default_factory=list)  # (rule or rule.clear, reading time)
    state: dict[str, Any] = field(default_factory=dict)
    link: str = "mqtt"


def _client(client_id: str) -> mqtt.Client:
    return mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True)


class SiteMonitor:
    """Passive subscriber on the site broker: per-node values, seqs, acks, alerts, wire bytes."""

    def __init__(self, host: str, port: int, site: str, history: int = 40,
                 rules: Mapping[str, Mapping[str, Any]] | None = None):
        self.host, self.port, self.site = host, port, site
        self.rules = dict(rules or {})  # rule name -> rule config, to tell alerts with their threshold
        self.history = history
        self.nodes: dict[str, NodeView] = {}
        self.events: deque[str] = deque(maxlen=12)
        self.lock = threading.Lock()
        self.counters = {"up_msgs": 0, "up_bytes": 0, "readings": 0, "alert_msgs": 0, "alert_readings": 0,
                         "naive_bytes": 0, "bad": 0, "acks": 0, "states": 0}
        self._c = _client(f"fogline-demo-monitor-{int(time.time() * 1000) % 100000}")
        self._c.on_connect = self._on_connect
        self._c.on_message = self._on_message

    def start(self) -> None:
        self._c.connect_async(self.host, self.port, keepalive=30)
        self._c.loop_start()

    def stop(self) -> None:
        self._c.disconnect()
        self._c.loop_stop()

    def _on_connect(self, c, _u, _f, rc, _p=None) -> None:
        if not rc.is_failure:
            for kind in ("up", "alert", "state", "ack"):
                c.subscribe(topics.node_filter(self.site, kind), qos=1)

    def view(self, node: str) -> NodeView:
        v = self.nodes.get(node)
        if v is None:
            v = self.nodes[node] = NodeView(node)
        return v

    def _on_message(self, _c, _u, msg) -> None:
        try:
            _site, node, kind = topics.parse_node(msg.topic)
            with self.lock:
                self._handle(node, kind, msg.payload, len(msg.topic))
        except (ValueError, TypeError, KeyError, IndexError, cbor2.CBORDecodeError) as e:
            with self.lock:
                self.counters["bad"] += 1
            log.debug("event=monitor_bad_message topic=%s error=%s", msg.topic, e)

    def _handle(self, node: str, kind: str, payload: bytes, topic_len: int) -> None:
        v = self.view(node)
        now = time.time()
        if kind == "ack":
            m = cbor2.loads(payload)
            for lane in ("up", "alert"):
                if isinstance(m, dict) and isinstance(m.get(lane), int):
                    v.acked[lane] = max(v.acked[lane], m[lane])
            self.counters["acks"] += 1
            return
        if kind == "state":
            m = cbor2.loads(payload)
            if isinstance(m, dict):
                v.state = m
                self.counters["states"] += 1
            return
        v.last_seen = now
        msg = cbor2.loads(payload)
        first, pack = msg[0], msg[1]
        recs = senml.in_seq_order(senml.resolve(pack, strict=False))
        last = first + len(recs) - 1
        self.counters[f"{kind}_msgs"] += 1
        self.counters["up_bytes"] += len(payload) + topic_len + MQTT_OVERHEAD
        if last <= v.seqs[kind]:
            return  # a resend: the wire saw it before
        fresh = recs[max(0, v.seqs[kind] - first + 1):]
        v.seqs[kind] = last
        for rec in fresh:
            name, unit, value, t = rec[0], rec[1], rec[2], rec[3]
            metric = name.split("/", 1)[-1]
            if kind == "alert":
                v.alerts += 1
                if isinstance(t, (int, float)):
                    v.alert_log.append((metric, float(t)))
                self.counters["alert_readings"] += 1
                self.events.appendleft(f"{time.strftime('%H:%M:%S')} "
                                       f"{describe_alert(node, metric, value, unit, self.rules)}")
                continue
            v.readings += 1
            self.counters["readings"] += 1
            self.counters["naive_bytes"] += naive_json_bytes(self.site, node, name, unit, value, t)
            if isinstance(value, (int, float)):
                dq = v.values.get(metric)
                if dq is None:
                    dq = v.values[metric] = deque(maxlen=self.history)
                dq.append(float(value))
                if unit:
                    v.units[metric] = unit
