"""BLE ingest: BTHome v2 adverts from a scanner backend (bleak by default), decoded with bthome-ble.

Per advertiser MAC: an identical advert seen again (BlueZ reports repeats) or a
repeated packet id is a duplicate (counted, dropped); an encrypted advert whose
counter went backwards is a replay (dead-lettered; the last accepted counter per MAC
is kept in the gateway store, so a restart opens no replay window). The node keeps its counter
rising across reboots (firmware/counter.py), so a falling one is accepted only as a counter restart
(flash erased): below `counter_restart_below`, at most once per `counter_restart_min_s` per MAC,
counted (`ble_counter_restarts`) and logged. An encrypted advert that does
not decrypt with the configured bind key is refused (`ble_decrypt`); a plaintext
advert from a MAC that has a bind key is a downgrade and refused (`ble_plaintext`).
MACs with neither a bind key nor a name are unprovisioned: at most `max_unknown` of them are tracked
(least recently heard forgotten first, `ble_unknown_evicted`) or hold registry slots (beyond that
refused, `unknown_device`); they never count against `[ingest] max_devices`, so random-MAC neighbours
cannot push provisioned BLE devices or MQTT nodes out.
Accepted values become readings on lane "ble" (gateway-assigned seqs; BLE has no
acks). A watchdog restarts the scanner when no advert arrived for `stall_s` (BlueZ
scanners are known to stop reporting silently).
"""

from __future__ import annotations

import abc
import asyncio
import collections
import hashlib
import logging
import math
import time
from dataclasses import dataclass
from typing import Any, Callable

from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData
from bthome_ble import BTHomeBluetoothDeviceData

from fogline.gateway.ingest.validate import Message, Reading, Rejected

log = logging.getLogger(__name__)

BTHOME_UUID = "0000fcd2-0000-1000-8000-00805f9b34fb"
DetectionCallback = Callable[[BLEDevice, AdvertisementData], None]

# bthome-ble measurement key -> SenML unit of the stored reading
UNITS = {"temperature": "Cel", "humidity": "%RH", "pressure": "hPa", "battery": "%EL", "illuminance": "lx",
         "voltage": "V", "co2": "ppm", "moisture": "%", "signal_strength": "dBm"}
_SKIP = {"packet_id", "signal_strength"}


class ScannerBackend(abc.ABC):
    """Source of (BLEDevice, AdvertisementData) detections; tests inject a fake one."""

    @abc.abstractmethod
    async def start(self, callback: DetectionCallback) -> None:
        """Start scanning; call callback(device, advertisement) on the event loop for each advert."""

    @abc.abstractmethod
    async def stop(self) -> None:
        """Stop scanning (idempotent)."""


class BleakBackend(ScannerBackend):
    """bleak.BleakScanner with a detection callback (passive where the platform allows)."""

    def __init__(self, adapter: str | None = None):
        self.adapter = adapter
        self.scanner: Any = None

    async def start(self, callback: DetectionCallback) -> None:
        from bleak import BleakScanner
        kw: dict[str, Any] = {"adapter": self.adapter} if self.adapter else {}
        self.scanner = BleakScanner(detection_callback=callback, **kw)
        await self.scanner.start()

    async def stop(self) -> None:
        if self.scanner is not None:
            try:
                await self.scanner.stop()
            finally:
                self.scanner = None


def service_info(device: BLEDevice, adv: AdvertisementData, now: float) -> Any:
    """The BluetoothServiceInfoBleak bthome-ble expects, from bleak's objects."""
    from habluetooth import BluetoothServiceInfoBleak
    return BluetoothServiceInfoBleak(adv.local_name or device.address, device.address, adv.rssi,
                                     adv.manufacturer_data, adv.service_data, adv.service_uuids, "local",
                                     device, adv, False, now, adv.tx_power, None)


@dataclass
class _Peer:
    parser: BTHomeBluetoothDeviceData
    has_key: bool
    last_sd: bytes = b""
    last_pid: int | None = None
    last_t: float = 0.0
    counter: int = -1
    restarted: float | None = None   # when a counter restart was last accepted
    seen: collections.deque[bytes] | None = None  # digests of the last SEEN_MAX encrypted adverts accepted


class BleIngest:
    """Turns BTHome adverts into gateway readings (gw.accept) and refusals (gw.reject)."""

    DUP_WINDOW_S = 4.0  # same packet id within this long = a duplicate (BTHome's rule)
    SEEN_MAX = 512      # encrypted adverts remembered per MAC: a replay after a counter restart is still caught

    def __init__(self, cfg: Any, gw: Any, backend: ScannerBackend | None = None):
        self.cfg = cfg
        self.gw = gw
        self.backend = backend or BleakBackend(cfg.adapter)
        self.keys = {k.upper(): bytes.fromhex(v) for k, v in cfg.bind_keys.items()}
        self.names = {k.upper(): v for k, v in cfg.names.items()}
        self.peers: collections.OrderedDict[str, _Peer] = collections.OrderedDict()  # unprovisioned: LRU
        self.provisioned = set(self.keys) | set(self.names)
        self.unknown = 0  # unprovisioned peers tracked now
        gw.registry.known |= {self.node_id(mac) for mac in self.provisioned}
        self.saved_counters: dict[str, int] = {}  # persisted last counters (loaded at start)
        self.last_advert = time.monotonic()
        self._watch: asyncio.Task[None] | None = None
        self.running = False

    async def start(self) -> None:
        if getattr(self.gw, "store", None) is not None:
            # the last accepted counter per MAC survives a restart: no replay window opens
            self.saved_counters = await self.gw.run_store(lambda st: st.ble_counters())
        self.running = True
        await self.backend.start(self.on_detection)
        self.last_advert = time.monotonic()
        self._watch = asyncio.create_task(self._watchdog(), name="fogline-ble-watchdog")

    async def stop(self) -> None:
        self.running = False
        if self._watch:
            self._watch.cancel()
        await self.backend.stop()

    async def _watchdog(self) -> None:
        while self.running:
            await asyncio.sleep(min(5.0, self.cfg.stall_s / 2))
            if time.monotonic() - self.last_advert >= self.cfg.stall_s:
                await self.restart("stall")

    async def restart(self, why: str) -> None:
        """Stop and start the scanner (a stalled BlueZ scan)."""
        self.gw.metrics.inc("ble_scanner_restarts", why=why)
        log.warning("event=ble_scanner_restart why=%s", why)
        try:
            await self.backend.stop()
        except Exception:
            log.exception("event=ble_scanner_stop_failed")
        try:
            await self.backend.start(self.on_detection)
        except Exception:
            self.gw.metrics.inc("ble_scanner_start_failures")
            log.exception("event=ble_scanner_start_failed")
        self.last_advert = time.monotonic()

    def node_id(self, mac: str) -> str:
        return self.names.get(mac) or mac.replace(":", "").lower()

    def on_detection(self, device: BLEDevice, adv: AdvertisementData) -> None:
        """bleak detection callback (event loop thread); never raises."""
        self.last_advert = time.monotonic()
        m = self.gw.metrics
        sd = adv.service_data.get(BTHOME_UUID)
        if sd is None:
            m.inc("ble_ignored")
            return
        mac = device.address.upper()
        node = self.node_id(mac)
        try:
            self._handle(device, adv, bytes(sd), mac, node)
        except Rejected as e:
            m.inc("ble_refused", reason=e.reason)
            self.gw.reject(e.reason, e.detail, topic="ble:" + mac, source=node, link="ble", payload=bytes(sd))
        except Exception as e:  # a bug here must not kill the scanner callback
            log.exception("event=ble_bug mac=%s", mac)
            self.gw.reject("internal", f"{type(e).__name__}: {e}", topic="ble:" + mac, source=node, link="ble",
                           payload=bytes(sd))

    def _handle(self, device: BLEDevice, adv: AdvertisementData, sd: bytes, mac: str, node: str) -> None:
        m = self.gw.metrics
        now = self.gw.clock()
        peer = self._peer(mac)
        m.inc("ble_adverts")
        if sd == peer.last_sd and now - peer.last_t < self.DUP_WINDOW_S:
            m.inc("ble_duplicates")
            return
        if len(sd) < 1:
            raise Rejected("ble_decode", "empty BTHome service data")
        info = sd[0]
        encrypted = bool(info & 0x01)
        if (info >> 5) != 2:
            raise Rejected("ble_decode", f"not BTHome v2 (device info 0x{info:02x})")
        if not encrypted and peer.has_key and self.cfg.require_encryption:
            m.inc("ble_plaintext_refused")
            raise Rejected("ble_plaintext", f"plaintext advert from {mac}, which has a bind key (downgrade)")
        if encrypted:
            if not peer.has_key:
                m.inc("ble_decrypt_failures")
                raise Rejected("ble_decrypt", f"encrypted advert from {mac} and no bind key configured")
            if len(sd) < 1 + 8 + 1:
                raise Rejected("ble_decode", "encrypted advert too short")
            ctr = int.from_bytes(sd[-8:-4], "little")
            restart = ctr < peer.counter
            if restart and not self._restart_allowed(peer, ctr, now):
                raise Rejected("replayed_seq", f"BTHome counter {ctr} < last accepted {peer.counter}")
            digest = hashlib.blake2b(sd, digest_size=8).digest()
            if peer.seen is not None and digest in peer.seen:  # an old advert above a restarted counter
                raise Rejected("replayed_seq", f"BTHome advert with counter {ctr} was accepted before")
            if restart:  # bthome-ble keeps its own last counter: let this one through it too
                peer.parser.reset_encryption_counter()
            if ctr == peer.counter:
                m.inc("ble_duplicates")
                return
        upd = peer.parser.update(service_info(device, adv, now))
        if encrypted and (peer.parser.decryption_failed or not peer.parser.bindkey_verified):
            m.inc("ble_decrypt_failures")
            raise Rejected("ble_decrypt", f"advert from {mac} does not decrypt with the configured bind key")
        if peer.parser.downgrade_detected:
            m.inc("ble_plaintext_refused")
            raise Rejected("ble_plaintext", f"plaintext advert from {mac} refused (downgrade)")
        values = {k.key: v.native_value for k, v in upd.entity_values.items()}
        pid = values.get("packet_id")
        if not values or (pid is not None and pid == peer.last_pid and now - peer.last_t < self.DUP_WINDOW_S):
            m.inc("ble_duplicates")
            return
        if encrypted:
            if restart:
                peer.restarted = now
                m.inc("ble_counter_restarts")
                log.warning("event=ble_counter_restart mac=%s node=%s counter=%d last=%d", mac, node, ctr,
                            peer.counter)
            peer.counter = ctr
            if peer.seen is None:
                peer.seen = collections.deque(maxlen=self.SEEN_MAX)
            peer.seen.append(digest)
            self._save_counter(mac, ctr)
        peer.last_sd = sd
        peer.last_t = now
        peer.last_pid = int(pid) if isinstance(pid, (int, float)) else None
        readings = []
        for k, v in sorted(values.items()):
            if k in _SKIP or isinstance(v, bool) or not isinstance(v, (int, float)):
                continue
            if not math.isfinite(v):
                m.inc("ble_non_finite")
                continue
            readings.append(Reading(node, "ble", 0, k, UNITS.get(k), float(v), now))
        if not readings:
            return
        cap = self.cfg.max_unknown
        if mac not in self.provisioned and not self.gw.registry.admit_unprovisioned(node, cap, now):
            m.inc("ble_unknown_refused")
            raise Rejected("unknown_device", f"{mac}: {self.cfg.max_unknown} unprovisioned BLE devices registered "
                                             "already (give it a [ble] name or bind key)")
        self.gw.accept(Message(node, "ble", 0, readings, "ble", len(sd), None, sd, now))  # Rejected if not admitted
        m.inc("ble_accepted")
        self.gw.registry.annotate(node, rssi=adv.rssi, battery=values.get("battery"), mac=mac)

    def _peer(self, mac: str) -> _Peer:
        peer = self.peers.get(mac)
        if peer is not None:
            if mac not in self.provisioned:
                self.peers.move_to_end(mac)
            return peer
        if mac not in self.provisioned:
            if self.unknown >= self.cfg.max_unknown:
                for old in self.peers:  # least recently heard unprovisioned MAC
                    if old not in self.provisioned:
                        del self.peers[old]
                        self.unknown -= 1
                        self.gw.metrics.inc("ble_unknown_evicted")
                        break
            self.unknown += 1
        key = self.keys.get(mac)
        peer = self.peers[mac] = _Peer(BTHomeBluetoothDeviceData(bindkey=key), key is not None,
                                       counter=self.saved_counters.get(mac, -1))
        return peer

    def _restart_allowed(self, peer: _Peer, ctr: int, now: float) -> bool:
        """A falling counter is a restart (node flash erased) only low, and rarely; otherwise a replay."""
        if ctr >= self.cfg.counter_restart_below:
            return False
        return peer.restarted is None or now - peer.restarted >= self.cfg.counter_restart_min_s

    def _save_counter(self, mac: str, ctr: int) -> None:
        # Queued on the store thread before the readings' commit is: the counter is durable first,
        # so after a crash an advert is never accepted twice (at worst one is not stored).
        call = getattr(self.gw, "store_call_soon", None)
        if call is None or getattr(self.gw, "store", None) is None:
            return
        fut = call(lambda st: st.save_ble_counter(mac, ctr))
        fut.add_done_callback(self._saved)

    def _saved(self, fut: Any) -> None:
        if fut.exception() is not None:  # store thread: only count and log
            self.gw.metrics.inc("ble_counter_save_errors")
            log.error("event=ble_counter_save_failed error=%s", fut.exception())


def make_advertisement(adv_bytes: bytes, mac: str, rssi: int = -60) -> tuple[BLEDevice, AdvertisementData]:
    """bleak's own BLEDevice/AdvertisementData from raw legacy advert bytes (tests, replay tools)."""
    service_data: dict[str, bytes] = {}
    name = None
    uuids: list[str] = []
    i = 0
    while i < len(adv_bytes):
        n = adv_bytes[i]
        if n == 0 or i + 1 + n > len(adv_bytes):
            raise ValueError(f"bad AD structure at byte {i}")
        typ, data = adv_bytes[i + 1], bytes(adv_bytes[i + 2:i + 1 + n])
        if typ == 0x16 and len(data) >= 2:
            u = f"0000{int.from_bytes(data[:2], 'little'):04x}-0000-1000-8000-00805f9b34fb"
            service_data[u] = data[2:]
            uuids.append(u)
        elif typ in (0x08, 0x09):
            name = data.decode(errors="replace")
        i += 1 + n
    dev = BLEDevice(mac, name, None)
    adv = AdvertisementData(local_name=name, manufacturer_data={}, service_data=service_data,
                            service_uuids=uuids, tx_power=None, rssi=rssi, platform_data=())
    return dev, adv
