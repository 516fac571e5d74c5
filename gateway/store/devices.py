"""What the store keeps about devices besides readings: BLE replay counters and the device registry rows."""

from __future__ import annotations

import json
import sqlite3
from typing import Any


class DevicesMixin:
    """Mixin of Store (uses its connection, on the store's thread)."""

    con: sqlite3.Connection

    def ble_counters(self) -> dict[str, int]:
        """Last accepted BTHome encryption counter per advertiser MAC (replay protection across restarts)."""
        return dict(self.con.execute("SELECT mac, counter FROM ble_counters").fetchall())

    def save_ble_counter(self, mac: str, counter: int) -> None:
        """Persist a MAC's last accepted counter (its own small transaction)."""
        self.con.execute("INSERT INTO ble_counters(mac, counter) VALUES (?, ?) "
                         "ON CONFLICT(mac) DO UPDATE SET counter=excluded.counter", (mac, int(counter)))

    def load_devices(self) -> dict[str, dict[str, Any]]:
        """Registry rows saved by earlier runs (node -> its JSON object); an unreadable row is skipped."""
        out = {}
        for node, data in self.con.execute("SELECT node, data FROM devices"):
            try:
                out[node] = json.loads(data)
            except ValueError:
                continue
        return out
