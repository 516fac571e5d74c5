"""Transports for federation messages: an in-process bus (tests, benchmark) and MQTT (paho-mqtt 2.x).

Both have publish(topic, payload), subscribe(filter, handler) and pump_once(): handlers run in the
caller's thread when it pumps, never in paho's network thread, so a handler may take time (e.g.
aggregate, evaluate) without stalling keepalives. `published` records what this side sent.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections import deque
from typing import Any, Callable

log = logging.getLogger(__name__)
handler_errors = 0  # handler exceptions caught by pump_once (a bug somewhere; logged with traceback)


def _deliver(handler: Callable[[str, bytes], None], topic: str, payload: bytes) -> None:
    """Run a handler; a failing one is logged and counted, never stops the pump."""
    global handler_errors
    try:
        handler(topic, payload)
    except Exception:
        handler_errors += 1
        log.exception("event=fed_handler_failed topic=%s", topic)


class InProcessBus:
    """Topic bus inside one process (tests, benchmark); records every published payload."""

    def __init__(self) -> None:
        self.published: list[tuple[str, bytes]] = []
        self._q: deque[tuple[str, bytes]] = deque()
        self._subs: list[tuple[str, Callable[[str, bytes], None]]] = []

    def publish(self, topic: str, payload: bytes) -> None:
        self.published.append((topic, payload))
        self._q.append((topic, payload))

    def subscribe(self, filt: str, handler: Callable[[str, bytes], None]) -> None:
        self._subs.append((filt, handler))

    def pump_once(self) -> int:
        """Deliver queued messages in the caller's thread; returns how many."""
        from paho.mqtt.client import topic_matches_sub

        n = 0
        while self._q:
            t, p = self._q.popleft()
            for filt, h in list(self._subs):
                if topic_matches_sub(filt, t):
                    _deliver(h, t, p)
            n += 1
        return n


class MqttBus:
    """One paho-mqtt 2.x connection; messages are queued by paho's thread and delivered by pump_once()."""

    def __init__(self, host: str, port: int, client_id: str, username: str | None = None,
                 password: str | None = None, timeout: float = 10.0, tls: bool = False,
                 ca_file: str | None = None) -> None:
        from fogline.gateway import mqttclient

        self.published: list[tuple[str, bytes]] = []
        self._in: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self._subs: list[tuple[str, Callable[[str, bytes], None]]] = []
        self._ready = threading.Event()
        self.connect_error: str | None = None
        # certificate verification on with tls (system store unless ca_file)
        self.c = mqttclient.make_client(client_id, username=username or None, password=password, tls=tls,
                                        ca_file=ca_file)
        self.c.on_connect = lambda c, u, f, rc, p: self._on_connect(rc)
        self.c.on_message = lambda c, u, m: self._in.put((m.topic, bytes(m.payload)))
        self._cond = threading.Condition()
        self._acked: set[int] = set()
        self.c.on_subscribe = lambda c, u, mid, rc, p: self._on_suback(mid)
        self.c.connect(host, port, keepalive=30)
        self.c.loop_start()
        if not self._ready.wait(timeout) or self.connect_error:
            why = self.connect_error or "no CONNACK"
            self.close()
            raise ConnectionError(f"federation broker {host}:{port}: {why}")

    def _on_connect(self, rc: Any) -> None:
        if getattr(rc, "is_failure", False):
            self.connect_error = str(rc)
        else:
            self.connect_error = None
            for filt, _h in self._subs:  # re-subscribe after a reconnect
                self.c.subscribe(filt, qos=1)
        self._ready.set()

    def _on_suback(self, mid: int) -> None:
        with self._cond:
            self._acked.add(mid)
            self._cond.notify_all()

    def publish(self, topic: str, payload: bytes, timeout: float = 10.0) -> None:
        """QoS 1 publish, waiting for PUBACK; ConnectionError if the broker did not take it."""
        self.published.append((topic, payload))
        try:
            info = self.c.publish(topic, payload, qos=1)
            info.wait_for_publish(timeout)
        except (RuntimeError, ValueError) as e:
            raise ConnectionError(f"federation: publish to {topic} failed ({e})") from None
        if not info.is_published():
            raise ConnectionError(f"federation: no PUBACK for {topic} within {timeout:g} s")

    def subscribe(self, filt: str, handler: Callable[[str, bytes], None]) -> None:
        self._subs.append((filt, handler))
        _rc, mid = self.c.subscribe(filt, qos=1)
        with self._cond:  # wait for SUBACK: a round started right after must reach this subscriber
            self._cond.wait_for(lambda: mid in self._acked or not self.c.is_connected(), timeout=10.0)

    def pump_once(self) -> int:
        """Deliver messages received so far in the caller's thread; returns how many."""
        from paho.mqtt.client import topic_matches_sub

        n = 0
        while True:
            try:
                t, p = self._in.get_nowait()
            except queue.Empty:
                return n
            for filt, h in list(self._subs):
                if topic_matches_sub(filt, t):
                    _deliver(h, t, p)
            n += 1

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()
