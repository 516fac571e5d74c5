"""BLE ingest: adverts produced by the firmware's BTHome encoder (run on the MicroPython unix port),
delivered as bleak's own BLEDevice/AdvertisementData through an injected scanner backend."""

from __future__ import annotations

import json
import math

import pytest

from fogline.gateway.ingest.ble import ScannerBackend, make_advertisement
from tests.gateway.ingest_helpers import GatewayThread, dead_letters, db_rows, gw_config, wait_for
from fogline.tools import hostemu

KEY = "231d39c1d7cc1ab1aee224cd096db932"
WRONG = "00112233445566778899aabbccddeeff"
VALUES = [{"temperature": 21.5, "humidity": 40.25, "pressure": 1013.25, "battery": 87},
          {"temperature": -3.75, "humidity": 99.5, "pressure": 950.0, "battery": 86},
          {"temperature": 30.01, "humidity": 10.0, "pressure": 1100.0, "battery": 85}]

SCRIPT = r"""
import json, sys
import bluetooth
from firmware import bthome
values = json.loads(open(sys.argv[1]).read())
ble = bluetooth.BLE()
plain = bthome.Advertiser(ble, interval_ms=100)
enc = bthome.Advertiser(ble, bind_key=sys.argv[2], interval_ms=100, counter_start=1000)
for v in values:
    plain.update(v)
for v in values:
    enc.update(v)
"""


@pytest.fixture(scope="module")
def adverts(tmp_path_factory):
    """(mac, plain adverts, encrypted adverts) from the real firmware encoder."""
    d = tmp_path_factory.mktemp("adv")
    (d / "v.json").write_text(json.dumps(VALUES))
    (d / "run.py").write_text(SCRIPT)
    log = d / "ble.log"
    proc = hostemu.run_mp(d / "run.py", str(d / "v.json"), KEY, timeout=60, env={"FOGLINE_BLE_LOG": str(log)},
                          cwd=str(hostemu.REPO))
    assert proc.returncode == 0, proc.stderr + proc.stdout
    rows = [ln.split() for ln in log.read_text().splitlines()]
    mac = ":".join(rows[0][0][i:i + 2] for i in range(0, 12, 2)).upper()
    advs = [bytes.fromhex(r[2]) for r in rows]
    n = len(VALUES)
    return mac, advs[:n], advs[n:]


class FakeScanner(ScannerBackend):
    """Delivers adverts like bleak does: callback(BLEDevice, AdvertisementData) on the event loop."""

    def __init__(self):
        self.cb = None
        self.starts = 0
        self.stops = 0
        self.loop = None

    async def start(self, callback):
        import asyncio
        self.loop = asyncio.get_running_loop()
        self.cb = callback
        self.starts += 1

    async def stop(self):
        self.stops += 1

    def deliver(self, adv: bytes, mac: str, rssi: int = -70) -> None:
        dev, data = make_advertisement(adv, mac, rssi)
        self.loop.call_soon_threadsafe(self.cb, dev, data)


def _ble_rows(data_dir, node):
    return db_rows(data_dir, "SELECT s.metric, r.v, r.seq FROM readings r JOIN series s ON s.sid=r.sid "
                             "JOIN nodes n ON n.nid=r.nid WHERE n.name=? AND r.lane=2 ORDER BY r.seq, s.metric",
                   (node,))


def _run(tmp_path, port, ble, deliveries, scanner=None):
    scanner = scanner or FakeScanner()
    g = GatewayThread(gw_config(tmp_path, port, ble=ble), ble_backend=scanner)
    with g:
        for adv, mac in deliveries:
            scanner.deliver(adv, mac)
        m = g.gw.metrics  # every delivery is counted once: a BTHome advert, or ignored (another service UUID)
        assert wait_for(lambda: m.total("ble_adverts") + m.total("ble_ignored") >= len(deliveries), timeout=60)
        g.flush()
    return g.gw


def test_encrypted_firmware_adverts_decode_to_the_sampled_values(adverts, mosquitto, tmp_path):
    mac, _, enc = adverts
    gw = _run(tmp_path, mosquitto.port, {"bind_keys": {mac: KEY}, "names": {mac: "blenode"}},
              [(a, mac) for a in enc])
    rows = _ble_rows(tmp_path / "data", "blenode")
    got = {}
    for metric, v, seq in rows:  # one advert = 4 readings with consecutive gateway-assigned seqs
        got.setdefault((seq - 1) // 4, {})[metric] = v
    assert list(got.values()) == [dict(v) for v in VALUES]
    assert gw.metrics.total("ble_accepted") == 3
    dev = gw.device("blenode")
    assert dev.link == "ble" and dev.rssi == -70 and dev.battery == 85 and dev.mac == mac
    assert dead_letters(tmp_path / "data") == []


def test_wrong_bind_key_is_refused_and_counted(adverts, mosquitto, tmp_path):
    mac, _, enc = adverts
    gw = _run(tmp_path, mosquitto.port, {"bind_keys": {mac: WRONG}}, [(a, mac) for a in enc])
    assert _ble_rows(tmp_path / "data", mac.replace(":", "").lower()) == []
    assert gw.metrics.total("ble_decrypt_failures") == 3
    assert [r for r, _, _ in dead_letters(tmp_path / "data")] == ["ble_decrypt"] * 3


def test_plaintext_from_a_keyed_device_is_a_downgrade_and_refused(adverts, mosquitto, tmp_path):
    mac, plain, enc = adverts
    gw = _run(tmp_path, mosquitto.port, {"bind_keys": {mac: KEY}}, [(enc[0], mac), (plain[1], mac)])
    node = mac.replace(":", "").lower()
    assert {m for m, _, _ in _ble_rows(tmp_path / "data", node)} == {"temperature", "humidity", "pressure",
                                                                     "battery"}
    assert len(_ble_rows(tmp_path / "data", node)) == 4
    assert gw.metrics.total("ble_plaintext_refused") == 1
    assert [r for r, _, _ in dead_letters(tmp_path / "data")] == ["ble_plaintext"]


def test_plain_adverts_accepted_without_key_and_duplicates_absorbed(adverts, mosquitto, tmp_path):
    mac, plain, _ = adverts
    seq = [(plain[0], mac), (plain[0], mac), (plain[1], mac), (plain[1], mac), (plain[2], mac)]
    gw = _run(tmp_path, mosquitto.port, {"require_encryption": True}, seq)
    rows = _ble_rows(tmp_path / "data", mac.replace(":", "").lower())
    assert [v for m, v, _ in rows if m == "temperature"] == [21.5, -3.75, 30.01]
    assert gw.metrics.total("ble_duplicates") == 2


def test_replayed_encryption_counter_is_refused(adverts, mosquitto, tmp_path):
    mac, _, enc = adverts
    gw = _run(tmp_path, mosquitto.port, {"bind_keys": {mac: KEY}}, [(enc[0], mac), (enc[2], mac), (enc[1], mac)])
    rows = _ble_rows(tmp_path / "data", mac.replace(":", "").lower())
    assert sorted({v for m, v, _ in rows if m == "temperature"}) == [21.5, 30.01]
    assert [r for r, _, _ in dead_letters(tmp_path / "data")] == ["replayed_seq"]


def test_replay_counter_survives_a_gateway_restart(adverts, mosquitto, tmp_path):
    mac, _, enc = adverts
    ble = {"bind_keys": {mac: KEY}}
    _run(tmp_path, mosquitto.port, ble, [(enc[0], mac), (enc[2], mac)])
    assert db_rows(tmp_path / "data", "SELECT mac, counter FROM ble_counters") == [(mac, 1002)]
    # a new gateway process on the same data dir: an older advert and a re-sent one are still refused
    gw = _run(tmp_path, mosquitto.port, ble, [(enc[1], mac), (enc[2], mac)])
    rows = _ble_rows(tmp_path / "data", mac.replace(":", "").lower())
    assert sorted({v for m, v, _ in rows if m == "temperature"}) == [21.5, 30.01] and len(rows) == 8
    assert [r for r, _, _ in dead_letters(tmp_path / "data")] == ["replayed_seq"]
    assert gw.metrics.total("ble_duplicates") == 1 and gw.metrics.total("ble_accepted") == 0


def test_scanner_restarted_when_it_stalls(mosquitto, tmp_path):
    scanner = FakeScanner()
    g = GatewayThread(gw_config(tmp_path, mosquitto.port, ble={"stall_s": 0.4}), ble_backend=scanner)
    with g:
        assert wait_for(lambda: scanner.starts >= 3, timeout=60)
    assert g.gw.metrics.get("ble_scanner_restarts", why="stall") >= 2
    assert scanner.stops >= 2


def test_non_bthome_and_garbage_adverts_do_not_break_the_callback(mosquitto, tmp_path):
    scanner = FakeScanner()
    junk = [bytes.fromhex("020106") + bytes([4, 0x16, 0xD2, 0xFC, 0x40]),      # BTHome, no objects
            bytes.fromhex("020106") + bytes([3, 0x16, 0xD2, 0xFC]),            # empty service data
            bytes.fromhex("020106") + bytes([5, 0x16, 0xD2, 0xFC, 0x20, 0x02]),  # v1 device info
            bytes.fromhex("020106") + bytes([4, 0x16, 0x0F, 0x18, 0x55])]       # other UUID
    gw = _run(tmp_path, mosquitto.port, {}, [(j, "AA:BB:CC:DD:EE:01") for j in junk], scanner)
    assert gw.metrics.total("ble_ignored") == 1
    reasons = [r for r, _, _ in dead_letters(tmp_path / "data")]
    assert "internal" not in reasons and set(reasons) <= {"ble_decode"}


from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sd=st.binary(max_size=40), keyed=st.booleans())
def test_fuzz_arbitrary_service_data_never_escapes_the_callback(tmp_path, sd, keyed):
    from fogline.gateway import config
    from fogline.gateway.app import Gateway
    from fogline.gateway.ingest.ble import BTHOME_UUID, BleIngest
    from bleak.backends.device import BLEDevice
    from bleak.backends.scanner import AdvertisementData
    mac = "AA:BB:CC:DD:EE:02"
    cfg = config.from_dict({"site": {"data_dir": str(tmp_path)}, "ble": {"bind_keys": {mac: KEY} if keyed else {}}})
    gw = Gateway(cfg)
    ble = BleIngest(cfg.ble, gw, FakeScanner())
    adv = AdvertisementData(local_name=None, manufacturer_data={}, service_data={BTHOME_UUID: sd},
                            service_uuids=[BTHOME_UUID], tx_power=None, rssi=-50, platform_data=())
    ble.on_detection(BLEDevice(mac, None, None), adv)
    assert all(d.reason in {"ble_decode", "ble_decrypt", "ble_plaintext", "replayed_seq"} for d in gw._dead), \
        [(d.reason, d.detail) for d in gw._dead]
    for m in gw._msgs:
        assert all(isinstance(r.value, float) and math.isfinite(r.value) for r in m.readings)
