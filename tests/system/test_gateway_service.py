"""The gateway as a service: starts from gateway/examples/gateway.toml, serves Prometheus metrics over HTTP,
stops cleanly on SIGTERM without losing accepted readings; the example file matches the code."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import cbor2
import paho.mqtt.client as mqtt
import pytest

from fogline.shared import senml, topics
from fogline.tools import example_config
from harness.broker import free_port

pytestmark = pytest.mark.timeout(120)
REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "gateway" / "examples" / "gateway.toml"


def _fogline() -> list[str]:
    exe = Path(sys.executable).parent / "fogline"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "fogline.tools.cli"]


def test_example_config_loads_and_equals_the_defaults():
    from fogline.gateway import config as config_mod

    # the committed example is valid (a renamed or removed option would be an unknown key)
    config_mod.load(EXAMPLE)
    # the generator writes every option of every registered section with its default
    # (regenerate the committed file with: python tools/example_config.py)
    fresh = example_config.render()
    import tomllib
    raw = tomllib.loads(fresh)
    cfg = config_mod.from_dict(raw)
    defaults = config_mod.load(None)
    for name in config_mod.SECTIONS:
        assert cfg.section(name) == defaults.section(name), name
        cls = config_mod.SECTIONS[name]
        import dataclasses
        for f in dataclasses.fields(cls):
            if getattr(cls(), f.name) is not None:
                assert f.name in raw[name], f"{name}.{f.name} missing from the example"


def _config(tmp: Path, broker_port: int, http_port: int) -> Path:
    text = EXAMPLE.read_text()
    text = text.replace('data_dir = "./fogline-data"', f'data_dir = "{tmp / "data"}"', 1)
    text = text.replace('id = "site1"', 'id = "svc"', 1)
    head, sep, rest = text.partition("[mqtt]\n")
    rest = rest.replace("port = 1883", f"port = {broker_port}", 1)
    text = head + sep + rest
    text = text.replace("# http_port =", f"http_port = {http_port}  #", 1)
    path = tmp / "gateway.toml"
    path.write_text(text)
    return path


class Node:
    """A test-side node publishing packs and collecting the gateway's acks."""

    def __init__(self, port: int, site: str, node: str):
        self.site, self.node = site, node
        self.acked = 0
        self.sent: list[tuple[int, bytes]] = []
        self.lock = threading.Lock()
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"test-{node}")
        self.c.on_message = self._on_ack
        self.c.connect("127.0.0.1", port)
        self.c.subscribe(topics.node(site, node, "ack"), qos=1)
        self.c.loop_start()

    def _on_ack(self, _c, _u, m) -> None:
        a = cbor2.loads(m.payload)
        with self.lock:
            self.acked = max(self.acked, a.get("up", 0))

    def publish(self, first: int, n: int) -> None:
        t0 = int(time.time()) - 60
        recs = [("temperature", "Cel", 20.0 + (first + i) % 7 * 0.25, t0 + first + i) for i in range(n)]
        payload = cbor2.dumps([first, senml.build_pack(self.node + "/", t0, recs)])
        self.sent.append((first + n - 1, payload))
        self._send(payload)

    def _send(self, payload: bytes) -> None:
        info = self.c.publish(topics.node(self.site, self.node, "up"), payload, qos=1)
        info.wait_for_publish(10)  # the broker accepted it

    def wait_acked(self, upto: int, timeout: float) -> int:
        """Wait for the gateway's ack; like the firmware, resend what is unacked every 2 s (same seqs)."""
        deadline = time.monotonic() + timeout
        resend_at = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            with self.lock:
                if self.acked >= upto:
                    return self.acked
                acked = self.acked
            if time.monotonic() >= resend_at:
                for last, payload in self.sent:
                    if last > acked:
                        self._send(payload)
                resend_at = time.monotonic() + 2.0
            time.sleep(0.05)
        return self.acked

    def close(self) -> None:
        self.c.loop_stop()
        self.c.disconnect()


def _stored(db: Path, node: str) -> int:
    con = sqlite3.connect(str(db))
    try:
        return con.execute("SELECT COUNT(*) FROM readings r JOIN nodes n ON r.nid = n.nid WHERE n.name = ?",
                           (node,)).fetchone()[0]
    finally:
        con.close()


def _start(cfg: Path, http_port: int) -> subprocess.Popen:
    log = open(cfg.parent / "gateway.log", "a")  # a pipe nobody reads would block the logger
    proc = subprocess.Popen([*_fogline(), "gateway", "--config", str(cfg), "--log-json"], stdout=log,
                            stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert proc.poll() is None, (cfg.parent / "gateway.log").read_text()[-2000:]
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/healthz", timeout=1) as r:
                if r.status == 200:
                    return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise AssertionError("gateway metrics endpoint never came up")


def test_service_metrics_and_clean_sigterm(mosquitto, tmp_path):
    http_port = free_port()
    cfg = _config(tmp_path, mosquitto.port, http_port)
    proc = _start(cfg, http_port)
    node = Node(mosquitto.port, "svc", "n1")
    try:
        for k in range(10):
            node.publish(1 + 10 * k, 10)
        assert node.wait_acked(100, 20) == 100
        with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/metrics", timeout=5) as r:
            assert r.status == 200
            assert r.headers["Content-Type"].startswith("text/plain")
            text = r.read().decode()
        samples = {ln.split(" ")[0]: float(ln.split(" ")[-1]) for ln in text.splitlines()
                   if ln and not ln.startswith("#")}
        assert samples.get('fogline_messages_in_total{link="mqtt"}', 0) >= 10, text[:2000]
        assert samples.get("fogline_acks_sent_total", 0) >= 1
        assert "# TYPE fogline_messages_in_total counter" in text
        assert "# HELP fogline_messages_in_total MQTT messages received, by link" in text
        assert "# TYPE fogline_uptime_s gauge" in text and samples["fogline_uptime_s"] >= 0
        assert samples.get("process_resident_memory_bytes", 0) > 0 and "process_cpu_seconds_total" in samples
        with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/status.json", timeout=5) as r:
            status = json.loads(r.read())
        mqtt_in = status["counters"]["messages_in"][0]  # the JSON snapshot keeps its own names: no _total
        assert mqtt_in["labels"] == {"link": "mqtt"} and mqtt_in["value"] >= 10 and status["pid"] == proc.pid
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(f"http://127.0.0.1:{http_port}/nope", timeout=5)
        # more readings, accepted by the broker, then SIGTERM at once
        for k in range(10, 20):
            node.publish(1 + 10 * k, 10)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, (tmp_path / "gateway.log").read_text()[-2000:]
        # --log-json: every line one JSON object; the message's key=value pairs are its fields
        lines = [json.loads(ln) for ln in (tmp_path / "gateway.log").read_text().splitlines() if ln.startswith("{")]
        stopped = [d for d in lines if d.get("event") == "gateway_stopped"]
        assert stopped and stopped[0]["logger"] == "fogline.gateway.app", lines[-5:]
        listening = [d for d in lines if d.get("event") == "metrics_http_listening"]
        assert listening and listening[0]["port"] == str(http_port)
        db = tmp_path / "data" / "ingest.sqlite"
        stored = _stored(db, "n1")
        assert stored >= node.acked >= 100  # acks never run ahead of the disk
        # whatever the gateway had not taken yet waits in its persistent broker session: a restart gets it
        proc = _start(cfg, http_port)
        assert node.wait_acked(200, 30) == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        assert _stored(db, "n1") == 200
    finally:
        node.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)


def test_systemd_unit_runs_the_example_config():
    unit = (REPO / "gateway" / "examples" / "fogline-gateway.service").read_text()
    sections = {}
    cur = None
    for line in unit.splitlines():
        line = line.strip()
        if line.startswith("[") and line.endswith("]"):
            cur = sections.setdefault(line[1:-1], {})
        elif "=" in line and not line.startswith("#") and cur is not None:
            k, v = line.split("=", 1)
            cur[k] = v
    assert set(sections) >= {"Unit", "Service", "Install"}
    svc = sections["Service"]
    assert "fogline gateway --config" in svc["ExecStart"]
    assert svc["KillSignal"] == "SIGTERM"
    assert svc["Restart"] in ("on-failure", "always")
    assert sections["Install"]["WantedBy"] == "multi-user.target"
    assert "mosquitto.service" in sections["Unit"].get("After", "")
    assert os.path.basename(svc["ExecStart"].split()[0]) == "fogline"
