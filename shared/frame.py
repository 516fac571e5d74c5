"""Flash record frames: u16 length, u32 CRC-32 over length and body, body.

A reader walks a buffer frame by frame and stops at the first torn or corrupt
frame, reporting the offset, so a power cut mid-append loses only the
unfinished record and never yields garbage.
"""

import struct

try:
    from micropython import const
except ImportError:
    def const(x):
        return x

try:
    from binascii import crc32
except ImportError:  # pragma: no cover - ports without binascii.crc32
    crc32 = None

HEADER = const(6)
MAX_BODY = const(65535)

OK = const(0)
TORN = const(1)  # buffer ends inside a frame
CORRUPT = const(2)  # CRC mismatch or impossible length

if crc32 is None:
    _TABLE = None

    def crc32(data, crc=0):
        global _TABLE
        if _TABLE is None:
            from array import array
            _TABLE = array("I", [0] * 256)
            for i in range(256):
                c = i
                for _ in range(8):
                    c = (c >> 1) ^ 0xEDB88320 if c & 1 else c >> 1
                _TABLE[i] = c
        crc = crc ^ 0xFFFFFFFF
        for b in data:
            crc = _TABLE[(crc ^ b) & 0xFF] ^ (crc >> 8)
        return crc ^ 0xFFFFFFFF


def _crc(lenb, body):
    return crc32(body, crc32(lenb)) & 0xFFFFFFFF


def encode(body):
    """Return body framed for appending to a log."""
    n = len(body)
    if n == 0 or n > MAX_BODY:
        raise ValueError("frame: body length %d out of range 1..%d" % (n, MAX_BODY))
    lenb = struct.pack("<H", n)
    return lenb + struct.pack("<I", _crc(lenb, body)) + bytes(body)


class Scanner:
    """Iterate valid frame bodies in buf; afterwards .end and .status tell where and why it stopped."""

    def __init__(self, buf, pos=0):
        self.buf = memoryview(buf)
        self.end = pos
        self.status = OK

    def __iter__(self):
        return self

    def __next__(self):
        buf = self.buf
        pos = self.end
        n = len(buf)
        if pos == n:
            raise StopIteration
        if n - pos < HEADER:
            self.status = TORN
            raise StopIteration
        blen = buf[pos] | (buf[pos + 1] << 8)
        if blen == 0:
            self.status = CORRUPT
            raise StopIteration
        if pos + HEADER + blen > n:
            self.status = TORN
            raise StopIteration
        want = struct.unpack_from("<I", buf, pos + 2)[0]
        body = buf[pos + HEADER:pos + HEADER + blen]
        if _crc(buf[pos:pos + 2], body) != want:
            self.status = CORRUPT
            raise StopIteration
        self.end = pos + HEADER + blen
        return body


def decode_all(buf):
    """Return (bodies as bytes, end offset of the valid prefix, status)."""
    s = Scanner(buf)
    bodies = [bytes(b) for b in s]
    return bodies, s.end, s.status
