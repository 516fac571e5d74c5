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

import sys

HEADER = const(6)
MAX_BODY = const(65535)

OK = const(0)
TORN = const(1)  # buffer ends inside a frame
CORRUPT = const(2)  # CRC mismatch or impossible length

# A CRC-32 above 2**30 is a heap-allocated long int on a 32-bit board (binascii.crc32 returns one,
# and so does every mask or compare of it), so MicroPython computes it in two 16-bit halves held in
# a preallocated array and compares the stored bytes: framing a record or checking one allocates no
# int. CPython (gateway tools) uses binascii.
_CPY = sys.implementation.name == "cpython"
_T = None  # table: _T[i] = low 16 bits, _T[256 + i] = high 16 bits of the CRC-32 table entry i
_S = None  # running CRC: [low half, high half]


def _table():
    global _T, _S
    from array import array
    t = array("H", bytes(1024))
    for i in range(256):
        lo, hi = i, 0
        for _ in range(8):
            odd = lo & 1
            lo = (lo >> 1) | ((hi & 1) << 15)
            hi >>= 1
            if odd:  # polynomial 0xEDB88320
                lo ^= 0x8320
                hi ^= 0xEDB8
        t[i] = lo
        t[256 + i] = hi
    _S = array("H", bytes(4))
    _T = t


def _update(buf, start, end):
    t = _T
    s = _S
    lo = s[0]
    hi = s[1]
    for i in range(start, end):
        k = (lo ^ buf[i]) & 0xFF
        lo = ((lo >> 8) | ((hi & 0xFF) << 8)) ^ t[k]
        hi = (hi >> 8) ^ t[256 + k]
    s[0] = lo
    s[1] = hi


if not _CPY:
    _table()  # at import: 1 KiB that is part of the firmware's fixed live set, not a later surprise


def _crc_halves(lenb, lpos, body, bstart, bend):
    # CRC-32 over lenb[lpos:lpos + 2] then body[bstart:bend], left in _S as (low, high) complemented.
    _S[0] = 0xFFFF
    _S[1] = 0xFFFF
    _update(lenb, lpos, lpos + 2)
    _update(body, bstart, bend)
    _S[0] ^= 0xFFFF
    _S[1] ^= 0xFFFF


def _put_crc(out, n):
    """Write the CRC (LE) of out[0:2] (length) + out[HEADER:HEADER + n] (body) at out[2:6]."""
    if _CPY:
        from binascii import crc32
        out[2:6] = struct.pack("<I", crc32(out[HEADER:HEADER + n], crc32(out[0:2])) & 0xFFFFFFFF)
        return
    _crc_halves(out, 0, out, HEADER, HEADER + n)
    lo = _S[0]
    hi = _S[1]
    out[2] = lo & 0xFF
    out[3] = lo >> 8
    out[4] = hi & 0xFF
    out[5] = hi >> 8


def _crc_ok(buf, pos, blen):
    """True if the frame at buf[pos] (length blen) carries the right CRC."""
    if _CPY:
        from binascii import crc32
        want = struct.unpack_from("<I", buf, pos + 2)[0]
        body = buf[pos + HEADER:pos + HEADER + blen]
        return crc32(body, crc32(buf[pos:pos + 2])) & 0xFFFFFFFF == want
    _crc_halves(buf, pos, buf, pos + HEADER, pos + HEADER + blen)
    lo = _S[0]
    hi = _S[1]
    return (buf[pos + 2] == lo & 0xFF and buf[pos + 3] == lo >> 8
            and buf[pos + 4] == hi & 0xFF and buf[pos + 5] == hi >> 8)


def encode(body):
    """Return body framed for appending to a log."""
    n = len(body)
    if n == 0 or n > MAX_BODY:
        raise ValueError("frame: body length %d out of range 1..%d" % (n, MAX_BODY))
    out = bytearray(HEADER + n)
    out[0] = n & 0xFF
    out[1] = n >> 8
    out[HEADER:] = body
    _put_crc(out, n)
    return bytes(out)


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
        if not _crc_ok(buf, pos, blen):
            self.status = CORRUPT
            raise StopIteration
        self.end = pos + HEADER + blen
        return buf[pos + HEADER:pos + HEADER + blen]


def decode_all(buf):
    """Return (bodies as bytes, end offset of the valid prefix, status)."""
    s = Scanner(buf)
    bodies = [bytes(b) for b in s]
    return bodies, s.end, s.status
