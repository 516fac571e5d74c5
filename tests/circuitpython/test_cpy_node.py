"""The unchanged node core (firmware/app.py, node, filters, rules, FlashLog) on the CircuitPython adapter:
BME280 through busio, relay through digitalio, watchdog through microcontroller.watchdog, FlashLog on a
plain directory (CircuitPython's FAT has no LittleFS: only ordinary file calls are used)."""

from __future__ import annotations

import json

import cbor2
import pytest

from fogline.shared.senml import NODE_EPOCH
from tests.circuitpython.conftest import REPO

pytestmark = pytest.mark.timeout(90)  # a hung socket must fail the test, not stall the suite


class ManualClock:
    """app.Clock interface with time under the test's control."""

    def __init__(self):
        self.ms = 0
        self.base_s = 1_700_000_000
        self.base_ms = 0
        self.synced = True

    def now_ms(self):
        return self.ms

    def node_s(self, now_ms, whole=True):
        return self.base_s - NODE_EPOCH + (now_ms - self.base_ms) // 1000

    async def sleep_until(self, t):
        self.ms = max(self.ms, t)

    def advance(self, ms):
        self.ms += ms


def _cfg(board="adafruit_feather_esp32s3", **over):
    from fogline.shared import config as C
    b = json.loads((REPO / "boards" / f"{board}.json").read_text())
    site = {"node": {"id": "cp1", "site": "s1", "board": board}, "sample_ms": 1000, "watchdog_ms": 4000,
            "sensors": [{"name": "temperature", "driver": "bme280", "field": "temperature", "unit": "Cel",
                         "addr": 119, "filters": [{"type": "median", "window_size": 3, "send_every": 1}]},
                        {"name": "humidity", "driver": "bme280", "field": "humidity", "unit": "%RH", "addr": 119,
                         "filters": [{"type": "delta", "value": 1.0}]}],
            "rules": [{"name": "hot", "sensor": "temperature", "type": "above", "threshold": 30.0,
                       "hysteresis": 1.0, "actuator": "relay"},
                      {"name": "gone", "sensor": "temperature", "type": "stale", "missing_ms": 3000,
                       "actuator": "relay", "action": "off"}]}
    site.update(over)
    return C.validate_config(C.merge(C.DEFAULTS, b, site))


def _rig(cpy, tmp_path, board="adafruit_feather_esp32s3"):
    temp = [20.0]
    chip = cpy.sim_sensors.BME280Sim(lambda: temp[0], lambda: 101000.0, lambda: 40.0, addr=0x77)
    cpy.simctl.attach_i2c(cpy.board.SCL, cpy.board.SDA, chip)
    from firmware import app as A
    cfg = _cfg(board)
    clock = ManualClock()
    store = A.make_store(cfg, str(tmp_path / "log"))
    app = A.App(cfg, store, clock=clock)
    return app, clock, temp, chip


def _step(app, clock):
    app.sample_once()
    clock.advance(app.cfg["sample_ms"])


def test_pipeline_rule_actuator_same_iteration(cpy, tmp_path):
    """Filters run, the relay (GPIO10 via digitalio) switches inside the sample that crosses, alerts are kept."""
    app, clock, temp, _ = _rig(cpy, tmp_path)
    relay = cpy.board.D10
    for _ in range(5):
        _step(app, clock)
    assert cpy.simctl.level(relay) is False
    assert app.node.latest["temperature"] == pytest.approx(20.0, abs=0.01)
    temp[0] = 31.0
    crossed = None
    for i in range(4):  # rules see the raw value by default: the first sample at 31 crosses
        before = cpy.simctl.level(relay)
        app.sample_once()
        if not before and cpy.simctl.level(relay):
            crossed = i
            assert app.node.latest["temperature"] < 30.0  # the filtered value has not moved yet
            break
        clock.advance(1000)
    assert crossed == 0
    assert app.node.stats["alerts"] == 1
    temp[0] = 29.5  # inside the hysteresis band: stays on
    for _ in range(3):
        _step(app, clock)
    assert cpy.simctl.level(relay) is True
    temp[0] = 28.0
    for _ in range(3):
        _step(app, clock)
    assert cpy.simctl.level(relay) is False
    app.store.flush(clock.now_ms())
    alerts = [cbor2.loads(b)[1:] for _, b in app.store.pending("alert", 10)]
    assert [a[0] for a in alerts] == ["hot", "hot.clear"]
    assert alerts[0][2] == pytest.approx(31.0, abs=0.01) and alerts[1][2] == pytest.approx(28.0, abs=0.01)
    assert app.cfg["watchdog_ms"] == 4000 and cpy.microcontroller.watchdog.feeds == app.samples


def test_dead_sensor_is_counted_and_fails_safe(cpy, tmp_path):
    """A chip that stops acknowledging is a counted read error and drives the stale rule's fail-safe."""
    app, clock, temp, chip = _rig(cpy, tmp_path)
    temp[0] = 35.0
    for _ in range(4):
        _step(app, clock)
    assert cpy.simctl.level(cpy.board.D10) is True
    chip.dead = True
    for _ in range(5):
        _step(app, clock)
    assert app.node.stats["read_errors"] >= 5
    assert cpy.simctl.level(cpy.board.D10) is False  # "gone" -> off
    assert "OSError" in (app.node.last_error or "") or "19" in (app.node.last_error or "")


def test_flashlog_on_plain_directory_survives_reopen(cpy, tmp_path):
    """Readings land in FlashLog segment files under a plain directory; a fresh FlashLog recovers them."""
    app, clock, temp, _ = _rig(cpy, tmp_path)
    for i in range(30):
        temp[0] = 20.0 + (i % 7) * 0.5
        _step(app, clock)
    app.store.flush(clock.now_ms())
    got = app.store.pending("up", 1000)
    assert len(got) == app.node.stats["kept"] > 30
    seqs = [s for s, _ in got]
    assert seqs == list(range(1, len(seqs) + 1))
    body = cbor2.loads(got[0][1])
    assert body[0] == 1_700_000_000 - NODE_EPOCH and body[1] == "temperature" and body[2] == "Cel"
    files = sorted(p.name for p in (tmp_path / "log").iterdir())
    assert any(f.startswith("u") for f in files)
    from firmware.flashlog import FlashLog
    lg = app.cfg["log"]
    again = FlashLog(str(tmp_path / "log"), capacity_bytes=lg["capacity_bytes"], segment_bytes=lg["segment_bytes"],
                     sync_every=lg["sync_every"], sync_ms=lg["sync_ms"])
    assert [s for s, _ in again.pending("up", 1000)] == seqs
    again.ack_upto("up", seqs[-1])
    assert again.depth("up") == 0
    assert again.append("up", cbor2.dumps([1, "x", None, 1.0]), 0) == seqs[-1] + 1


def test_status_and_live_reconfig(cpy, tmp_path):
    """app.status() works (gc.mem_free, rssi via the wifi shim) and a pushed config keeps the relay level."""
    app, clock, temp, _ = _rig(cpy, tmp_path)
    temp[0] = 35.0
    for _ in range(3):
        _step(app, clock)
    st = app.status()
    assert st["board"] == "adafruit_feather_esp32s3" and st["heap_free"] > 0 and "backlog" in st
    new = _cfg(sample_ms=2000)
    ok, why = app.apply_config(new)
    assert ok, why
    _step(app, clock)
    assert cpy.simctl.level(cpy.board.D10) is True and app.cfg["sample_ms"] == 2000


def test_rp2040_board_watchdog_limit(cpy, tmp_path, monkeypatch):
    """Feather RP2040: a watchdog over the chip's 8.388 s is refused; the app falls back to 8000 ms."""
    cpy.microcontroller.watchdog.max_timeout = 8.388
    from firmware import app as A
    chip = cpy.sim_sensors.BME280Sim(lambda: 21.0, lambda: 100000.0, lambda: 50.0, addr=0x77)
    pins = cpy.microcontroller.pin
    cpy.simctl.attach_i2c(pins.GPIO3, pins.GPIO2, chip)  # Feather RP2040 STEMMA QT: SCL GPIO3, SDA GPIO2
    cfg = _cfg("adafruit_feather_rp2040", sample_ms=5000, watchdog_ms=20000)
    app = A.App(cfg, None, clock=ManualClock())
    assert cpy.microcontroller.watchdog.timeout == 8.0 and "8000" in app.last_error
    app.sample_once()
    assert app.node.latest["temperature"] == pytest.approx(21.0, abs=0.01)
    assert cpy.simctl.level(pins.GPIO10) is False  # relay on D10 = GPIO10, idle
