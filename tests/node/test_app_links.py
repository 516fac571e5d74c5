"""The real firmware app (firmware/main.py, sim HAL) with its MQTT and BLE links against real mosquitto.

- every BTHome advert it emits, plain and encrypted, decodes with bthome-ble to values it sampled;
- config pushes on the retained `config` topic: invalid ones are rejected with a reason in `state`
  and the node keeps running its old config; a valid one is applied live and persisted.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from pathlib import Path

import cbor2
import paho.mqtt.client as mqtt
import pytest
from bthome_ble import BTHomeBluetoothDeviceData
from littlefs import LittleFS

from fogline.shared import frame, topics
from fogline.shared.senml import NODE_EPOCH
from tests.node.bthome_check import decode
from tests.node.gateway_stub import AckingGateway
from fogline.tools import hostemu

KEY = "231d39c1d7cc1ab1aee224cd096db932"


def site_config(port: int, **over) -> dict:
    cfg = {"version": 1, "node": {"id": "n1", "site": "s1", "board": "esp32_devkitc"}, "sample_ms": 20,
           "watchdog_ms": 0, "mqtt": {"host": "127.0.0.1", "port": port, "keepalive": 2},
           "ble": {"enabled": False, "bind_key": None, "interval_ms": 60},
           "log": {"capacity_bytes": 65536, "segment_bytes": 4096, "sync_every": 5, "sync_ms": 200},
           "uplink": {"linger_ms": 100, "ack_timeout_ms": 500, "backoff_min_ms": 50, "backoff_max_ms": 400}}
    for k, v in over.items():
        cfg[k] = v
    return cfg


def lfs_file(img: Path, blocks: int, path: str) -> bytes:
    """A file from a node's LittleFS image."""
    fs = LittleFS(block_size=4096, block_count=blocks, prog_size=256, mount=False)
    fs.context.buffer = bytearray(img.read_bytes())
    fs.mount()
    with fs.open(path, "rb") as f:
        return f.read()


def flash_records(img: Path, blocks: int, prefix: str) -> list[tuple[int, list]]:
    """(seq, [t, name, unit, value]) of the FlashLog records left on a node's LittleFS image (t: Unix s)."""
    fs = LittleFS(block_size=4096, block_count=blocks, prog_size=256, mount=False)
    fs.context.buffer = bytearray(img.read_bytes())
    fs.mount()
    out = []
    for n in sorted(x for x in fs.listdir("/log") if x.startswith(prefix)):
        with fs.open("/log/" + n, "rb") as f:
            bodies, _, _ = frame.decode_all(f.read())
        out += [tuple(cbor2.loads(b)) for b in bodies]
    # bodies carry node seconds (from NODE_EPOCH); the gateway sees Unix seconds
    return [(seq, [r[0] + NODE_EPOCH] + list(r[1:])) for seq, r in out]


def run_app(tmp: Path, cfg: dict, samples: int, env: dict | None = None) -> subprocess.Popen:
    (tmp / "site.json").write_text(json.dumps(cfg))
    cmd = hostemu.mp_command(hostemu.REPO / "firmware" / "main.py", "--config", str(tmp / "site.json"),
                             "--flash", str(tmp / "node.img"), "--flash-kib", "512", "--samples", str(samples))
    e = hostemu.mp_env(FOGLINE_REPO=str(hostemu.REPO), **(env or {}))
    return subprocess.Popen(cmd, env=e, cwd=str(hostemu.REPO), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def finish(p: subprocess.Popen, timeout: float = 300) -> dict:
    out, err = p.communicate(timeout=timeout)
    assert p.returncode == 0, f"app failed rc={p.returncode}\n{err}\n{out[-2000:]}"
    line = [ln for ln in out.splitlines() if ln.startswith("STATS ")][-1]
    return json.loads(line[6:])


@pytest.mark.parametrize("bind_key", [None, KEY], ids=["plain", "encrypted"])
def test_app_bthome_adverts_decode_to_sampled_values(tmp_path, mosquitto, bind_key):
    gw = AckingGateway(mosquitto.port)
    log = tmp_path / "ble.log"
    try:
        cfg = site_config(mosquitto.port, ble={"enabled": True, "bind_key": bind_key, "interval_ms": 60})
        stats = finish(run_app(tmp_path, cfg, 150, {"FOGLINE_BLE_LOG": str(log)}))
        time.sleep(0.3)
    finally:
        gw.stop()
    kept = stats["sensing"]["kept"]
    assert kept >= 300, stats["sensing"]
    # what the node sampled = what reached the gateway + what is still unacked in its flash
    recs = {seq: (name.split("/", 1)[1], value, t) for seq, (name, unit, value, t) in gw.got[("n1", "up")].items()}
    for seq, (t, name, unit, value) in flash_records(tmp_path / "node.img", 128, "u"):
        recs.setdefault(seq, (name, value, t))
    assert sorted(recs) == list(range(1, kept + 1))  # every kept reading is delivered or still in flash
    # An advert carries each metric's latest kept value (a filtered-out reading leaves the older one), read
    # whenever the advert task runs: so it equals the latest values after some kept reading, in sampling
    # order (time, then seq: seqs of one pack may be grouped by metric)
    latest: dict[str, float] = {}
    samples = set()
    for seq in sorted(recs, key=lambda q: (recs[q][2], q)):
        name, value, _ = recs[seq]
        latest[name] = value
        if len(latest) == 3:
            samples.add((latest["temperature"], latest["humidity"], latest["pressure"] / 100))
    assert len(samples) >= 100
    parser = BTHomeBluetoothDeviceData(bindkey=bytes.fromhex(bind_key) if bind_key else None)
    rows = [ln.split() for ln in log.read_text().splitlines()]
    assert len(rows) >= 20
    last_pid = None
    for mac_hex, interval, adv_hex in rows:
        adv = bytes.fromhex(adv_hex)
        assert len(adv) <= 31 and int(interval) == 60_000
        got = decode(adv, bytes.fromhex(mac_hex), parser)
        assert parser.encryption_scheme.name == ("NONE" if bind_key is None else "BTHOME_BINDKEY")
        triple = (got["temperature"], got["humidity"], got["pressure"])
        assert any(abs(triple[0] - s[0]) <= 0.011 and abs(triple[1] - s[1]) <= 0.011
                   and abs(triple[2] - s[2]) <= 0.011 for s in samples), triple
        assert last_pid is None or got["packet_id"] == (last_pid + 1) % 256
        last_pid = got["packet_id"]


class StateWatcher:
    """Collects the node's retained `state` maps."""

    def __init__(self, port: int):
        self.states: list[dict] = []
        self.lock = threading.Lock()
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="watcher")
        self.c.on_connect = lambda c, *a: c.subscribe([(topics.node("s1", "n1", "state"), 1),
                                                       (topics.node("s1", "n1", "alert"), 1)])
        self.alerts: list[bytes] = []
        self.c.on_message = self._msg
        self.c.connect("127.0.0.1", port)
        self.c.loop_start()

    def _msg(self, c, u, msg):
        with self.lock:
            if msg.topic.endswith("/alert"):
                self.alerts.append(msg.payload)
                return
            st = cbor2.loads(msg.payload)
            if "version" in st and "config_rejected" in st:
                self.states.append(st)

    def wait(self, pred, timeout: float = 60) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                for st in reversed(self.states):
                    if pred(st):
                        return st
            time.sleep(0.03)
        raise AssertionError(f"no matching state; last: {self.states[-1:] }")

    def push(self, cfg) -> None:
        payload = cfg if isinstance(cfg, bytes) else cbor2.dumps(cfg)
        self.c.publish(topics.node("s1", "n1", "config"), payload, qos=1, retain=True).wait_for_publish(5)

    def stop(self) -> None:
        self.c.loop_stop()
        self.c.disconnect()


def test_app_config_push_rejects_invalid_and_applies_valid(tmp_path, mosquitto):
    gw = AckingGateway(mosquitto.port)
    w = StateWatcher(mosquitto.port)
    app = run_app(tmp_path, site_config(mosquitto.port, state_ms=300), 100000)
    try:
        w.wait(lambda s: s["version"] == 1 and s["config_rejected"] is None)
        rule = {"name": "hot", "sensor": "temperature", "type": "above", "threshold": 30.0, "actuator": "relay"}
        bad = [
            ({"version": 2, "sample_ms": "fast"}, "sample_ms"),
            ({"version": 2, "rules": [dict(rule, threshold=1e12)]}, "threshold"),
            ({"version": 2, "sensors": [{"name": "temperature", "driver": "bme280", "unit": "Cel",
                                         "filters": [{"type": "kalman"}]}]}, "unknown filter"),
            ({"version": 2, "rules": [dict(rule, actuator="valve")]}, "actuator"),
            ({"version": 2, "uplink": {"window": 0}}, "uplink.window"),
            ({"version": 2, "pad": "x" * 9000}, "oversized"),
            ({"version": 0, "sample_ms": 50}, "version"),
        ]
        for i, (push, word) in enumerate(bad):
            w.push(push)
            st = w.wait(lambda s: s["config_rejected"] is not None and word in s["config_rejected"])
            assert st["version"] == 1, st
        w.push(b"\x9f\xff\xff not cbor")
        w.wait(lambda s: s["config_rejected"] is not None and "cbor" in s["config_rejected"].lower())
        # the node kept sensing and uplinking on its old config meanwhile
        n_before = len(gw.got.get(("n1", "up"), {}))
        assert n_before > 0
        # a valid push: a rule that fires at once proves it runs without a reboot
        w.push({"version": 5, "rules": [dict(rule, threshold=-100.0)]})
        st = w.wait(lambda s: s["version"] == 5)
        assert st["config_rejected"] is None and st["fw"] and "backlog" in st and "heap_free" in st
        deadline = time.monotonic() + 60
        while not w.alerts and time.monotonic() < deadline:
            time.sleep(0.05)
        assert w.alerts, "rule from the pushed config never fired"
        app.kill()
        app.wait()
        # persisted on the node's own LittleFS (read back with littlefs-python)
        persisted = json.loads(lfs_file(tmp_path / "node.img", 128, "/config.json"))
        assert persisted["version"] == 5 and persisted["rules"][0]["threshold"] == -100.0
    finally:
        app.kill()
        app.wait()
        w.c.publish(topics.node("s1", "n1", "config"), b"", retain=True)
        w.stop()
        gw.stop()


def test_app_backlog_from_an_outage_survives_a_reboot(tmp_path):
    from harness.broker import Mosquitto, free_port

    port = free_port()  # nothing listens yet: the broker is "down" for the first boot
    cfg = site_config(port)
    first = finish(run_app(tmp_path, cfg, 100))
    kept1 = first["sensing"]["kept"]
    assert first["store"]["acked_up"] == 0 and first["store"]["durable_up"] == kept1
    broker = Mosquitto(tmp_path / "mq", port=port).start()
    gw = AckingGateway(port)
    try:
        second = finish(run_app(tmp_path, cfg, 150))
        time.sleep(0.3)
    finally:
        gw.stop()
        broker.stop()
    total = kept1 + second["sensing"]["kept"]
    got = gw.got[("n1", "up")]
    # the first boot's whole backlog went out after the reboot, under the same seqs
    assert set(range(1, kept1 + 1)) <= set(got), sorted(set(range(1, kept1 + 1)) - set(got))[:10]
    left = {seq for seq, _ in flash_records(tmp_path / "node.img", 128, "u")}
    assert set(got) | left == set(range(1, total + 1))
    assert second["store"]["acked_up"] >= kept1
