"""Every BTHome advert the firmware encoder emits (plain and encrypted) decodes with bthome-ble."""

from __future__ import annotations

import json
import random

from bthome_ble import BTHomeBluetoothDeviceData
from cryptography.hazmat.primitives.ciphers.aead import AESCCM

from tests.node.bthome_check import ad_structures, decode
from fogline.tools import hostemu

KEY = "231d39c1d7cc1ab1aee224cd096db932"

SCRIPT = r"""
import json, sys
import bluetooth
from firmware import bthome
values = json.loads(open(sys.argv[1]).read())
ble = bluetooth.BLE()
plain = bthome.Advertiser(ble, interval_ms=100)
enc = bthome.Advertiser(ble, bind_key=sys.argv[2], interval_ms=100, counter_start=1000)
for v in values:
    assert plain.update(v) is not None
    assert enc.update(v) is not None
print("MAC", ble.config("mac")[1].hex())
"""


def _values(n: int, seed: int = 5) -> list[dict[str, float]]:
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        out.append({"temperature": round(rnd.uniform(-40, 85), 2), "humidity": round(rnd.uniform(0, 100), 2),
                    "pressure": round(rnd.uniform(300, 1100), 2), "battery": rnd.randint(0, 100)})
    # edges of each object's range
    out.append({"temperature": -327.68, "humidity": 0.0, "pressure": 0.0, "battery": 0})
    out.append({"temperature": 327.67, "humidity": 655.35, "pressure": 167772.15, "battery": 255})
    return out


def test_every_advert_decodes_to_the_values(tmp_path):
    values = _values(60)
    (tmp_path / "v.json").write_text(json.dumps(values))
    (tmp_path / "run.py").write_text(SCRIPT)
    log = tmp_path / "ble.log"
    proc = hostemu.run_mp(tmp_path / "run.py", str(tmp_path / "v.json"), KEY, timeout=60,
                          env={"FOGLINE_BLE_LOG": str(log)}, cwd=str(hostemu.REPO))
    assert proc.returncode == 0, proc.stderr + proc.stdout
    lines = log.read_text().split()
    rows = [lines[i:i + 3] for i in range(0, len(lines), 3)]
    assert len(rows) == 2 * len(values)
    plain_p = BTHomeBluetoothDeviceData()
    enc_p = BTHomeBluetoothDeviceData(bindkey=bytes.fromhex(KEY))
    wrong_p = BTHomeBluetoothDeviceData(bindkey=bytes(16))
    sizes = set()
    for i, want in enumerate(values):
        for j, parser in ((0, plain_p), (1, enc_p)):
            mac_hex, interval, adv_hex = rows[2 * i + j]
            adv, mac = bytes.fromhex(adv_hex), bytes.fromhex(mac_hex)
            assert int(interval) == 100_000
            assert len(adv) <= 31 and ad_structures(adv)[0] == (0x01, b"\x06")
            sizes.add(len(adv))
            got = decode(adv, mac, parser)
            assert got["temperature"] == want["temperature"], (i, j, got)
            assert got["humidity"] == want["humidity"]
            assert got["pressure"] == want["pressure"]
            assert got["battery"] == want["battery"]
            assert got["packet_id"] == (i + 1) % 256
            if j == 1:
                assert parser.encryption_scheme.name != "NONE" and parser.bindkey_verified
    assert sizes <= {22, 30}, sizes
    # a wrong key never yields values
    mac_hex, _, adv_hex = rows[1]
    assert not decode(bytes.fromhex(adv_hex), bytes.fromhex(mac_hex), wrong_p).get("temperature")


def test_encrypted_advert_matches_cryptography_aesccm(tmp_path):
    (tmp_path / "v.json").write_text(json.dumps([{"temperature": 21.5, "humidity": 40.25}]))
    (tmp_path / "run.py").write_text(SCRIPT)
    log = tmp_path / "ble.log"
    proc = hostemu.run_mp(tmp_path / "run.py", str(tmp_path / "v.json"), KEY, timeout=60,
                          env={"FOGLINE_BLE_LOG": str(log)}, cwd=str(hostemu.REPO))
    assert proc.returncode == 0, proc.stderr
    mac_hex, _, adv_hex = log.read_text().splitlines()[1].split()
    sd = dict(ad_structures(bytes.fromhex(adv_hex)))[0x16]
    assert sd[:3] == b"\xd2\xfc\x41"
    body, counter, mic = sd[3:-8], sd[-8:-4], sd[-4:]
    nonce = bytes.fromhex(mac_hex) + b"\xd2\xfc\x41" + counter
    plain = AESCCM(bytes.fromhex(KEY), tag_length=4).decrypt(nonce, body + mic, None)
    assert plain == bytes.fromhex("0001") + bytes.fromhex("026608") + bytes.fromhex("03b90f")
    assert int.from_bytes(counter, "little") == 1000
