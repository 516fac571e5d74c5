"""CBOR (RFC 8949) for the subset Fogline uses; runs on MicroPython and CPython.

Encodes ints (to 64 bit), bytes, text, lists/tuples, dicts, bool, None and
floats in their shortest exact form (half, single or double), with map keys
in canonical (length-first) order, byte-identical to cbor2's canonical mode.
Decoding accepts definite and indefinite lengths; anything malformed,
truncated, too deep or outside the subset raises ValueError.

Single-precision runtimes (ESP32, RP2040; `F32` is True there): a float is a
float32, so the encoder never emits a float64. A float64 on the wire decodes to
the nearest float32 (IEEE round-to-nearest-even, as the C cast does); a finite
float64 beyond the float32 range raises ValueError instead of becoming inf,
and inf/NaN stay inf/NaN. Half and single floats decode exactly everywhere.
"""

import math
import struct
import sys

try:
    from micropython import const
except ImportError:  # CPython
    def const(x):
        return x

MAX_DEPTH = const(16)
_U64 = const(0xFFFFFFFFFFFFFFFF)
# True where floats are single precision; CPython tests set it to replay a board's decoding.
F32 = float(16777217) == 16777216.0


def _half_bits(v):
    """IEEE half bits of v if v is exactly a half (v finite, not NaN), else None."""
    # By hand: MicroPython's struct "e" mis-rounds subnormal halves, and some ports lack it.
    if v == 0.0:
        return 0x8000 if str(v)[0] == "-" else 0
    sign = 0
    if v < 0:
        sign = 0x8000
        v = -v
    if v == float("inf"):
        return sign | 0x7C00
    m, e = math.frexp(v)  # v = m * 2**e, 0.5 <= m < 1
    exp = e - 1
    if exp > 15:
        return None
    if exp >= -14:
        mant = v * 2.0 ** (10 - exp)
        if mant != int(mant):
            return None
        return sign | ((exp + 15) << 10) | (int(mant) - 1024)
    mant = v * 16777216.0  # 2**24: subnormal step
    if mant != int(mant) or mant >= 1024:
        return None
    return sign | int(mant)


def _head(out, major, n):
    mt = major << 5
    if n < 24:
        out.append(mt | n)
    elif n < 0x100:
        out.append(mt | 24)
        out.append(n)
    elif n < 0x10000:
        out.append(mt | 25)
        out.extend(struct.pack(">H", n))
    elif n < 0x100000000:
        out.append(mt | 26)
        out.extend(struct.pack(">I", n))
    else:
        out.append(mt | 27)
        out.extend(struct.pack(">Q", n))


def _float(out, v):
    if v != v:  # NaN: canonical quiet NaN, as cbor2 canonical does
        out.extend(b"\xf9\x7e\x00")
        return
    h = _half_bits(v)
    if h is not None:
        out.append(0xF9)
        out.append(h >> 8)
        out.append(h & 0xFF)
        return
    try:
        b = struct.pack(">f", v)
        if struct.unpack(">f", b)[0] == v:
            out.append(0xFA)
            out.extend(b)
            return
    except (OverflowError, ValueError):
        pass
    out.append(0xFB)
    out.extend(struct.pack(">d", v))


def encode_into(out, obj, depth=0):
    """Append the CBOR encoding of obj to bytearray out."""
    if depth > MAX_DEPTH:
        raise ValueError("cbor: nesting deeper than %d" % MAX_DEPTH)
    if obj is None:
        out.append(0xF6)
    elif obj is True:
        out.append(0xF5)
    elif obj is False:
        out.append(0xF4)
    elif isinstance(obj, int):
        if obj >= 0:
            if obj > _U64:
                raise ValueError("cbor: int too large")
            _head(out, 0, obj)
        else:
            n = -1 - obj
            if n > _U64:
                raise ValueError("cbor: int too small")
            _head(out, 1, n)
    elif isinstance(obj, float):
        _float(out, obj)
    elif isinstance(obj, str):
        b = obj.encode()
        _head(out, 3, len(b))
        out.extend(b)
    elif isinstance(obj, (bytes, bytearray, memoryview)):
        _head(out, 2, len(obj))
        out.extend(obj)
    elif isinstance(obj, (list, tuple)):
        _head(out, 4, len(obj))
        for item in obj:
            encode_into(out, item, depth + 1)
    elif isinstance(obj, dict):
        _head(out, 5, len(obj))
        items = []
        for k, v in obj.items():
            kb = bytearray()
            encode_into(kb, k, depth + 1)
            items.append((len(kb), bytes(kb), v))
        items.sort(key=_key_order)
        for _, kb, v in items:
            out.extend(kb)
            encode_into(out, v, depth + 1)
    else:
        raise ValueError("cbor: cannot encode %s" % type(obj).__name__)


def _key_order(item):
    return (item[0], item[1])


def dumps(obj):
    """Encode obj as canonical CBOR bytes."""
    out = bytearray()
    encode_into(out, obj)
    return bytes(out)


class _Reader:
    def __init__(self, data):
        self.b = data
        self.i = 0
        self.n = len(data)

    def take(self, k):
        i = self.i
        j = i + k
        if j > self.n:
            raise ValueError("cbor: truncated at byte %d" % i)
        self.i = j
        return self.b[i:j]

    def byte(self):
        i = self.i
        if i >= self.n:
            raise ValueError("cbor: truncated at byte %d" % i)
        self.i = i + 1
        return self.b[i]

    def arg(self, info):
        if info < 24:
            return info
        if info == 24:
            return self.byte()
        if info == 25:
            return struct.unpack(">H", self.take(2))[0]
        if info == 26:
            return struct.unpack(">I", self.take(4))[0]
        if info == 27:
            return struct.unpack(">Q", self.take(8))[0]
        raise ValueError("cbor: reserved additional info %d at byte %d" % (info, self.i - 1))

    def item(self, depth):
        if depth > MAX_DEPTH:
            raise ValueError("cbor: nesting deeper than %d" % MAX_DEPTH)
        ib = self.byte()
        major = ib >> 5
        info = ib & 0x1F
        if major == 7:
            return self.simple(info)
        if info == 31:
            return self.indefinite(major, depth)
        n = self.arg(info)
        if major == 0:
            return n
        if major == 1:
            return -1 - n
        if major == 2:
            return bytes(self.take(n))
        if major == 3:
            return _text(self.take(n))
        if major == 4:
            if n > self.n - self.i:  # each item needs at least one byte
                raise ValueError("cbor: array length %d exceeds input" % n)
            return [self.item(depth + 1) for _ in range(n)]
        if major == 5:
            if 2 * n > self.n - self.i:
                raise ValueError("cbor: map length %d exceeds input" % n)
            d = {}
            for _ in range(n):
                self.pair(d, depth)
            return d
        raise ValueError("cbor: tags are not supported (tag %d)" % n)

    def pair(self, d, depth):
        k = self.item(depth + 1)
        if isinstance(k, (list, dict)):
            raise ValueError("cbor: unhashable map key")
        if k in d:
            raise ValueError("cbor: duplicate map key")
        d[k] = self.item(depth + 1)

    def simple(self, info):
        if info == 20:
            return False
        if info == 21:
            return True
        if info == 22:
            return None
        if info == 25:
            return _half(self.take(2))
        if info == 26:
            return struct.unpack(">f", self.take(4))[0]
        if info == 27:
            return _double(self.take(8))
        if info == 31:
            raise ValueError("cbor: unexpected break at byte %d" % (self.i - 1))
        raise ValueError("cbor: unsupported simple value %d" % info)

    def at_break(self):
        if self.i >= self.n:
            raise ValueError("cbor: truncated at byte %d" % self.i)
        if self.b[self.i] == 0xFF:
            self.i += 1
            return True
        return False

    def indefinite(self, major, depth):
        if major in (2, 3):
            parts = []
            while not self.at_break():
                ib = self.byte()
                if ib >> 5 != major or ib & 0x1F == 31:
                    raise ValueError("cbor: bad chunk in indefinite string")
                parts.append(bytes(self.take(self.arg(ib & 0x1F))))
            b = b"".join(parts)
            return b if major == 2 else _text(b)
        if major == 4:
            out = []
            while not self.at_break():
                out.append(self.item(depth + 1))
            return out
        if major == 5:
            d = {}
            while not self.at_break():
                self.pair(d, depth)
            return d
        raise ValueError("cbor: indefinite length not allowed for major type %d" % major)


def _text(b):
    b = bytes(b)
    if _LAX_UTF8 and not _utf8_ok(b):
        raise ValueError("cbor: invalid UTF-8 in text string")
    try:
        return str(b, "utf-8")
    except (UnicodeError, ValueError):
        raise ValueError("cbor: invalid UTF-8 in text string")


# MicroPython's str() accepts overlong forms and surrogates; CPython's does not. Check by hand there
# so both runtimes accept exactly the same inputs (RFC 3629 well-formed UTF-8 only).
_LAX_UTF8 = sys.implementation.name != "cpython"


def _utf8_ok(b):
    i = 0
    n = len(b)
    while i < n:
        c = b[i]
        if c < 0x80:
            i += 1
            continue
        if 0xC2 <= c <= 0xDF:
            need, lo, hi = 1, 0x80, 0xBF
        elif c == 0xE0:
            need, lo, hi = 2, 0xA0, 0xBF
        elif c == 0xED:
            need, lo, hi = 2, 0x80, 0x9F
        elif 0xE1 <= c <= 0xEF:
            need, lo, hi = 2, 0x80, 0xBF
        elif c == 0xF0:
            need, lo, hi = 3, 0x90, 0xBF
        elif 0xF1 <= c <= 0xF3:
            need, lo, hi = 3, 0x80, 0xBF
        elif c == 0xF4:
            need, lo, hi = 3, 0x80, 0x8F
        else:
            return False
        if i + need >= n:
            return False
        if not lo <= b[i + 1] <= hi:
            return False
        for j in range(i + 2, i + need + 1):
            if not 0x80 <= b[j] <= 0xBF:
                return False
        i += need + 1
    return True


def _half(b):
    h = (b[0] << 8) | b[1]
    exp = (h >> 10) & 0x1F
    mant = h & 0x3FF
    if exp == 0:
        val = mant * 2.0 ** -24
    elif exp == 31:
        val = float("nan") if mant else float("inf")
    else:
        val = (mant + 1024) * 2.0 ** (exp - 25)
    return -val if h & 0x8000 else val


def _double(b):
    v = struct.unpack(">d", b)[0]
    if not F32:
        return v
    if (b[0] & 0x7F) == 0x7F and b[1] >= 0xF0:  # inf or NaN: no range to check
        return v
    try:
        v = struct.unpack(">f", struct.pack(">f", v))[0]  # the nearest float32 (CPython replaying a board)
    except OverflowError:
        v = float("inf")
    if v == float("inf") or v == float("-inf"):
        raise ValueError("cbor: float64 out of float32 range")
    return v


def loads(data):
    """Decode one CBOR item that must span all of data; ValueError on anything else."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ValueError("cbor: input must be bytes")
    r = _Reader(data)
    try:
        obj = r.item(0)
    except (IndexError, TypeError, KeyError, OverflowError, MemoryError, RuntimeError) as e:
        raise ValueError("cbor: malformed input (%s)" % e.__class__.__name__)
    if r.i != r.n:
        raise ValueError("cbor: %d trailing bytes" % (r.n - r.i))
    return obj
