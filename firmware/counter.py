"""A 32-bit counter that never repeats across reboots, persisted by reservation blocks (BTHome replay protection).

ReservedCounter(path, block_bits=10): next_bytes() -> 4 little-endian bytes, each value used once.
The file holds the next unused block number `hi` (CRC frame, written tmp + rename): a boot resumes
at that block and reserves the one after it before handing out a value, so a crash or power cut can
only skip values, never repeat one, and the flash is written once per 2**block_bits values (and once
per boot). The value is hi * 2**block_bits + lo, kept as two small ints (no long ints on a 32-bit board).
An erased flash starts again at 0: the gateway accepts that only as a counted, rate-limited restart.
"""

import os
from micropython import const

from shared import cbor, frame

_HALF = const(16)


class ReservedCounter:
    """Monotonic across boots; `writes` and `errors` count reservation writes and failed ones."""

    def __init__(self, path, block_bits=10):
        if not 3 <= block_bits <= _HALF:
            raise ValueError("counter: block_bits must be 3..16")
        self.path = path
        self.bits = block_bits
        self.wrap = 1 << (32 - block_bits)  # blocks in the 32-bit space (a small int for bits >= 2)
        self.writes = 0
        self.errors = 0
        self.hi = self._load()
        self.lo = 0
        self.reserved = self.hi
        self._reserve(self.hi + 1)

    def _load(self):
        try:
            with open(self.path, "rb") as f:
                data = f.read(32)
            bodies = frame.decode_all(data)[0]
            v = cbor.loads(bodies[0]) if bodies else 0
        except (OSError, ValueError, IndexError):
            return 0  # missing or corrupt: start over (the gateway sees a counter restart)
        if not isinstance(v, int) or v < 0:
            return 0
        return v % self.wrap

    def _reserve(self, upto):
        # Persist "values below block `upto` may be used" before using them.
        tmp = self.path + ".tmp"
        try:
            with open(tmp, "wb") as f:
                f.write(frame.encode(cbor.dumps(upto % self.wrap)))
            try:
                os.rename(tmp, self.path)
            except OSError:  # a filesystem whose rename will not replace (FAT)
                os.remove(self.path)
                os.rename(tmp, self.path)
            self.writes += 1
        except OSError:
            self.errors += 1  # keep counting: after a reboot some values may repeat and be refused
        self.reserved = upto

    def value(self):
        """The next value as (high 16 bits, low 16 bits)."""
        b = self.bits
        if b == _HALF:
            return self.hi, self.lo
        return self.hi >> (_HALF - b), ((self.hi & ((1 << (_HALF - b)) - 1)) << b) | self.lo

    def next_bytes(self):
        """The next unused value as 4 little-endian bytes (the BTHome counter field)."""
        h, l = self.value()
        out = bytes((l & 0xFF, l >> 8, h & 0xFF, h >> 8))
        self.lo += 1
        if self.lo >> self.bits:
            self.lo = 0
            self.hi += 1
            if self.hi >= self.wrap:  # 2**32 values used: start over (a counted restart at the gateway)
                self.hi = 0
                self.reserved = 0
            if self.hi >= self.reserved:
                self._reserve(self.hi + 1)
        return out
