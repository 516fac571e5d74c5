"""BLE identity: the firmware's BTHome counter across reboots and a flash erase (real LittleFS on the
MicroPython unix port) against the gateway's replay rule, and a bounded registry under random-MAC adverts."""

from __future__ import annotations

import time

import pytest

from tests.gateway.ingest_helpers import GatewayThread, SimNode, dead_letters, gw_config, wait_for
from tests.gateway.test_ingest_ble import KEY, FakeScanner, _ble_rows
from fogline.tools import hostemu

# A node advertising with its persisted counter: 3 adverts, a reboot, 2 adverts, its flash erased, 2 adverts.
SCRIPT = r"""
import bluetooth, flashdev
from firmware import bthome
from firmware.counter import ReservedCounter
dev = flashdev.FlashDev(32)
flashdev.mount(dev, "/flash", format=True)
ble = bluetooth.BLE()
t = [20.0]
def run(n, key):
    adv = bthome.Advertiser(ble, bind_key=key, counter=ReservedCounter("/flash/bthome.ctr") if key else None)
    for _ in range(n):
        t[0] += 0.5
        adv.update({"temperature": t[0], "battery": 90})
run(3, "%s")
dev = flashdev.remount(dev, "/flash")
run(2, "%s")
flashdev.umount("/flash")
flashdev.mount(dev, "/flash", format=True)
run(2, "%s")
for _ in range(40):
    run(1, None)
""" % (KEY, KEY, KEY)


@pytest.fixture(scope="module")
def lifetime(tmp_path_factory):
    """Encrypted adverts of one node's life (A: first boot, B: after a reboot, C: after a flash erase)."""
    d = tmp_path_factory.mktemp("life")
    (d / "run.py").write_text(SCRIPT)
    log = d / "ble.log"
    proc = hostemu.run_mp(d / "run.py", timeout=60, env={"FOGLINE_BLE_LOG": str(log)}, cwd=str(hostemu.REPO))
    assert proc.returncode == 0, proc.stderr + proc.stdout
    rows = [ln.split() for ln in log.read_text().splitlines()]
    mac = ":".join(rows[0][0][i:i + 2] for i in range(0, 12, 2)).upper()  # the nonce binds the node's MAC
    advs = [bytes.fromhex(r[2]) for r in rows]
    return mac, advs[:3], advs[3:5], advs[5:7], advs[7:]


def _ctr(adv: bytes) -> int:
    return int.from_bytes(adv[-8:-4], "little")


def test_counter_survives_reboot_and_a_restart_is_one_counted_event(lifetime, mosquitto, tmp_path):
    mac, a, b, c, _ = lifetime
    assert [_ctr(x) for x in a + b + c] == [0, 1, 2, 1024, 1025, 0, 1]  # a reboot moves on, an erase restarts
    scanner = FakeScanner()
    ble = {"bind_keys": {mac: KEY}, "counter_restart_min_s": 3600.0}
    clk = [time.time()]
    g = GatewayThread(gw_config(tmp_path, mosquitto.port, ble=ble), ble_backend=scanner, clock=lambda: clk[0])
    with g:
        seq = a + b + c + [a[0], b[0]]  # then replays: an old low counter, an old high one
        for i, adv in enumerate(seq):
            clk[0] += 5.0  # a reboot takes longer than bthome-ble's 4 s packet-id window
            scanner.deliver(adv, mac)
            assert wait_for(lambda: g.gw.metrics.total("ble_adverts") >= i + 1, timeout=60)
        g.flush()
        m = g.gw.metrics
        restarts, accepted = m.total("ble_counter_restarts"), m.total("ble_accepted")
    temps = [v for k, v, _ in _ble_rows(tmp_path / "data", mac.replace(":", "").lower()) if k == "temperature"]
    assert temps == [20.5, 21.0, 21.5, 22.0, 22.5, 23.0, 23.5]  # every advert of the node's life, once
    assert restarts == 1 and accepted == 7
    assert [r for r, _, _ in dead_letters(tmp_path / "data")] == ["replayed_seq"] * 2  # the second fall, the old high one
    # b[0] (1024) after the restart is above the counter, but was accepted before: still a replay


def _deliver(tmp, port, ble, advs, mac):
    scanner = FakeScanner()
    clk = [time.time()]
    g = GatewayThread(gw_config(tmp, port, ble=dict(ble, bind_keys={mac: KEY})), ble_backend=scanner,
                      clock=lambda: clk[0])
    with g:
        for i, adv in enumerate(advs):
            clk[0] += 5.0
            scanner.deliver(adv, mac)
            assert wait_for(lambda: g.gw.metrics.total("ble_adverts") >= i + 1, timeout=60)
        g.flush()
        return g.gw.metrics.total("ble_counter_restarts"), [r for r, _, _ in dead_letters(tmp / "data")]


def test_high_falling_counter_is_a_replay_not_a_restart(lifetime, mosquitto, tmp_path):
    mac, a, b, _, _ = lifetime
    # 1025, then 1024 (falls, but not below the bound: a replay), then 0 (a restart)
    assert _deliver(tmp_path / "one", mosquitto.port, {"counter_restart_below": 1000}, [b[1], b[0], a[0]], mac) \
        == (1, ["replayed_seq"])
    # restarts disabled (bound 0): every falling counter is a replay
    assert _deliver(tmp_path / "two", mosquitto.port, {"counter_restart_below": 0}, [b[0], a[0]], mac) \
        == (0, ["replayed_seq"])


def test_random_mac_adverts_never_take_registry_slots_of_provisioned_devices(lifetime, mosquitto, tmp_path):
    keyed, a, _, _, plain = lifetime
    scanner = FakeScanner()
    cfg = gw_config(tmp_path, mosquitto.port, ble={"bind_keys": {keyed: KEY}, "max_unknown": 8},
                    ingest={"max_devices": 20})
    g = GatewayThread(cfg, ble_backend=scanner)
    with g:
        for i in range(200):  # a neighbour with random MACs (plaintext adverts)
            scanner.deliver(plain[i % len(plain)], "02:00:00:00:%02X:%02X" % (i >> 8, i & 0xFF))
        assert wait_for(lambda: g.gw.metrics.total("ble_adverts") >= 200, timeout=60)
        scanner.deliver(a[0], keyed)                    # the provisioned BLE node...
        node = SimNode(mosquitto.port, "mqtt1")         # ...and an MQTT node still get in
        try:
            node.send("up", node.up(1, [1.0, 2.0]))
            assert node.wait_ack("up", 2)
        finally:
            node.close()
        assert wait_for(lambda: g.gw.metrics.total("ble_adverts") >= 201, timeout=60)
        g.flush()
        m, ble, reg = g.gw.metrics, g.gw.ble, g.gw.registry
        assert reg.unprovisioned == 8 and len(reg.devices) == 10       # 8 neighbours, the BLE node, mqtt1
        assert m.total("ble_unknown_refused") == 192 and m.total("ble_unknown_evicted") == 192
        assert ble.unknown == 8 and len(ble.peers) == 9
    assert [v for k, v, _ in _ble_rows(tmp_path / "data", keyed.replace(":", "").lower()) if k == "temperature"] == [20.5]
