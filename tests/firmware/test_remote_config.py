# Pushed configs: validation, version rule, atomic persistence, state report (MicroPython unix port).
import json
import os

from shared import auth, cbor
from shared.config import DEFAULTS, merge, validate_config
from firmware.remote_config import RemoteConfig, save_atomic

KEY = bytes(range(16))
BASE = merge(DEFAULTS, {
    "version": 3,
    "node": {"id": "n7", "site": "s1"},
    "hw": {"actuators": {"fan": {"pin": 5}}},
    "sensors": [{"name": "temp", "driver": "ntc", "pin": 34, "unit": "Cel",
                 "filters": [{"type": "median", "window_size": 5}]}],
    "rules": [{"name": "hot", "sensor": "temp", "type": "above", "threshold": 30.0, "actuator": "fan"}],
})


def _dir():
    # a fresh LittleFS on a RAM flash device, as on the board (rename is atomic there)
    try:
        os.stat("/rcfs")
    except OSError:
        import flashdev
        flashdev.mount(flashdev.FlashDev(32), "/rcfs", format=True)
    return "/rcfs"


class _App:
    def __init__(self):
        self.applied = []

    def apply(self, cfg):
        self.applied.append(cfg["version"])
        return True, None

    def status(self):
        return {"backlog": {"up": 4, "alert": 0}, "heap_free": 1234, "uptime_s": 9}


def _rc(key=None, app=None):
    app = app or _App()
    path = _dir() + "/config.json"
    rc = RemoteConfig(None, validate_config(merge(BASE, {})), path=path, apply=app.apply, status=app.status,
                      key=key, validate=validate_config)
    return rc, app, path


def test_valid_push_applies_persists_and_reports():
    rc, app, path = _rc()
    ok, why = rc.handle(cbor.dumps({"version": 4, "sample_ms": 500, "rules": [
        {"name": "hot", "sensor": "temp", "type": "above", "threshold": 28.5, "actuator": "fan"}]}))
    assert ok and why is None, why
    assert app.applied == [4] and rc.version == 4 and rc.cfg["sample_ms"] == 500
    assert rc.cfg["sensors"][0]["name"] == "temp"  # merged over the running config
    with open(path) as f:
        saved = json.loads(f.read())
    assert saved["version"] == 4 and saved["rules"][0]["threshold"] == 28.5
    st = rc.state()
    assert st["version"] == 4 and st["config_rejected"] is None and st["backlog"] == {"up": 4, "alert": 0}
    cbor.loads(cbor.dumps(st))
    ok, why = rc.handle(cbor.dumps({"version": 4}))  # retained re-delivery
    assert ok and app.applied == [4]


def test_invalid_pushes_rejected_with_reason_old_config_stays():
    rc, app, path = _rc()
    cases = [
        ({"version": 5, "sample_ms": "fast"}, "sample_ms"),
        ({"version": 5, "rules": [{"name": "hot", "sensor": "temp", "type": "above", "threshold": 1e12}]},
         "threshold"),
        ({"version": 5, "sensors": [{"name": "temp", "driver": "ntc", "pin": 34,
                                     "filters": [{"type": "kalman"}]}]}, "unknown filter"),
        ({"version": 5, "mqtt": {"port": 70000}}, "mqtt.port"),
        ({"version": 5, "uplink": {"max_pack": 0}}, "uplink.max_pack"),
        ({"version": 5, "node": {"id": "other"}}, "node.id"),
        ({"version": 2}, "version"),
        ({"version": 3, "sample_ms": 10, "x": 1}, None),  # same version: ignored, not applied
        ({"sample_ms": 100}, "version"),
        ([1, 2, 3], "map"),
    ]
    for push, word in cases:
        ok, why = rc.handle(cbor.dumps(push))
        if word is None:
            assert ok and rc.cfg.get("x") is None
            continue
        assert not ok and word in why, (push, why)
        assert rc.state()["config_rejected"] == why
        assert rc.version == 3 and rc.cfg["sample_ms"] == 1000
    big = cbor.dumps({"version": 9, "pad": "x" * 5000})
    ok, why = rc.handle(big)
    assert not ok and "oversized" in why
    ok, why = rc.handle(b"\xff\x00garbage")
    assert not ok and why
    assert app.applied == [] and rc.stats["rejected"] >= 10
    try:
        open(path).close()
        raise AssertionError("a rejected config was persisted")
    except OSError:
        pass


def test_failed_apply_rolls_back():
    class Bad(_App):
        def apply(self, cfg):
            self.applied.append(cfg["version"])
            return (False, "sensors: driver init failed") if cfg["version"] == 6 else (True, None)
    rc, app, path = _rc(app=Bad())
    ok, why = rc.handle(cbor.dumps({"version": 6}))
    assert not ok and why == "sensors: driver init failed"
    assert app.applied == [6, 3] and rc.version == 3  # old config re-applied


def test_signed_configs_only_when_node_has_a_key():
    rc, app, path = _rc(key=KEY)
    ok, why = rc.handle(cbor.dumps({"version": 7}))
    assert not ok and "unsigned" in why
    forged = cbor.dumps({"cfg": cbor.dumps({"version": 7}), "tag": bytes(16)})
    ok, why = rc.handle(forged)
    assert not ok and "tag" in why
    ok, why = rc.handle(auth.seal_config(KEY, {"version": 7, "sample_ms": 250}))
    assert ok and rc.cfg["sample_ms"] == 250


def test_save_atomic_replaces_whole_file():
    path = _dir() + "/atomic.json"
    save_atomic(path, {"version": 1})
    save_atomic(path, {"version": 2, "pad": "y" * 300})
    with open(path) as f:
        assert json.loads(f.read())["version"] == 2
    try:
        open(path + ".tmp").close()
        raise AssertionError("temp file left behind")
    except OSError:
        pass
