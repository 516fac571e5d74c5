"""MQTT ingest in a child process ([mqtt] worker_process = true): paho's per-message cost on another core.

Same interface as `fogline.gateway.ingest.mqtt.MqttIngest`. The child runs the paho-mqtt 2.x
client (VERSION2 callbacks); received messages travel to the gateway in batches over a
pipe, acks and other publishes travel back over a second pipe. Nothing about durability
changes: paho PUBACKs a message when the child has it, and the node keeps every reading
until the gateway's own `ack` (sent only after the SQLite commit). If the gateway process
dies (even kill -9) the child sees the pipe close and exits at once, so it never keeps
the session (and messages) away from the next gateway.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from multiprocessing.connection import Connection

from typing import Any, Callable

from fogline.shared import topics

log = logging.getLogger(__name__)

Item = tuple[str, bytes, float]
# Payload bytes held for the loop on each side of the pipe (child buffer, parent scheduled batches):
# past it the side waits, so a slow loop backs up into the broker instead of into our memory.
QUEUE_MAX_BYTES = 64 << 20


def _child(mcfg: Any, client_id: str, filters: list[str], out: Any, inp: Any, queue_max: int,
           max_bytes: int = QUEUE_MAX_BYTES) -> None:
    """Child process: paho client; batches messages to `out`, executes commands from `inp` (never returns on EOF)."""
    import paho.mqtt.client as mqtt

    buf: list[Item] = []
    held = [0]  # payload bytes in buf
    lock = threading.Condition()
    stopping = threading.Event()
    send_lock = threading.Lock()
    session = [False]

    def send(obj: Any) -> None:
        try:
            with send_lock:
                out.send(obj)
        except (BrokenPipeError, OSError, EOFError):
            os._exit(0)  # the gateway is gone: never hold its session

    def on_connect(c: Any, u: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            send(("event", "connect_failed", str(reason)))
            return
        session[0] = bool(getattr(flags, "session_present", False))
        c.subscribe([(f, 1) for f in filters])

    def on_subscribe(c: Any, u: Any, mid: Any, reasons: Any, props: Any) -> None:
        # "connected" only once the broker holds the subscriptions: a node's message published
        # between CONNACK and SUBACK of a first session would otherwise never reach us.
        send(("event", "connected", session[0]))

    def on_disconnect(c: Any, u: Any, flags: Any, reason: Any, props: Any) -> None:
        send(("event", "disconnected", str(reason)))

    def on_message(c: Any, u: Any, m: Any) -> None:
        with lock:
            if len(buf) > queue_max or held[0] > max_bytes:
                deadline = time.monotonic() + 2.0
                while (len(buf) > queue_max or held[0] > max_bytes) and time.monotonic() < deadline:
                    lock.wait(0.01)
            buf.append((m.topic, m.payload, time.time()))
            held[0] += len(m.payload)
            if len(buf) == 1:
                lock.notify_all()

    def pump() -> None:
        while True:
            with lock:
                while not buf and not stopping.is_set():
                    lock.wait(0.05)
                batch = buf[:]
                buf.clear()
                held[0] = 0
                lock.notify_all()
            if batch:
                send(("msgs", batch))
            elif stopping.is_set():
                return
            time.sleep(0.0005)  # let a few more arrive: fewer, larger pipe writes

    from fogline.gateway.ingest.mqtt import BufferedClient
    from fogline.gateway import mqttclient
    c = mqttclient.from_config(mcfg, client_id, clean_session=mcfg.clean_session, max_inflight=1000,
                               client_class=BufferedClient)
    c.on_connect, c.on_disconnect, c.on_message = on_connect, on_disconnect, on_message
    c.on_subscribe = on_subscribe
    c.connect_async(mcfg.host, mcfg.port, keepalive=mcfg.keepalive)
    c.loop_start()
    th = threading.Thread(target=pump, daemon=True)
    th.start()
    while True:
        try:
            cmd = inp.recv()
        except (EOFError, OSError):
            os._exit(0)
        if cmd[0] == "pub":
            c.publish(cmd[1], cmd[2], qos=cmd[3], retain=cmd[4])
        elif cmd[0] == "stop":
            deadline = time.monotonic() + cmd[1]
            while c.is_connected() and getattr(c, "_out_messages", None) and time.monotonic() < deadline:
                time.sleep(0.01)
            c.disconnect()
            c.loop_stop()
            stopping.set()
            th.join(5)
            send(("stopped",))
            return


class MqttWorkerIngest:
    """Drop-in for MqttIngest with the paho client in a child process."""

    KINDS = ("up", "alert", "state")

    on_ready: Callable[[], None] | None = None  # called on the reader thread each time the subscriptions are held

    def __init__(self, cfg: Any, loop: asyncio.AbstractEventLoop, deliver: Callable[[list[Item]], None],
                 metrics: Any, queue_max: int = 100000, queue_max_bytes: int = QUEUE_MAX_BYTES):
        self.cfg = cfg
        self.queue_max_bytes = queue_max_bytes
        self._held = 0  # payload bytes scheduled on the loop, not yet delivered (both threads, under _room)
        self.held_peak = 0
        self._room = threading.Condition()
        self.loop = loop
        self.deliver = deliver
        self.metrics = metrics
        self.queue_max = queue_max
        self.filters = [topics.node_filter(cfg.site.id, k) for k in self.KINDS]
        self.connected = threading.Event()
        self._stopped = threading.Event()
        self._stopping = False
        self._received = 0   # written by the reader thread only
        self._delivered = 0  # written by the loop thread only
        self._publish_lock = threading.Lock()
        self.proc: Any = None

    def start(self) -> None:
        # A plain `python -m fogline.gateway.ingest.worker` child (not multiprocessing's spawn, which re-imports
        # the embedding program's __main__), talking over two socketpairs with pickled messages.
        rx_parent, rx_child = socket.socketpair()
        tx_parent, tx_child = socket.socketpair()
        env = dict(os.environ)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "fogline.gateway.ingest.worker", str(rx_child.fileno()), str(tx_child.fileno())],
            pass_fds=(rx_child.fileno(), tx_child.fileno()), env=env, stdin=subprocess.DEVNULL)
        rx_child.close()    # only the child holds these ends: its exit (or ours) closes the pipes
        tx_child.close()
        self._rx = Connection(rx_parent.detach())
        self._tx = Connection(tx_parent.detach())
        self._tx.send(("config", self.cfg.mqtt, self.cfg.mqtt_client_id(), self.filters, self.queue_max,
                       self.queue_max_bytes))
        self._reader = threading.Thread(target=self._read, name="fogline-mqtt-reader", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        rx = self._rx
        while True:
            try:
                obj = rx.recv()
            except (EOFError, OSError):
                self.connected.clear()
                if self._stopping:
                    self._stopped.set()
                else:  # the child died on its own: start another one (the broker session is still ours)
                    self.metrics.inc("mqtt_worker_restarts")
                    log.error("event=mqtt_worker_died exit=%s (restarting)", self.proc.poll())
                    try:
                        self.loop.call_soon_threadsafe(self._restart)
                    except RuntimeError:
                        pass
                return
            kind = obj[0]
            if kind == "msgs":
                self._wait_for_room()
                size = sum(len(it[1]) for it in obj[1])
                with self._room:
                    self._held += size
                    self.held_peak = max(self.held_peak, self._held)
                self._received += len(obj[1])
                try:
                    self.loop.call_soon_threadsafe(self._deliver, obj[1])
                except RuntimeError:
                    return
            elif kind == "event":
                self._event(obj[1], obj[2])
            elif kind == "stopped":
                self._stopped.set()
                return

    def _restart(self) -> None:
        if self._stopping:
            return
        for c in (self._rx, self._tx):
            try:
                c.close()
            except OSError:
                pass
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
        if self.proc is not None:
            self.proc.wait(5)
        self.loop.call_later(0.5, self._start_if_running)

    def _start_if_running(self) -> None:
        if not self._stopping:
            self.start()

    def _wait_for_room(self) -> None:
        # The loop is behind: stop reading the pipe (the child, then paho, then the broker wait).
        with self._room:
            if self._held > self.queue_max_bytes or self.pending() > self.queue_max:
                self.metrics.inc("ingest_backpressure_waits")
            while (self._held > self.queue_max_bytes or self.pending() > self.queue_max) and not self._stopping:
                self._room.wait(0.05)

    def _deliver(self, items: list[Item]) -> None:
        self._delivered += len(items)
        try:
            self.deliver(items)
        finally:
            with self._room:
                self._held -= sum(len(it[1]) for it in items)
                self._room.notify_all()

    def _event(self, what: str, data: Any) -> None:
        if what == "connected":
            self.connected.set()
            self.metrics.inc("mqtt_connects")
            self.metrics.set("mqtt_connected", 1)
            log.info("event=mqtt_connected host=%s port=%s session_present=%s worker_pid=%s", self.cfg.mqtt.host,
                     self.cfg.mqtt.port, data, self.proc.pid)
            if self.on_ready is not None:
                self.on_ready()
        elif what == "disconnected":
            self.connected.clear()
            self.metrics.set("mqtt_connected", 0)
            if not self._stopping:
                self.metrics.inc("mqtt_disconnects")
                log.warning("event=mqtt_disconnected reason=%s (worker reconnects with backoff)", data)
        else:
            self.metrics.inc("mqtt_connect_failures")
            log.warning("event=mqtt_connect_failed reason=%s", data)

    def pending(self) -> int:
        return self._received - self._delivered

    def _drain(self) -> None:
        """Messages are delivered by the reader thread's callbacks; nothing is buffered here."""

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> None:
        try:
            with self._publish_lock:
                self._tx.send(("pub", topic, payload, qos, retain))
        except (BrokenPipeError, OSError):
            self.metrics.inc("ack_publish_errors")

    async def stop(self, flush_timeout: float = 3.0) -> None:
        """Child flushes our outgoing messages, disconnects and hands over what it still had."""
        self._stopping = True
        try:
            with self._publish_lock:
                self._tx.send(("stop", flush_timeout))
        except (BrokenPipeError, OSError):
            pass
        await asyncio.to_thread(self._stopped.wait, flush_timeout + 10)
        await asyncio.to_thread(self._reader.join, 5)
        await asyncio.sleep(0)  # run the deliveries the reader scheduled
        try:
            await asyncio.to_thread(self.proc.wait, 5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            await asyncio.to_thread(self.proc.wait, 5)
        self._tx.close()
        self._rx.close()

    def is_alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


def main(argv: list[str]) -> int:
    """Child entry: `python -m fogline.gateway.ingest.worker OUT_FD IN_FD`; the first message is the config."""
    # Ctrl-C (the terminal signals the whole process group) and systemd's SIGTERM (the whole cgroup) are
    # for the gateway: it stops this child over the pipe after handing over what it has, and a gateway
    # that dies closes the pipe, which ends the child too.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    out = Connection(int(argv[0]))
    inp = Connection(int(argv[1]))
    try:
        cmd = inp.recv()
    except (EOFError, OSError):
        return 0
    _, mcfg, client_id, filters, queue_max, max_bytes = cmd
    _child(mcfg, client_id, filters, out, inp, queue_max, max_bytes)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
