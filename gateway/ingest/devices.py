"""Device registry: what the gateway knows about each node, from `state` messages, uplinks and adverts."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

# state keys copied as-is (the node's `state` map: firmware/remote_config.py state())
_STATE_KEYS = {"version": "config_version", "heap_free": "heap_free", "flash_free": "flash_free",
               "uptime_s": "uptime_s", "last_error": "last_error", "config_rejected": "config_rejected",
               "fw": "fw", "board": "board", "rssi": "rssi", "battery": "battery", "online": "online",
               "power": "power"}


@dataclass
class Device:
    """One node as the gateway sees it."""
    node: str
    link: str = "mqtt"                  # "mqtt" | "ble" (last link heard on)
    first_seen: float = 0.0
    last_seen: float = 0.0
    last_state: float = 0.0
    rssi: float | None = None
    battery: float | None = None
    fw: str | None = None
    board: str | None = None
    config_version: int | None = None
    config_rejected: Any = None
    heap_free: int | None = None
    flash_free: int | None = None
    uptime_s: float | None = None
    last_error: Any = None
    backlog: dict[str, int] = field(default_factory=dict)
    dropped: dict[str, Any] = field(default_factory=dict)
    oldest: dict[str, int] = field(default_factory=dict)  # optional state key: oldest pending seq per lane
    mac: str | None = None
    messages: int = 0
    readings: int = 0
    approved: bool = True               # False while quarantined (unknown device policy)
    online: bool | None = None          # from a state {"online": false} last will, if the node sets one
    power: str | None = None            # capabilities (PLACEMENT): "usb" | "battery" | "mains"
    link_quality: dict[str, Any] = field(default_factory=dict)  # state "link": {"loss": 0..1, "rtt_ms", "reconnects"}
    sensors: list[str] | None = None    # state "sensors": names of the sensors the node runs
    epoch: int | None = None            # the node's flash generation (shared/epoch.py), from its packs
    epoch_resets: int = 0               # times its seqs restarted under a new epoch (erased flash, new board)
    epoch_skipped: int = 0              # seqs of earlier epochs never received (gone with the old flash)
    unprovisioned: bool = False         # a BLE MAC without bind key or name: its own budget, not max_devices

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class DeviceRegistry:
    """Nodes by id; `dirty` holds ids changed since the last persist."""

    def __init__(self, known: list[str] | None = None, policy: str = "auto_register", max_devices: int = 10000):
        self.devices: dict[str, Device] = {}
        self.known = set(known or [])
        self.policy = policy
        self.max_devices = max_devices
        self.dirty: set[str] = set()
        self.unprovisioned = 0  # devices registered from unprovisioned BLE MACs

    def load(self, rows: dict[str, dict[str, Any]]) -> None:
        fields = set(Device.__dataclass_fields__)
        for node, d in rows.items():
            dev = self.devices[node] = Device(**{k: v for k, v in d.items() if k in fields})
            self.unprovisioned += dev.unprovisioned

    def admit(self, node: str, link: str, now: float) -> bool:
        """True if readings from node may be stored (registers it under auto_register)."""
        dev = self.devices.get(node)
        if dev is not None and dev.approved:
            return True
        if node in self.known or (self.policy == "auto_register"
                                  and len(self.devices) - self.unprovisioned < self.max_devices):
            if dev is None:
                dev = self.devices[node] = Device(node, link, first_seen=now, last_seen=now)
            dev.approved = True
            self.dirty.add(node)
            return True
        return False

    def touch(self, node: str, link: str, now: float, readings: int = 0, rssi: float | None = None,
              battery: float | None = None, mac: str | None = None) -> Device:
        dev = self.devices.get(node)
        if dev is None:
            dev = self.devices[node] = Device(node, link, first_seen=now,
                                              approved=node in self.known or self.policy == "auto_register")
        dev.link = link
        dev.last_seen = now
        dev.online = True  # a state message's {"online": false} (last will) is applied after this
        dev.messages += 1
        dev.readings += readings
        if rssi is None and battery is None and mac is None:
            self.dirty.add(node)  # an uplink (no radio details): what _radio would do, without the call
        else:
            self._radio(node, dev, rssi, battery, mac)
        return dev

    def annotate(self, node: str, rssi: float | None = None, battery: float | None = None,
                 mac: str | None = None) -> None:
        """Radio details of a known device (BLE adverts)."""
        dev = self.devices.get(node)
        if dev is not None:
            self._radio(node, dev, rssi, battery, mac)

    def _radio(self, node: str, dev: "Device", rssi: float | None, battery: float | None, mac: str | None) -> None:
        if rssi is not None:
            dev.rssi = rssi
        if battery is not None:
            dev.battery = battery
        if mac is not None:
            dev.mac = mac
        self.dirty.add(node)

    def update_state(self, node: str, state: dict[str, Any], now: float) -> Device:
        """Apply a node `state` map (unknown keys ignored, wrong types skipped)."""
        dev = self.touch(node, "mqtt", now)
        dev.messages -= 1
        dev.last_state = now
        for k, attr in _STATE_KEYS.items():
            if k in state and _plain(state[k]):
                setattr(dev, attr, state[k])
        for k in ("backlog", "dropped", "oldest"):
            v = state.get(k)
            if _small_map(v):
                setattr(dev, k, dict(v))
        lq = state.get("link")  # uplink quality, a placement input (Device.link is the transport name)
        if _small_map(lq):
            dev.link_quality = dict(lq)
        ss = state.get("sensors")
        if isinstance(ss, list) and len(ss) <= 64 and all(isinstance(x, str) for x in ss):
            dev.sensors = list(ss)
        return dev

    def note_epoch(self, node: str, epoch: int, reset: bool, skipped: int = 0) -> None:
        """The store heard node under epoch (reset: its seqs restarted); counted once per node and epoch."""
        dev = self.devices.get(node)
        if dev is None or dev.epoch == epoch:
            return
        if reset:
            dev.epoch_resets += 1
        dev.epoch = epoch
        dev.epoch_skipped += skipped
        self.dirty.add(node)

    def admit_unprovisioned(self, node: str, cap: int, now: float = 0.0) -> bool:
        """Register an unprovisioned BLE device within its own budget of cap; False when that is full."""
        dev = self.devices.get(node)
        if dev is not None:
            return dev.unprovisioned or dev.approved
        if self.unprovisioned >= cap:
            return False
        self.devices[node] = Device(node, "ble", first_seen=now, last_seen=now, unprovisioned=True,
                                    approved=self.policy == "auto_register")
        self.unprovisioned += 1
        self.dirty.add(node)
        return True

    def take_dirty(self) -> dict[str, dict[str, Any]]:
        out = {n: self.devices[n].as_dict() for n in self.dirty if n in self.devices}
        self.dirty.clear()
        return out


def _plain(v: Any) -> bool:
    return v is None or isinstance(v, (str, int, float, bool))


def _small_map(v: Any) -> bool:
    # a few short text keys with plain values: a node's state must not grow the registry (or metric labels)
    return (isinstance(v, dict) and len(v) <= 16
            and all(isinstance(a, str) and len(a) <= 64 and _plain(b) for a, b in v.items()))
