"""Test/bench kit for the cloud side: a test CA, a TLS + password mosquitto, a subscriber (the throttling proxy is tests/harness/netem.py).

Used by tests/gateway/test_{cloud,bandwidth,...}.py and tools/bench/{upstream,alert_latency}.py.
"""

from __future__ import annotations

import getpass
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from cryptography.hazmat.primitives import serialization

from fogline.gateway.ops import provision_certs
from harness.broker import Mosquitto, free_port


@dataclass
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def make_pki(d: Path) -> Pki:
    """A throw-away CA with a server cert for 127.0.0.1 and a client cert (CN gw1), made by `fogline provision`'s code."""
    d.mkdir(parents=True, exist_ok=True)
    ca, ca_key = provision_certs.make_ca("test", days=2)
    pki = Pki(d / "ca.pem", d / "server.pem", d / "server.key", d / "client.pem", d / "client.key")
    pki.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    for cert_p, key_p, cn, host in ((pki.server_cert, pki.server_key, "localhost", "127.0.0.1"),
                                    (pki.client_cert, pki.client_key, "gw1", None)):
        cert, key = provision_certs.issue(ca, ca_key, cn, "test", days=2, server_host=host)
        provision_certs.save_key(key_p, key)
        cert_p.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return pki


def make_passwd(path: Path, users: dict[str, str]) -> Path:
    """A mosquitto password file made with the real mosquitto_passwd."""
    first = True
    for u, p in users.items():
        args = ["mosquitto_passwd", "-b"] + (["-c"] if first else []) + [str(path), u, p]
        subprocess.run(args, check=True, capture_output=True)
        first = False
    return path


def tls_cloud_broker(workdir: Path, pki: Pki, users: dict[str, str], require_cert: bool = False,
                     port: int | None = None) -> Mosquitto:
    """A mosquitto that only speaks TLS with password auth, persistent, no queue limit (not started)."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    pw = make_passwd(workdir / "passwd", users)
    conf = "\n".join([
        f"listener {port} 127.0.0.1",
        f"cafile {pki.ca}", f"certfile {pki.server_cert}", f"keyfile {pki.server_key}",
        f"require_certificate {'true' if require_cert else 'false'}",
        "allow_anonymous false", f"password_file {pw}",
        "persistence true", f"persistence_location {workdir}/",
        "max_queued_messages 0", "max_inflight_messages 0",
        # As root mosquitto drops to user "mosquitto", who cannot read a private tmp dir.
        f"user {getpass.getuser()}",
    ])
    return Mosquitto(workdir, port=port, extra_conf=conf)


def envelope_body(it: dict[str, Any]) -> Any:
    """The producer's body of a row envelope (decoded if it came as bytes)."""
    b = it.get("body")
    if isinstance(b, (bytes, bytearray)):
        import cbor2
        b = cbor2.loads(b)
    return b


def latest_windows(items: list[dict[str, Any]], latest: dict | None = None) -> dict:
    """The cloud's window record: per window key (shared/summary.py) the body with the highest revision."""
    from fogline.shared import summary
    latest = {} if latest is None else latest
    for it in items:
        if it.get("lane") in ("summary", "anomaly", "raw"):
            b = envelope_body(it)
            if isinstance(b, dict):
                summary.keep_highest(latest, b)
    return latest


class CloudSubscriber:
    """A cloud-side consumer: persistent QoS 1 subscription, decodes envelopes, records arrival times.

    `latest` holds, per window key, the summary/decision with the highest revision (what a cloud keeps)."""

    def __init__(self, port: int, pki: Pki | None, user: str, password: str, topic: str = "fogline/#",
                 client_id: str = "cloud-consumer"):
        from fogline.gateway.relay.cloud import decode_cloud_message
        self._decode = decode_cloud_message
        self.lock = threading.Lock()
        self.items: list[dict[str, Any]] = []  # each envelope + "_t" arrival (monotonic) + "_topic"
        self.latest: dict = {}  # window key -> body of its highest revision
        self.messages = 0
        self.bytes = 0
        self.bad = 0
        self.subscribed = threading.Event()
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False)
        if pki:
            c.tls_set(ca_certs=str(pki.ca))
        c.username_pw_set(user, password)
        c.on_connect = lambda cl, u, f, rc, p=None: cl.subscribe(topic, qos=1)
        c.on_subscribe = lambda *a: self.subscribed.set()
        c.on_message = self._on_message
        c.reconnect_delay_set(0.1, 0.5)
        self.client = c
        self.port = port

    def _on_message(self, _c, _u, msg) -> None:
        t = time.monotonic()
        try:
            items = self._decode(msg.payload)
        except ValueError:
            with self.lock:
                self.bad += 1
            return
        with self.lock:
            self.messages += 1
            self.bytes += len(msg.payload)
            for it in items:
                it["_t"] = t
                it["_topic"] = msg.topic
                self.items.append(it)
            latest_windows(items, self.latest)

    def start(self, timeout: float = 10) -> "CloudSubscriber":
        self.client.connect_async("127.0.0.1", self.port)
        self.client.loop_start()
        if not self.subscribed.wait(timeout):
            raise RuntimeError("cloud subscriber did not subscribe")
        return self

    def snapshot(self) -> list[dict[str, Any]]:
        with self.lock:
            return list(self.items)

    def keys(self) -> list[str]:
        with self.lock:
            return [i["k"] for i in self.items]

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
