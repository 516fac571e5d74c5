"""Gateway ingest against a real mosquitto: stored once, acks cover only durable rows, duplicates absorbed."""

from __future__ import annotations

import time

import cbor2
import pytest

from tests.gateway.ingest_helpers import (GatewayThread, SimNode, db_rows, dead_letters, gw_config, payload,
                                          stored_seqs, wait_for)


MODES = pytest.mark.parametrize("worker", [True, False], ids=["mqtt-worker-process", "in-process-mqtt"])


@MODES
def test_every_reading_stored_once_and_acks_cover_only_durable_rows(mosquitto, tmp_path, worker):
    data = tmp_path / "data"
    checked = []
    with GatewayThread(gw_config(tmp_path, mosquitto.port, mqtt={"worker_process": worker})) as g:
        node = SimNode(mosquitto.port, "n1")
        orig = node._on_msg

        def check_ack(c, u, m):
            # when an ack arrives, every seq it covers must already be committed (read by another connection)
            a = cbor2.loads(m.payload)
            have = set(stored_seqs(data, "n1"))
            checked.append((a["up"], all(s in have for s in range(1, a["up"] + 1))))
            orig(c, u, m)
        node.c.on_message = check_ack
        seq = 1
        sent = []
        t0 = time.time() - 300
        for i in range(40):
            n = 1 + i % 10
            sent.append(node.up(seq, [20.0 + 0.01 * j for j in range(n)], t0=t0 + seq))
            seq += n
        node.send("up", sent[0])     # resends of packs whose ack the node "missed": absorbed, re-acked
        node.send("up", sent[1])
        last = seq - 1
        assert node.wait_ack("up", last)
        g.flush()
        n_acks = len(node.acks)
        node.close()
    assert stored_seqs(data, "n1") == list(range(1, last + 1))
    assert checked and all(ok for _, ok in checked)
    assert max(a for a, _ in checked) == last
    assert g.gw.metrics.total("duplicates") == 3
    assert n_acks >= 2
    assert dead_letters(data) == []


def test_duplicate_with_other_content_is_a_replay_and_dead_lettered(mosquitto, tmp_path):
    data = tmp_path / "data"
    with GatewayThread(gw_config(tmp_path, mosquitto.port)) as g:
        node = SimNode(mosquitto.port, "n2")
        t0 = time.time() - 30
        node.up(1, [1.0, 2.0, 3.0], t0=t0)
        assert node.wait_ack("up", 3)
        node.up(2, [99.0], t0=t0 + 1)          # same seq, other value: forged or replayed
        node.up(1, [1.0, 2.0, 3.0], t0=t0)     # honest resend: absorbed
        node.up(4, [4.0], t0=t0 + 3)
        assert node.wait_ack("up", 4)
        g.flush()
        node.close()
    assert stored_seqs(data, "n2") == [1, 2, 3, 4]
    assert db_rows(data, "SELECT v FROM readings WHERE seq=2") == [(2.0,)]
    dl = dead_letters(data)
    assert [d[0] for d in dl] == ["replayed_seq"] and "differ from the stored" in dl[0][2]
    assert g.gw.metrics.get("dead_letters", reason="replayed_seq") == 1


def test_alert_lane_has_its_own_seq_space_and_reaches_hooks(mosquitto, tmp_path):
    alerts, batches = [], []
    g = GatewayThread(gw_config(tmp_path, mosquitto.port))
    g.gw.on_alert(alerts.append)

    async def on_readings(rs):  # async hooks run as tasks
        batches.append(len(rs))
    g.gw.on_readings(on_readings)
    with g:
        node = SimNode(mosquitto.port, "n3")
        node.up(1, [20.0, 21.0])
        node.send("alert", payload("n3", 1, [85.0], metric="temp"))
        assert node.wait_ack("alert", 1) and node.wait_ack("up", 2)
        node.close()
    assert node.high == {"up": 2, "alert": 1}
    assert [(a.node, a.lane, a.seq, a.value) for a in alerts] == [("n3", "alert", 1, 85.0)]
    assert sum(batches) == 3


def test_state_fills_the_registry_and_oldest_skips_a_gap_the_node_dropped(mosquitto, tmp_path):
    states = []
    g = GatewayThread(gw_config(tmp_path, mosquitto.port))
    g.gw.on_state(lambda node, st, dev: states.append((node, st["version"])))
    with g:
        node = SimNode(mosquitto.port, "n4")
        node.up(1, [1.0, 2.0])
        assert node.wait_ack("up", 2)
        node.up(10, [10.0, 11.0])   # 3..9 were dropped on the node by its full-flash policy
        time.sleep(0.3)
        assert node.high["up"] == 2  # a hole: acks never jump it on their own
        st = {"version": 7, "heap_free": 50000, "flash_free": 1000, "backlog": {"up": 2, "alert": 0},
              "dropped": {"up": 7}, "oldest": {"up": 10}, "uptime_s": 99, "last_error": None,
              "config_rejected": None, "fw": "0.1.0", "board": "pico_w", "rssi": -61, "battery": 88}
        node.send("state", cbor2.dumps(st))
        assert node.wait_ack("up", 11)
        g.flush()
        dev = g.gw.device("n4")
        node.close()
    assert states == [("n4", 7)]
    assert (dev.config_version, dev.fw, dev.board, dev.rssi, dev.battery) == (7, "0.1.0", "pico_w", -61, 88)
    assert dev.backlog == {"up": 2, "alert": 0} and dev.dropped == {"up": 7}
    assert db_rows(tmp_path / "data", "SELECT lo, hi FROM gaps") == [(3, 9)]
    assert g.gw.metrics.total("seq_gaps_skipped") == 1


def test_unknown_device_quarantined_listed_one_admitted(mosquitto, tmp_path):
    cfg = gw_config(tmp_path, mosquitto.port, ingest={"unknown_devices": "quarantine", "known_devices": ["good"]})
    with GatewayThread(cfg) as g:
        good, bad = SimNode(mosquitto.port, "good"), SimNode(mosquitto.port, "stranger")
        good.up(1, [1.0])
        bad.up(1, [1.0])
        assert good.wait_ack("up", 1)
        g.flush()
        good.close()
        bad.close()
    data = tmp_path / "data"
    assert stored_seqs(data, "good") == [1]
    assert stored_seqs(data, "stranger") == [] and bad.acks == []
    assert [(r, s) for r, s, _ in dead_letters(data)] == [("unknown_device", "stranger")]


def test_windows_delivered_to_hooks_and_queue_and_persisted(mosquitto, tmp_path):
    cfg = gw_config(tmp_path, mosquitto.port, aggregate={"windows_s": [10.0], "watermark_s": 2.0,
                                                                  "flush_on_stop": True})
    got = []
    g = GatewayThread(cfg)
    g.gw.on_window(got.append)
    q = g.gw.window_queue()
    with g:
        node = SimNode(mosquitto.port, "n5")
        t0 = (int(time.time()) // 10) * 10 - 100.0
        node.up(1, [float(i) for i in range(30)], t0=t0)  # [t0,+10) [+10,+20) close; the third stays open
        assert node.wait_ack("up", 30)
        assert wait_for(lambda: len(got) >= 2)
        time.sleep(0.1)
        assert len(got) == 2 and q.qsize() == 2
        node.close()
    # clean stop flushed the open window (flush_on_stop)
    assert [(w.start - t0, w.count, w.min, w.max, w.mean, w.last) for w in got] == [
        (0, 10, 0, 9, 4.5, 9), (10, 10, 10, 19, 14.5, 19), (20, 10, 20, 29, 24.5, 29)]
    rows = db_rows(tmp_path / "data", "SELECT start, count, mean FROM windows ORDER BY start")
    assert [(s - t0, c, m) for s, c, m in rows] == [(0, 10, 4.5), (10, 10, 14.5), (20, 10, 24.5)]


@MODES
def test_gateway_survives_broker_restart_and_resubscribes(mosquitto, tmp_path, worker):
    cfg = gw_config(tmp_path, mosquitto.port, mqtt={"reconnect_min_s": 0.2, "reconnect_max_s": 1.0,
                                                    "worker_process": worker})
    with GatewayThread(cfg) as g:
        node = SimNode(mosquitto.port, "n6")
        node.up(1, [1.0])
        assert node.wait_ack("up", 1)
        node.close()
        mosquitto.restart()
        assert wait_for(lambda: g.gw.metrics.total("mqtt_connects") >= 2, timeout=60)
        node = SimNode(mosquitto.port, "n6")
        node.up(2, [2.0])
        assert node.wait_ack("up", 2)
        node.close()
    assert stored_seqs(tmp_path / "data", "n6") == [1, 2]
    assert g.gw.metrics.total("mqtt_disconnects") >= 1


def test_open_windows_survive_a_restart_exactly_once(mosquitto, tmp_path):
    cfg = gw_config(tmp_path, mosquitto.port, aggregate={"windows_s": [10.0, 30.0], "watermark_s": 1.0})
    got = []
    t0 = (int(time.time()) // 30) * 30 - 300.0
    vals = [float(i) for i in range(60)]               # one a second: 6 x 10 s and 2 x 30 s windows
    g = GatewayThread(cfg)
    g.gw.on_window(got.append)
    with g:
        node = SimNode(mosquitto.port, "n7")
        node.up(1, vals[:25], t0=t0)                   # stop in the middle of [t0+20, t0+30)
        assert node.wait_ack("up", 25)
        node.close()
    g = GatewayThread(cfg)
    g.gw.on_window(got.append)
    with g:
        node = SimNode(mosquitto.port, "n7")
        node.up(26, vals[25:], t0=t0 + 25)
        node.up(61, [0.0], t0=t0 + 70)                 # moves the watermark past t0 + 60
        assert node.wait_ack("up", 61)
        assert wait_for(lambda: len([w for w in got if w.start < t0 + 60]) >= 8)
        node.close()
    mine = sorted(((w.length, w.start - t0, w.count, w.mean) for w in got if w.start < t0 + 60))
    assert mine == [(10.0, 0.0, 10, 4.5), (10.0, 10.0, 10, 14.5), (10.0, 20.0, 10, 24.5), (10.0, 30.0, 10, 34.5),
                    (10.0, 40.0, 10, 44.5), (10.0, 50.0, 10, 54.5), (30.0, 0.0, 30, 14.5), (30.0, 30.0, 30, 44.5)]


@MODES
def test_gateway_started_before_the_broker_connects_when_it_appears(tmp_path, worker):
    from harness.broker import Mosquitto
    broker = Mosquitto(tmp_path / "late-broker")
    cfg = gw_config(tmp_path, broker.port, mqtt={"reconnect_min_s": 0.2, "reconnect_max_s": 0.5,
                                                 "worker_process": worker})
    g = GatewayThread(cfg)
    g.call(g.gw.start())
    try:
        time.sleep(0.5)
        assert not g.gw.mqtt.connected.is_set()
        broker.start()
        assert g.call(g.gw.wait_connected(10))
        node = SimNode(broker.port, "n8")
        node.up(1, [1.0])
        assert node.wait_ack("up", 1)
        node.close()
    finally:
        g.stop()
        broker.stop()


def test_worker_process_mode_stores_once_acks_and_stops_cleanly(mosquitto, tmp_path):
    cfg = gw_config(tmp_path, mosquitto.port, mqtt={"worker_process": True})
    data = tmp_path / "data"
    with GatewayThread(cfg) as g:
        node = SimNode(mosquitto.port, "w1")
        t0 = time.time() - 500
        sent = [node.up(1 + 10 * i, [float(10 * i + j) for j in range(10)], t0=t0 + 10 * i) for i in range(30)]
        node.send("up", sent[3])                       # a resend: absorbed
        assert node.wait_ack("up", 300)
        pid = g.gw.mqtt.proc.pid
        node.close()
    assert stored_seqs(data, "w1") == list(range(1, 301))
    assert g.gw.metrics.total("duplicates") == 10
    assert not g.gw.mqtt.is_alive() and pid


def test_worker_process_ignores_ctrl_c_meant_for_the_gateway(mosquitto, tmp_path):
    """A terminal's Ctrl-C reaches the whole process group: the worker must not die of it (the gateway
    stops it over the pipe after its own shutdown), or the gateway logs mqtt_worker_died and restarts it."""
    import os
    import signal
    cfg = gw_config(tmp_path, mosquitto.port, mqtt={"worker_process": True})
    with GatewayThread(cfg) as g:
        node = SimNode(mosquitto.port, "w2")
        t0 = time.time() - 100
        node.up(1, [1.0, 2.0], t0=t0)
        assert node.wait_ack("up", 2)
        pid = g.gw.mqtt.proc.pid
        os.kill(pid, signal.SIGINT)
        node.up(3, [3.0, 4.0], t0=t0 + 10)
        assert node.wait_ack("up", 4)
        assert g.gw.mqtt.proc.pid == pid and g.gw.mqtt.is_alive()
        assert g.gw.metrics.total("mqtt_worker_restarts") == 0
        node.close()
    assert stored_seqs(tmp_path / "data", "w2") == [1, 2, 3, 4]


def test_worker_process_exits_when_the_gateway_process_dies(mosquitto, tmp_path):
    import os
    import signal
    import subprocess
    import sys
    from fogline.tools.hostemu import REPO
    code = f"""
import asyncio, sys, time
sys.path.insert(0, {str(REPO)!r})
from fogline.gateway import config
from fogline.gateway.app import Gateway
async def main():
    gw = Gateway(config.from_dict({{"site": {{"data_dir": {str(tmp_path / 'd')!r}}},
                                   "mqtt": {{"port": {mosquitto.port}, "worker_process": True}}}}))
    await gw.start()
    await gw.wait_connected()
    print(gw.mqtt.proc.pid, flush=True)
    await asyncio.sleep(60)
asyncio.run(main())
"""
    p = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        child = int(p.stdout.readline())
        os.kill(p.pid, signal.SIGKILL)
        p.wait(10)

        def gone():
            try:
                os.kill(child, 0)
            except ProcessLookupError:
                return True
            with open(f"/proc/{child}/stat") as f:   # a zombie waiting for init counts as gone
                return f.read().split()[2] == "Z"
        assert wait_for(gone, timeout=60)
    finally:
        if p.poll() is None:
            p.kill()


def test_a_dead_mqtt_worker_is_replaced_and_ingest_goes_on(mosquitto, tmp_path):
    import os
    import signal
    cfg = gw_config(tmp_path, mosquitto.port, mqtt={"worker_process": True})
    with GatewayThread(cfg) as g:
        node = SimNode(mosquitto.port, "w2")
        node.up(1, [1.0])
        assert node.wait_ack("up", 1)
        first = g.gw.mqtt.proc.pid
        os.kill(first, signal.SIGKILL)
        assert wait_for(lambda: g.gw.mqtt.proc.pid != first and g.gw.mqtt.connected.is_set(), timeout=60)
        node.up(2, [2.0])
        assert node.wait_ack("up", 2)
        node.close()
    assert stored_seqs(tmp_path / "data", "w2") == [1, 2]
    assert g.gw.metrics.total("mqtt_worker_restarts") == 1
