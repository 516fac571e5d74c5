"""`fogline demo --headless --duration 20`: nodes up, readings end to end, alert and anomaly at the cloud,
a summary whose ledger adds up, checked against the cloud's own SQLite."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.demo_cloud import lane_counts
from tools import hostemu

pytestmark = pytest.mark.timeout(180)


def _fogline() -> list[str]:
    exe = Path(sys.executable).parent / "fogline"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "gateway.cli"]


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    try:
        hostemu.find_micropython()
    except hostemu.NoMicroPython as e:
        pytest.skip(str(e))
    work = tmp_path_factory.mktemp("demo")
    proc = subprocess.run([*_fogline(), "demo", "--headless", "--duration", "20", "--seed", "1",
                           "--workdir", str(work)], capture_output=True, text=True, timeout=150,
                          cwd=str(hostemu.REPO))
    assert proc.returncode == 0, proc.stderr[-3000:]
    try:
        summary = json.loads(proc.stdout)
    except ValueError:
        raise AssertionError(f"stdout is not one JSON document:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return summary, work, proc.stderr


def test_nodes_came_up_and_readings_flowed(demo_run):
    s, _work, err = demo_run
    assert s["nodes"]["started"] == 5 and s["nodes"]["ble_only"] == 1
    assert s["nodes"]["came_up"] == 5, s["nodes"]
    assert s["nodes"]["failed"] == {}, s["nodes"]["failed"]
    assert s["components"]["gateway"] == "on", s["components"]
    # about 20 s at 4 samples/s x 3 sensors per node: far more than a trickle reached the gateway
    assert s["sampled"] > 600
    assert s["stored"] > 400
    mqtt_nodes = [n for n in s["per_node"] if n["link"] == "mqtt"]
    assert all(n["stored_at_gateway"] > 0 for n in mqtt_nodes), mqtt_nodes
    # the BLE-only node reached the gateway through the simulated radio and bthome-ble
    assert s["ble_readings_at_gateway"] > 0 or s["components"].get("ble", "").startswith("unavailable")


def test_summary_ledger_adds_up(demo_run):
    s, _work, _err = demo_run
    assert s["sampled"] == s["stored"] + s["filtered"] + s["dropped_by_policy"] + s["backlog"] + s["store_errors"]
    assert s["unexplained"] == 0
    assert s["consistent"] is True
    for n in s["per_node"]:
        assert n["final_report"], n
        assert n["sampled"] == n["kept"] + n["filtered"] + n["store_errors"], n
        assert n["kept"] == n["stored_at_gateway"] + n["dropped_by_policy"] + n["backlog"], n
        if n["link"] == "mqtt":
            # the nodes drain before stopping: nearly all they kept was acknowledged (a busy machine
            # may leave the last pack unacked; it is then counted as backlog, never lost)
            assert n["stored_at_gateway"] >= 0.8 * n["kept"], n
    # what the wire carried covers what the gateway acknowledged
    assert s["wire"]["readings_seen"] >= s["stored"]
    assert s["alerts"]["raised"] == s["alerts"]["stored"] + sum(n["alert_backlog"] for n in s["per_node"])


def test_alert_and_anomaly_reached_the_cloud(demo_run):
    s, work, _err = demo_run
    assert s["alerts"]["raised"] >= 1
    assert s["alerts"]["relayed"] >= 1
    assert s["anomalies"]["relayed"] >= 1
    assert s["wire"]["cloud_duplicates"] == 0
    # the cloud's own record (the fogline cloud service's SQLite) agrees with the summary
    db_path = work / "cloud" / "cloud.sqlite"
    assert lane_counts(db_path) == s["relayed_by_lane"]
    db = sqlite3.connect(str(db_path))
    alerts = db.execute("SELECT n.node, a.seq, a.v FROM alerts a JOIN nodes n ON n.nid = a.nid").fetchall()
    assert alerts and all(node.startswith("node") for node, _seq, _v in alerts), alerts
    # each alert is also a reading of the alert lane, stored once
    assert db.execute("SELECT count(*) FROM readings WHERE lane = 1").fetchone()[0] == len(alerts)
    labels = db.execute("SELECT label, retract FROM decisions WHERE lane = 'anomaly'").fetchall()
    assert labels and all(lb == "anomaly" or retract for lb, retract in labels)  # or a later revision cleared it


def test_upstream_smaller_than_naive(demo_run):
    s, _work, _err = demo_run
    b = s["bytes"]
    assert b["sent_upstream"] > 0
    assert b["naive_json"] > b["sent_upstream"]
