"""Simulated BLE radio for host emulation: adverts the firmware gave the sim `bluetooth` module reach the
gateway's BLE ingest as bleak detections (the same objects BlueZ would produce).

The sim module appends `<mac hex> <interval_us> <advert hex>` lines to $FOGLINE_BLE_LOG; this backend
tails those files and calls the detection callback with bleak's BLEDevice/AdvertisementData.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

from fogline.gateway.ingest.ble import ScannerBackend, make_advertisement
from fogline.gateway.aio import cancel_and_wait

log = logging.getLogger(__name__)


def _mac(hexmac: str) -> str:
    return ":".join(hexmac[i:i + 2] for i in range(0, 12, 2)).upper()


class SimRadioBackend(ScannerBackend):
    """Scanner backend that 'hears' every advert written to the given sim BLE log files."""

    def __init__(self, paths: list[Path], poll_s: float = 0.2, rssi: int = -62):
        self.paths = [Path(p) for p in paths]
        self.poll_s = poll_s
        self.rssi = rssi
        self._pos: dict[Path, int] = {}
        self._task: asyncio.Task | None = None
        self.counters = {"adverts": 0, "bad_lines": 0}

    async def start(self, callback: Any) -> None:
        self._task = asyncio.create_task(self._run(callback), name="sim-radio")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None

    def poll(self, callback: Any) -> int:
        """Deliver adverts appended since the last poll; returns how many."""
        n = 0
        for p in self.paths:
            try:
                with open(p, "rb") as f:
                    f.seek(self._pos.get(p, 0))
                    data = f.read()
            except FileNotFoundError:
                continue
            end = data.rfind(b"\n") + 1  # a half-written last line waits for the next poll
            self._pos[p] = self._pos.get(p, 0) + end
            for line in data[:end].splitlines():
                try:
                    mac, _interval, adv = line.decode().split()
                    device, ad = make_advertisement(bytes.fromhex(adv), _mac(mac), self.rssi)
                except (ValueError, UnicodeDecodeError):
                    self.counters["bad_lines"] += 1
                    continue
                self.counters["adverts"] += 1
                n += 1
                callback(device, ad)
        return n

    async def _run(self, callback: Any) -> None:
        while True:
            try:
                self.poll(callback)
            except Exception:
                log.exception("event=sim_radio_poll_failed")
            await asyncio.sleep(self.poll_s)
