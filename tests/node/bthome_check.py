"""Decode firmware BTHome adverts with the independent bthome-ble parser (CPython test helper)."""

from __future__ import annotations

import time

from bleak.backends.device import BLEDevice
from bthome_ble import BTHomeBluetoothDeviceData
from habluetooth import BluetoothServiceInfoBleak

BTHOME_UUID = "0000fcd2-0000-1000-8000-00805f9b34fb"


def ad_structures(adv: bytes) -> list[tuple[int, bytes]]:
    """Split a legacy advertising payload into (AD type, data) pairs; ValueError if malformed."""
    out, i = [], 0
    while i < len(adv):
        n = adv[i]
        if n == 0 or i + 1 + n > len(adv):
            raise ValueError(f"bad AD length at {i}")
        out.append((adv[i + 1], bytes(adv[i + 2:i + 1 + n])))
        i += 1 + n
    return out


def service_info(adv: bytes, mac: bytes) -> BluetoothServiceInfoBleak:
    """The service info Home Assistant's BLE stack would build from this advert."""
    sd, name = {}, None
    for typ, data in ad_structures(adv):
        if typ == 0x16:
            uuid16 = int.from_bytes(data[:2], "little")
            sd[f"0000{uuid16:04x}-0000-1000-8000-00805f9b34fb"] = data[2:]
        elif typ in (0x08, 0x09):
            name = data.decode()
    address = ":".join(f"{b:02X}" for b in mac)
    device = BLEDevice(address, name, None)
    return BluetoothServiceInfoBleak(name or address, address, -60, {}, sd, list(sd), "local", device,
                                     None, False, time.monotonic(), None, adv)


def decode(adv: bytes, mac: bytes, parser: BTHomeBluetoothDeviceData) -> dict[str, float]:
    """{measurement key: value} that bthome-ble reads from one advert."""
    upd = parser.update(service_info(adv, mac))
    return {k.key: v.native_value for k, v in upd.entity_values.items()}
