"""BTHome v2 advertisements of the latest values, optionally AES-CCM encrypted (CCM on cryptolib)."""

import struct
from micropython import const

UUID = const(0xFCD2)
_INFO_PLAIN = const(0x40)  # version 2 in bits 5-7
_INFO_ENCRYPTED = const(0x41)
LEGACY_MAX = const(31)
_FLAGS_AD = b"\x02\x01\x06"
_MIC_LEN = const(4)

# name -> (object id, bytes, scale, signed); advert objects must go in ascending id order.
OBJECTS = {
    "packet_id": (0x00, 1, 1, False),
    "battery": (0x01, 1, 1, False),
    "temperature": (0x02, 2, 100, True),
    "humidity": (0x03, 2, 100, False),
    "pressure": (0x04, 3, 100, False),
    "illuminance": (0x05, 3, 100, False),
    "voltage": (0x0C, 2, 1000, False),
    "co2": (0x12, 2, 1, False),
    "moisture": (0x14, 2, 100, False),
}
_ORDER = sorted(OBJECTS, key=lambda k: OBJECTS[k][0])
# SenML unit -> (BTHome object, factor to its unit)
_UNITS = {"Cel": ("temperature", 1), "%RH": ("humidity", 1), "Pa": ("pressure", 0.01),
          "hPa": ("pressure", 1), "lx": ("illuminance", 1), "V": ("voltage", 1),
          "ppm": ("co2", 1), "%EL": ("battery", 1)}


def bthome_key(name, unit):
    """(BTHome object name, factor) for a reading, or None if BTHome has no object for it."""
    # The unit decides the scale (a "pressure" in Pa must become hPa); the name is the fallback.
    k = _UNITS.get(unit)
    if k is None and name in OBJECTS and unit is None:
        return name, 1
    return k


def encode_objects(values):
    """BTHome object bytes for values {name: number}; ValueError if a value does not fit."""
    out = bytearray()
    for name in _ORDER:
        v = values.get(name)
        if v is None:
            continue
        oid, size, scale, signed = OBJECTS[name]
        n = int(round(v * scale))
        lo = -(1 << (8 * size - 1)) if signed else 0
        hi = (1 << (8 * size - 1)) - 1 if signed else (1 << (8 * size)) - 1
        if n < lo or n > hi:
            raise ValueError("bthome: %s=%s out of range" % (name, v))
        out.append(oid)
        if n < 0:
            n += 1 << (8 * size)
        for i in range(size):
            out.append((n >> (8 * i)) & 0xFF)
    return bytes(out)


class CCM:
    """AES-CCM encryption (RFC 3610, no associated data) built on an AES-ECB block function."""

    def __init__(self, key, mic_len=_MIC_LEN):
        if len(key) != 16:
            raise ValueError("bthome: bind key must be 16 bytes")
        import cryptolib
        self._aes = cryptolib.aes(key, 1)
        self.mic_len = mic_len
        self._x = bytearray(16)
        self._a = bytearray(16)
        self._s = bytearray(16)

    def encrypt(self, nonce, data):
        """ciphertext + MIC of data under a 7..13-byte nonce."""
        ln = len(nonce)
        q = 15 - ln
        if ln < 7 or ln > 13 or len(data) >= 1 << (8 * q):
            raise ValueError("bthome: bad nonce or message length")
        enc = self._aes.encrypt
        x, a, s = self._x, self._a, self._s
        # CBC-MAC over B0 | message blocks (zero padded)
        x[0] = ((self.mic_len - 2) // 2) << 3 | (q - 1)
        x[1:1 + ln] = nonce
        n = len(data)
        for i in range(q):
            x[15 - i] = (n >> (8 * i)) & 0xFF
        enc(x, x)
        for off in range(0, n, 16):
            for j in range(min(16, n - off)):
                x[j] ^= data[off + j]
            enc(x, x)
        # CTR: A0 encrypts the tag, A1.. the payload
        a[0] = q - 1
        a[1:1 + ln] = nonce
        out = bytearray(n + self.mic_len)
        blk = 1
        for off in range(0, n, 16):
            for i in range(q):
                a[15 - i] = (blk >> (8 * i)) & 0xFF
            enc(a, s)
            for j in range(min(16, n - off)):
                out[off + j] = data[off + j] ^ s[j]
            blk += 1
        for i in range(q):
            a[15 - i] = 0
        enc(a, s)
        for j in range(self.mic_len):
            out[n + j] = x[j] ^ s[j]
        return bytes(out)


def service_data(objects, mac=None, ccm=None, counter=0):
    """BTHome service data (UUID first); encrypted when ccm is given (mac = 6 bytes as printed).

    counter: an int, or its 4 little-endian bytes (firmware/counter.py: no long ints on a 32-bit board)."""
    if ccm is None:
        return struct.pack("<HB", UUID, _INFO_PLAIN) + objects
    ctr = bytes(counter) if isinstance(counter, (bytes, bytearray)) else struct.pack("<I", counter)
    nonce = bytes(mac) + struct.pack("<HB", UUID, _INFO_ENCRYPTED) + ctr
    sealed = ccm.encrypt(nonce, objects)
    return struct.pack("<HB", UUID, _INFO_ENCRYPTED) + sealed[:-_MIC_LEN] + ctr + sealed[-_MIC_LEN:]


def advert(sd, name=None):
    """Legacy advertising payload: flags AD, service data AD, name if it fits; ValueError if >31."""
    out = _FLAGS_AD + bytes((len(sd) + 1, 0x16)) + sd
    if len(out) > LEGACY_MAX:
        raise ValueError("bthome: advert is %d bytes, legacy limit is 31" % len(out))
    if name:
        nb = name.encode()
        room = LEGACY_MAX - len(out) - 2
        if room > 0:
            # 0x09 complete name, 0x08 shortened when it had to be cut
            out += bytes((min(len(nb), room) + 1, 0x09 if len(nb) <= room else 0x08)) + nb[:room]
    return out


class Advertiser:
    """Turns the latest values into BTHome adverts on a BLE object (bluetooth.BLE or the sim)."""

    def __init__(self, ble, bind_key=None, interval_ms=1000, name=None, counter_start=0, counter=None):
        self.ble = ble
        ble.active(True)
        self.mac = bytes(ble.config("mac")[1])
        if isinstance(bind_key, str):
            bind_key = bytes.fromhex(bind_key)
        self.ccm = CCM(bind_key) if bind_key else None
        self.interval_us = interval_ms * 1000
        self.name = name
        self.packet_id = 0
        # The receiver refuses a falling counter: `counter` (a firmware.counter.ReservedCounter) keeps it
        # rising across boots; without one it starts at counter_start each boot.
        self.counter = counter_start
        self.reserved = counter
        self.stats = {"adverts": 0, "errors": 0, "bytes": 0}
        self.last_error = None
        self.last = None

    def update(self, values):
        """Advertise values {BTHome name: number}; returns the advert bytes or None on error."""
        self.packet_id = (self.packet_id + 1) & 0xFF
        vals = dict(values)
        vals["packet_id"] = self.packet_id
        try:
            objs = encode_objects(vals)
            if self.ccm is not None and self.reserved is not None:
                ctr = self.reserved.next_bytes()
            else:
                ctr = self.counter
                self.counter += 1
            sd = service_data(objs, self.mac, self.ccm, ctr)
            adv = advert(sd, self.name)
            self.ble.gap_advertise(self.interval_us, adv_data=adv)
        except (ValueError, OSError) as e:
            self.stats["errors"] += 1
            self.last_error = "bthome: %r" % (e,)
            return None
        self.stats["adverts"] += 1
        self.stats["bytes"] = len(adv)
        self.last = adv
        return adv

    def update_readings(self, readings):
        """Advertise from readings {name: (unit, value)} mapped by name or SenML unit."""
        vals = {}
        for name in readings:
            unit, v = readings[name]
            k = bthome_key(name, unit)
            if k is not None and isinstance(v, (int, float)) and v == v:
                vals[k[0]] = v * k[1]
        return self.update(vals)

