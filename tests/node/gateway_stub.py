"""A tiny test-side gateway (paho): stores up/alert packs by seq and acks the contiguous prefix."""

from __future__ import annotations

import threading
import time

import cbor2
import paho.mqtt.client as mqtt

from fogline.shared import auth, epoch, senml, topics


class AckingGateway:
    """Subscribes to a site's up/alert, records every reading, publishes {"up": n, "alert": m} acks."""

    def __init__(self, port: int, site: str = "s1", delay_s: float = 0.0, ack: bool = True):
        self.site = site
        self.delay_s = delay_s
        self.ack = ack
        self.lock = threading.Lock()
        self.got: dict[tuple[str, str], dict[int, tuple]] = {}
        self.contig: dict[tuple[str, str], int] = {}
        self.arrivals: list[tuple[str, str, int, int, int]] = []  # node, lane, first_seq, count, contig before
        self.first_rx: dict[tuple[str, str, int], float] = {}  # wall-clock time of first arrival
        self.gaps = 0  # a pack that started beyond the contiguous prefix: something was lost on the way
        self.msgs = 0
        self.bytes = 0
        self.records = 0
        self.states: list[dict] = []
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"gw-{port}")
        self.c.on_message = self._on_message
        self.c.on_connect = self._on_connect
        self.c.reconnect_delay_set(0.05, 0.5)
        self.c.connect_async("127.0.0.1", port, keepalive=5)
        self.c.loop_start()

    def _on_connect(self, c, userdata, flags, rc, props=None):
        c.subscribe([(topics.node_filter(self.site, "up"), 1), (topics.node_filter(self.site, "alert"), 1),
                     (topics.node_filter(self.site, "state"), 1)])

    def _on_message(self, c, userdata, msg):
        _, node, kind = topics.parse_node(msg.topic)
        if kind == "state":
            with self.lock:
                self.states.append(cbor2.loads(msg.payload))
            return
        if self.delay_s:
            time.sleep(self.delay_s)
        first, pack_bytes, _, ep = auth.split_uplink(msg.payload)
        recs = senml.resolve(cbor2.loads(pack_bytes))
        key = (node, kind)
        with self.lock:
            self.msgs += 1
            self.bytes += len(msg.payload)
            self.records += len(recs)
            self.arrivals.append((node, kind, first, len(recs), self.contig.get(key, 0)))
            got = self.got.setdefault(key, {})
            if first > self.contig.get(key, 0) + 1:
                self.gaps += 1
            now = time.time()
            for i, r in enumerate(recs):
                if first + i not in got:
                    got[first + i] = r
                    self.first_rx[(node, kind, first + i)] = now
            n = self.contig.get(key, 0)
            while n + 1 in got:
                n += 1
            self.contig[key] = n
            ack = epoch.ack_map({ln: self.contig[(node, ln)] for ln in ("up", "alert") if (node, ln) in self.contig},
                                ep)  # one flash generation per node here: echo the node's epoch
        if self.ack:
            c.publish(topics.node(self.site, node, "ack"), cbor2.dumps(ack), qos=1)

    def stop(self) -> None:
        self.c.loop_stop()
        self.c.disconnect()
