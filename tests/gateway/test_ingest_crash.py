"""The gateway as a process: kill -9 mid-batch loses nothing acked; SIGTERM stops cleanly losing nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.gateway.ingest_helpers import SimNode, db_rows, payload, stored_seqs, wait_for

REPO = Path(__file__).resolve().parents[2]


def _start(tmp_path: Path, port: int, worker: bool = False) -> subprocess.Popen:
    conf = tmp_path / "gateway.toml"
    conf.write_text(f"""
[site]
id = "site1"
data_dir = "{tmp_path / 'data'}"
[mqtt]
port = {port}
client_id = "gw-crash-test"
reconnect_min_s = 0.2
reconnect_max_s = 1.0
worker_process = {'true' if worker else 'false'}
[tiers]
compress_after_s = 86400.0
[store]
batch_max = 200
batch_ms = 2.0
""")
    return subprocess.Popen([sys.executable, "-m", "fogline.tools.cli", "gateway", "--config", str(conf)], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=open(tmp_path / "gw.log", "ab"))


def _end(proc: subprocess.Popen, tmp_path: Path) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
            raise AssertionError("gateway did not stop on SIGTERM:\n" + (tmp_path / "gw.log").read_text()[-3000:])


def _connected(tmp_path: Path, proc: subprocess.Popen, nth: int = 1) -> bool:
    """The nth gateway start (the log is appended across restarts) is connected."""
    return wait_for(lambda: proc.poll() is None and
                    (tmp_path / "gw.log").read_text(errors="replace").count("event=mqtt_connected") >= nth,
                    timeout=120)


@pytest.mark.parametrize("worker", [False, True], ids=["in-process-mqtt", "mqtt-worker-process"])
def test_kill_9_mid_stream_loses_nothing_the_node_was_told_was_durable(mosquitto, tmp_path, worker):
    proc = _start(tmp_path, mosquitto.port, worker)
    try:
        assert _connected(tmp_path, proc)
        node = SimNode(mosquitto.port, "k1")
        t0 = time.time() - 4500
        packs = {}
        n_msgs = 400
        for i in range(n_msgs):
            packs[1 + 10 * i] = payload("k1", 1 + 10 * i, [float(10 * i + j) for j in range(10)], t0=t0 + 10 * i)

        def publish_all():  # paced so that the kill lands in the middle of the stream
            for k, (first, data) in enumerate(packs.items()):
                node.c.publish("fogline/site1/k1/up", data, qos=1)
                if k % 10 == 9:
                    time.sleep(0.01)
        pub = threading.Thread(target=publish_all)
        pub.start()
        assert node.wait_ack("up", 500, timeout=180)
        os.kill(proc.pid, signal.SIGKILL)   # a crash in the middle of the stream
        proc.wait(10)
        killed_at = node.high["up"]
        pub.join(30)
        time.sleep(0.2)                     # acks published just before the kill may still arrive
        told_durable = node.high["up"]
        # every seq the node was told is durable survived the crash
        have = set(stored_seqs(tmp_path / "data", "k1"))
        assert all(s in have for s in range(1, told_durable + 1)), told_durable
        # restart; the node re-sends everything after its last ack, as firmware does
        proc = _start(tmp_path, mosquitto.port, worker)
        assert _connected(tmp_path, proc, 2)
        for first, data in packs.items():
            if first + 9 > told_durable:
                node.c.publish("fogline/site1/k1/up", data, qos=1)
        assert node.wait_ack("up", 10 * n_msgs, timeout=180)
        node.close()
    finally:
        _end(proc, tmp_path)
    assert stored_seqs(tmp_path / "data", "k1") == list(range(1, 10 * n_msgs + 1))
    # values intact (not only seqs): seq s carries value s-1
    bad = db_rows(tmp_path / "data", "SELECT COUNT(*) FROM readings WHERE v != seq - 1")
    assert bad == [(0,)]
    assert 0 < killed_at < 10 * n_msgs


def test_sigterm_commits_everything_received_and_the_broker_keeps_the_rest(mosquitto, tmp_path):
    proc = _start(tmp_path, mosquitto.port)
    try:
        assert _connected(tmp_path, proc)
        node = SimNode(mosquitto.port, "s1")
        t0 = time.time() - 4500
        for i in range(300):
            node.c.publish("fogline/site1/s1/up", payload("s1", 1 + 5 * i, [1.0] * 5, t0=t0 + 5 * i), qos=1)
            if i == 150:
                proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
        log = (tmp_path / "gw.log").read_text()
        assert "event=gateway_stopped" in log and "Traceback" not in log
        # persistent session: what arrived while it was down waits in the broker; no node re-send needed
        proc = _start(tmp_path, mosquitto.port)
        assert _connected(tmp_path, proc, 2)
        assert node.wait_ack("up", 1500, timeout=180)  # a deadline: the restarted gateway drains the broker
        node.close()
    finally:
        _end(proc, tmp_path)
    assert stored_seqs(tmp_path / "data", "s1") == list(range(1, 1501))


@pytest.mark.parametrize("worker", [False, True], ids=["in-process-mqtt", "mqtt-worker-process"])
def test_a_restarted_gateway_tells_each_node_its_cursor_unasked(mosquitto, tmp_path, worker):
    # The acks of a gateway's last commit can miss the broker (it commits what it still holds after
    # disconnecting); a node that re-sends nothing must still learn what is durable.
    proc = _start(tmp_path, mosquitto.port, worker)
    try:
        assert _connected(tmp_path, proc)
        node = SimNode(mosquitto.port, "r1")
        t0 = time.time() - 4500
        for i in range(10):
            node.up(1 + 5 * i, [float(i)] * 5, t0=t0 + 5 * i)
        assert node.wait_ack("up", 50, timeout=180)
        node.close()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
        node = SimNode(mosquitto.port, "r1")  # rebooted: it has heard no ack yet
        assert node.high["up"] == 0
        proc = _start(tmp_path, mosquitto.port, worker)
        assert _connected(tmp_path, proc, 2)
        assert node.wait_ack("up", 50, timeout=180)
        assert node.high["up"] == 50
        node.close()
    finally:
        _end(proc, tmp_path)
    assert "event=acks_announced nodes=1" in (tmp_path / "gw.log").read_text()
