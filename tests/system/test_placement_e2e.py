"""Placement end to end: a real firmware node (tools/demo_node.py on the MicroPython unix port,
simulated battery on its ADC pin) + real mosquitto + the gateway with [placement].

The node starts on a full battery: the filter workload is placed on it (pushed config v2 carries the
chain, the node reports v2). The battery drops: the gateway re-places the workload on itself, pushes
v3 without the chain, the node applies it (state says v3) and the gateway's runner filters the node's
raw readings. The battery recovers above the resume threshold: back on the node (v4).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from pathlib import Path

import cbor2
import paho.mqtt.client as mqtt
import pytest

from fogline.gateway import config as config_mod
from fogline.gateway.placement import core as placement_mod
from fogline.gateway.app import Gateway
from fogline.tools.cli import main as cli_main
from fogline.shared import topics
from fogline.tools import hostemu
from harness.sitekit import VNode

SITE = "plc"
MEDIAN = [{"type": "median", "window_size": 5, "send_every": 5}]
GW_HEALTH = {"mem_total": 4 << 30, "mem_avail": 2 << 30, "rss": 80 << 20, "cpu_pct": 20.0}


def _mp_available() -> bool:
    try:
        hostemu.find_micropython()
        return True
    except Exception:
        return False


pytestmark = pytest.mark.skipif(not _mp_available(), reason="micropython not available")


def _node(d: Path, port: int) -> VNode:
    """Node n1 on battery (tools/demo_node.py under micropython, scenario time at wall-clock speed), started."""
    site = {"version": 1, "node": {"id": "n1", "site": SITE, "board": "esp32_devkitc"}, "sample_ms": 200,
            "watchdog_ms": 0, "state_ms": 300,
            "mqtt": {"host": "127.0.0.1", "port": port, "keepalive": 5},
            "hw": {"power": "battery", "battery": {"pin": 34, "divider": 2, "empty_mv": 3300, "full_mv": 4200}},
            "ble": {"enabled": False, "bind_key": None, "interval_ms": 1000},
            "ntp": {"enabled": False, "host": "pool.ntp.org", "interval_s": 3600},
            "uplink": {"min_pack": 1, "linger_ms": 100},
            "log": {"capacity_bytes": 65536, "segment_bytes": 4096, "sync_every": 5, "sync_ms": 200}}
    (d / "site.json").write_text(json.dumps(site))
    node = VNode(d, "n1", d / "site.json", "normal", 3, blocks=128, drain_ms=1000, time_scale=1.0)
    node.start()
    return node


def test_battery_drop_moves_workload_to_gateway_and_back(tmp_path, mosquitto, capsys):
    node = _node(tmp_path, mosquitto.port)
    cfg = config_mod.from_dict({
        "site": {"id": SITE, "gateway_id": "gwA", "data_dir": str(tmp_path / "gw")},
        "mqtt": {"port": mosquitto.port, "client_id": "gw-placement", "worker_process": False},
        "store": {"batch_ms": 2.0},
        "placement": {"enabled": True, "interval_s": 1.0, "workloads": [
            {"name": "t-smooth", "kind": "filter", "node": "n1", "sensor": "temperature", "filters": MEDIAN,
             "heap_bytes": 2048, "cpu_us": 40}]},
    })
    marks: dict[str, float] = {}

    async def main() -> dict:
        gw = Gateway(cfg)
        # the gateway host's health is fixed: this test is about the battery, not this machine's load
        p = placement_mod.attach(gw, health_source=lambda: dict(GW_HEALTH))
        assert p is not None and p.twin is not None
        await gw.start()
        assert await gw.wait_connected(10)
        nt = lambda: p.twin.nodes.get("n1")  # noqa: E731

        async def until(pred, what: str, timeout: float = 60.0) -> None:
            t0 = time.monotonic()
            while time.monotonic() - t0 < timeout:
                if pred():
                    return
                if not node.proc.alive():
                    break
                await asyncio.sleep(0.02)
            raise AssertionError(f"never: {what}; decisions={json.dumps(p.decisions.get('t-smooth'))[:800]} "
                                 f"node tail={' | '.join(node.proc.lines[-8:])}")

        try:
            # 1. full battery: on the node; the node runs the pushed config with the chain
            await until(lambda: p.current.get("t-smooth") == "node:n1", "placed on the node")
            v_node = nt().desired_version
            await until(lambda: nt().reported_version == v_node, f"node applies v{v_node}")
            dev = gw.device("n1")
            assert dev.power == "battery" and dev.battery >= 80, dev
            assert dev.sensors == ["temperature", "humidity", "pressure"], dev
            assert set(dev.link_quality) == {"loss", "rtt_ms", "reconnects"} and dev.link_quality["loss"] < 0.5, dev
            assert "t-smooth" not in p.runner.running
            # 2. battery drops below battery_min_pct: off the node, config without the chain, gateway runs it
            marks["drop"] = time.monotonic()
            node.battery_mv(3400)  # ~11 %
            await until(lambda: p.current.get("t-smooth") == "gateway:gwA", "moved to the gateway")
            marks["decided"] = time.monotonic()
            v_gw = nt().desired_version
            assert v_gw > v_node
            await until(lambda: nt().reported_version == v_gw, f"node applies v{v_gw}")
            marks["applied"] = time.monotonic()
            assert gw.device("n1").battery < 20
            await until(lambda: p.runner.stats().get("t-smooth", {}).get("out", 0) >= 2, "gateway filters readings")
            st = p.runner.stats()["t-smooth"]
            assert st["in"] >= 5 and st["shed"] == 0, st
            assert gw.metrics.get("placement_workloads", where="gateway") == 1
            # 3. recovery above battery_resume_pct: back on the node
            node.battery_mv(4100)
            await until(lambda: p.current.get("t-smooth") == "node:n1", "back on the node")
            v_back = nt().desired_version
            assert v_back > v_gw
            await until(lambda: nt().reported_version == v_back, f"node applies v{v_back}")
            assert "t-smooth" not in p.runner.running
            rep = json.loads((tmp_path / "gw" / "placement.json").read_text())
        finally:
            await gw.stop()
        return rep

    retained: list[bytes] = []
    try:
        rep = asyncio.run(main())
    finally:
        node.halt()
        got = threading.Event()
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="cleanup")
        c.on_message = lambda _c, _u, m: (retained.append(m.payload), got.set())
        c.connect("127.0.0.1", mosquitto.port)
        c.loop_start()
        c.subscribe(topics.gateway(SITE, "gwA", "placement"), 1)
        got.wait(5)
        c.publish(topics.node(SITE, "n1", "config"), b"", qos=1, retain=True).wait_for_publish(5)
        c.loop_stop()
        c.disconnect()
    # the retained decisions on the site broker say the same as the file
    msg = cbor2.loads(retained[0])
    assert msg["gw"] == "gwA" and msg["current"] == {"t-smooth": "node:n1"}, msg
    assert {s["candidate"] for s in msg["decisions"]["t-smooth"]["scores"]} == {"node:n1", "gateway:gwA"}
    # capabilities persisted in the device registry; decisions readable with the CLI
    assert cli_main(["devices", "--data-dir", str(tmp_path / "gw"), "--json"]) == 0
    (dev,) = json.loads(capsys.readouterr().out)
    assert dev["power"] == "battery" and dev["battery"] > 80 and "rtt_ms" in dev["link_quality"], dev
    assert cli_main(["placement", "--data-dir", str(tmp_path / "gw")]) == 0
    assert "t-smooth  [filter of node n1]  -> node:n1" in capsys.readouterr().out
    assert [e["to"] for e in rep["events"]] == ["node:n1", "gateway:gwA", "node:n1"], rep["events"]
    reasons = [e["reason"] for e in rep["events"]]
    assert "battery" in reasons[1] and "below 20%" in reasons[1], reasons
    print(f"\nre-placement: battery drop -> decision {marks['decided'] - marks['drop']:.2f} s, "
          f"-> node runs new config {marks['applied'] - marks['drop']:.2f} s")
