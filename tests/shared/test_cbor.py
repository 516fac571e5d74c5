# RFC 8949 Appendix A vectors and error handling; runs on CPython and MicroPython.
from binascii import hexlify, unhexlify

from shared import cbor

INF = float("inf")
NAN = float("nan")
SEQ25 = list(range(1, 26))
S_10151 = b"\xf0\x90\x85\x91".decode()

# (value, canonical hex): decode must give value and encode must give hex
CANONICAL = [
    (0, "00"), (1, "01"), (10, "0a"), (23, "17"), (24, "1818"), (25, "1819"), (100, "1864"),
    (1000, "1903e8"), (1000000, "1a000f4240"), (1000000000000, "1b000000e8d4a51000"),
    (18446744073709551615, "1bffffffffffffffff"), (-18446744073709551616, "3bffffffffffffffff"),
    (-1, "20"), (-10, "29"), (-100, "3863"), (-1000, "3903e7"),
    (0.0, "f90000"), (-0.0, "f98000"), (1.0, "f93c00"), (1.5, "f93e00"),
    (65504.0, "f97bff"), (100000.0, "fa47c35000"), (3.4028234663852886e38, "fa7f7fffff"),
    # 2**-24 and 2**-14 as powers: a single-precision port parses the decimal literal 1 ulp off
    (2.0 ** -24, "f90001"), (2.0 ** -14, "f90400"),
    (-4.0, "f9c400"), (INF, "f97c00"), (NAN, "f97e00"), (-INF, "f9fc00"),
    (False, "f4"), (True, "f5"), (None, "f6"),
    (b"", "40"), (b"\x01\x02\x03\x04", "4401020304"), ("", "60"), ("a", "6161"), ("IETF", "6449455446"),
    ("\"\\", "62225c"), ("\u00fc", "62c3bc"), ("\u6c34", "63e6b0b4"), (S_10151, "64f0908591"),
    ([], "80"), ([1, 2, 3], "83010203"), ([1, [2, 3], [4, 5]], "8301820203820405"),
    (SEQ25, "98190102030405060708090a0b0c0d0e0f101112131415161718181819"),
    ({}, "a0"), ({1: 2, 3: 4}, "a201020304"), ({"a": 1, "b": [2, 3]}, "a26161016162820203"),
    (["a", {"b": "c"}], "826161a161626163"),
    ({"a": "A", "b": "B", "c": "C", "d": "D", "e": "E"}, "a56161614161626142616361436164614461656145"),
]

# RFC 8949 float64 vectors: (value, hex, float32 hex on a single-precision runtime or None = ValueError).
# There a float64 decodes to the nearest float32 and re-encodes as that float32; out of range is refused.
F64 = [(1.1, "fb3ff199999999999a", "3f8ccccd"), (-4.1, "fbc010666666666666", "c0833333"),
       (1.0e300, "fb7e37e43c8800759c", None), (-1.0e300, "fbfe37e43c8800759c", None),
       (1.0 + 2.0 ** -24, "fb3ff0000010000000", "3f800000"),  # a tie rounds to even
       (2.0 ** -150, "fb3690000000000000", "00000000")]

# (value, hex) that decode to value but are not the canonical encoding
DECODE_ONLY = [
    (INF, "fa7f800000"), (NAN, "fa7fc00000"), (-INF, "faff800000"),
    (INF, "fb7ff0000000000000"), (NAN, "fb7ff8000000000000"), (-INF, "fbfff0000000000000"),
    (b"\x01\x02\x03\x04\x05", "5f42010243030405ff"), ("streaming", "7f657374726561646d696e67ff"),
    ([], "9fff"), ([1, [2, 3], [4, 5]], "9f018202039f0405ffff"), ([1, [2, 3], [4, 5]], "9f01820203820405ff"),
    ([1, [2, 3], [4, 5]], "83018202039f0405ff"), ([1, [2, 3], [4, 5]], "83019f0203ff820405"),
    (SEQ25, "9f0102030405060708090a0b0c0d0e0f101112131415161718181819ff"),
    ({"a": 1, "b": [2, 3]}, "bf61610161629f0203ffff"), (["a", {"b": "c"}], "826161bf61626163ff"),
    ({"Fun": True, "Amt": -2}, "bf6346756ef563416d7421ff"),
]

# Appendix A items outside our subset, and malformed input: ValueError only
REJECTED = [
    "f7", "f0", "f8ff", "c074323031332d30332d32315432303a30343a30305a", "c11a514b67b0",
    "c249010000000000000000", "d74401020304", "d818456449455446",
    "", "18", "19ff", "1a0000", "1b00000000000000", "5f", "5f41", "7f6161", "9f", "9f01", "bf", "bf6161",
    "ff", "1c", "3f", "5c", "62c3", "62ffff", "a1", "a1800102", "a2010201ff", "5f6161ff",
    "62c1b1", "63eda080", "64f4908080", "62c0af", "63e08080",
    "9b7fffffffffffffff", "bb7fffffffffffffff", "5bffffffffffffffff00", "0000", "f818",
]


def _same(a, b):
    if isinstance(a, float) and isinstance(b, float):
        if a != a:
            return b != b
        return a == b and str(a)[0] == str(b)[0]  # -0.0 vs 0.0 differ in sign
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return sorted(a.keys(), key=repr) == sorted(b.keys(), key=repr) and all(_same(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


def test_rfc8949_vectors_decode():
    for value, hx in CANONICAL + DECODE_ONLY:
        got = cbor.loads(unhexlify(hx))
        if not _same(got, value):
            raise AssertionError("%s decoded to %r, want %r" % (hx, got, value))


def test_rfc8949_vectors_encode_canonical():
    for value, hx in CANONICAL:
        got = hexlify(cbor.dumps(value)).decode()
        if got != hx:
            raise AssertionError("%r encoded to %s, want %s" % (value, got, hx))


def test_float64_on_the_wire_follows_the_runtimes_float_width():
    import struct
    for value, hx, f32hx in F64:
        if not cbor.F32:
            assert _same(cbor.loads(unhexlify(hx)), value), hx
            assert hexlify(cbor.dumps(value)).decode() == hx, value
            continue
        if f32hx is None:
            try:
                cbor.loads(unhexlify(hx))
            except ValueError as e:
                assert "float32 range" in str(e), e
            else:
                raise AssertionError("%s decoded on a float32 runtime" % hx)
            continue
        got = cbor.loads(unhexlify(hx))
        assert _same(got, struct.unpack(">f", unhexlify(f32hx))[0]), (hx, got)
        again = cbor.dumps(got)  # the shortest exact form of that float32: never a float64 again
        assert again[0] in (0xF9, 0xFA) and _same(cbor.loads(again), got), (hx, again)


def test_rejected_inputs_raise_value_error_with_reason():
    for hx in REJECTED:
        try:
            cbor.loads(unhexlify(hx))
        except ValueError as e:
            if not str(e).startswith("cbor: "):
                raise AssertionError("%s: reason missing: %s" % (hx, e))
            continue
        raise AssertionError("%s was accepted" % hx)


def test_depth_is_bounded_both_ways():
    deep = b"\x81" * (cbor.MAX_DEPTH + 1) + b"\x00"
    try:
        cbor.loads(deep)
        raise AssertionError("over-deep input accepted")
    except ValueError:
        pass
    ok = b"\x81" * cbor.MAX_DEPTH + b"\x00"
    v = cbor.loads(ok)
    for _ in range(cbor.MAX_DEPTH):
        v = v[0]
    assert v == 0
    nested = 0
    for _ in range(cbor.MAX_DEPTH + 2):
        nested = [nested]
    try:
        cbor.dumps(nested)
        raise AssertionError("over-deep value encoded")
    except ValueError:
        pass


def test_huge_declared_lengths_fail_fast():
    for hx in ("9bffffffffffffffff", "bbffffffffffffffff", "5bffffffffffffffff", "7a7fffffff61"):
        try:
            cbor.loads(unhexlify(hx))
            raise AssertionError(hx + " accepted")
        except ValueError:
            pass


def test_unencodable_values_raise_value_error():
    for bad in (1 << 64, -(1 << 64) - 1, object(), {1, 2}):
        try:
            cbor.dumps(bad)
            raise AssertionError("encoded %r" % (bad,))
        except ValueError:
            pass


def test_float32_values_pick_single_precision():
    import struct
    x = struct.unpack("<f", struct.pack("<f", 21.37))[0]
    b = cbor.dumps(x)
    assert len(b) == 5 and b[0] == 0xFA
    assert cbor.loads(b) == x


def test_map_keys_in_canonical_order():
    # length-first: 1-byte keys (ints 0..23, then negatives) before longer ones
    b = cbor.dumps({"aa": 0, 100: 0, -1: 0, 0: 0, "a": 0})
    assert hexlify(b).decode() == "a5" + "0000" + "2000" + "186400" + "616100" + "62616100"
