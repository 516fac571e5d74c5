# SenML packs: golden bytes, resolution rules of RFC 8428, validation; runs on CPython and MicroPython.
import struct
from binascii import hexlify

from shared import cbor, senml


def _f32(x):
    return struct.unpack("<f", struct.pack("<f", x))[0]


def test_pack_golden_bytes_and_base_fields_set_once_per_group():
    recs = [("temp", "Cel", 21.5, 1700000000), ("hum", "%RH", 40.0, 1700000000),
            ("temp", "Cel", 21.75, 1700000001)]
    b = senml.encode_pack("n1/", 1700000000, recs)
    # [{-2:"n1/temp", -3:1700000000, -4:"Cel", 2:21.5}, {6:1, 2:21.75}, {-2:"n1/hum", -4:"%RH", 2:40.0}]
    want = ("83"
            "a4" "02f94d60" "21676e312f74656d70" "221a6553f100" "236343656c"
            "a2" "02f94d70" "0601"
            "a3" "02f95100" "21666e312f68756d" "2363255248")
    assert hexlify(b).decode() == want, hexlify(b)


def test_roundtrip_resolves_names_units_times():
    # Sub-second epoch times exist only with doubles: a single-precision node keeps whole seconds.
    door_t = 1700000002 if cbor.F32 else 1700000002.5
    recs = [("temp", "Cel", _f32(21.37), 1700000000 + i) for i in range(3)]
    recs += [("door", None, True, door_t), ("temp", "Cel", _f32(21.37), 1700000003),
             ("fw", None, "1.2.3", 1700000003), ("temp", "Cel", _f32(21.37), 1700000004)]
    out = senml.decode_pack(senml.encode_pack("node7/", 1700000000, recs))
    assert len(out) == 7
    temps = [r for r in out if r[0] == "node7/temp"]
    assert temps[0] == ("node7/temp", "Cel", _f32(21.37), 1700000000)
    assert temps[4] == ("node7/temp", "Cel", _f32(21.37), 1700000004)
    assert ("node7/door", None, True, door_t) in out
    assert ("node7/fw", None, "1.2.3", 1700000003) in out


def test_epoch_times_travel_as_int_base_and_small_offsets_on_both_runtimes():
    recs = [("t", "Cel", 1.5, 1700000000 + i) for i in range(5)] + [("h", "%RH", 50.0, 1700000004)]
    pack = senml.build_pack("n/", 1700000000, recs)
    assert pack[0][senml.BT] == 1700000000 and isinstance(pack[0][senml.BT], int)
    assert [r.get(senml.T, 0) for r in pack] == [0, 1, 2, 3, 4, 4]
    out = senml.in_seq_order(senml.decode_pack(cbor.dumps(pack)))
    assert [r[3] for r in out] == [1700000000, 1700000001, 1700000002, 1700000003, 1700000004, 1700000004]
    assert all(isinstance(r[3], int) for r in out)


def test_float_epoch_time_is_refused_only_where_floats_cannot_hold_it():
    recs = [("t", None, 1.0, 1700000000), ("t", None, 2.0, 1700000001.0)]
    if not cbor.F32:
        assert senml.decode_pack(senml.encode_pack("n/", 1700000000, recs))[1][3] == 1700000001
        return
    try:
        senml.encode_pack("n/", 1700000000, recs)
    except ValueError as e:
        assert "single-precision" in str(e), e
    else:
        raise AssertionError("a float epoch time was packed on a float32 runtime")


def test_base_value_and_sum_and_names_resolve_per_rfc8428():
    pack = [{senml.BN: "dev/", senml.BT: 100, senml.BV: 10, senml.BU: "W", senml.N: "a", senml.V: 1.5},
            {senml.N: "b", senml.T: -2, senml.V: 2},
            {senml.N: "c", senml.U: "J", senml.S: 7}]
    assert senml.resolve(pack) == [("dev/a", "W", 11.5, 100), ("dev/b", "W", 12, 98), ("dev/c", "J", 7, 100)]


def test_float32_pack_is_compact():
    recs = []
    for i in range(25):
        recs.append(("t", "Cel", _f32(20.0 + i * 0.01), 1700000000 + i))
        recs.append(("h", "%RH", _f32(50.0 + i * 0.01), 1700000000 + i))
    b = senml.encode_pack("node01/", 1700000000, recs)
    assert len(b) <= 10 * 50, len(b)
    assert [r[2] for r in senml.decode_pack(b)][:2] == [recs[0][2], recs[2][2]]


BAD_PACKS = [
    ({}, "array"), ([], "empty"), ([1], "map"), ([{senml.N: "x"}], "without a value"),
    ([{senml.N: 5, senml.V: 1}], "text"), ([{senml.N: "x", senml.V: "1"}], "number"),
    ([{senml.N: "x", senml.V: True}], "number"), ([{senml.N: "x", senml.V: float("nan")}], "non-finite"),
    ([{senml.N: "x", senml.V: float("inf")}], "non-finite"), ([{senml.N: "x", senml.V: 1, senml.VS: "a"}], "more than one"),
    ([{senml.N: "", senml.V: 1}], "empty name"), ([{senml.N: "-x", senml.V: 1}], "bad name"),
    ([{senml.N: "a b", senml.V: 1}], "bad character"), ([{senml.N: "x", 99: 1, senml.V: 1}], "unknown label"),
    ([{senml.N: "x", senml.VB: 1}], "boolean"), ([{senml.N: "x", senml.VD: "s"}], "bytes"),
    ([{senml.N: "x", senml.V: 1, "must_": 1}], "unsupported label"), ([{senml.N: "x", senml.T: "1", senml.V: 1}], "number"),
    ([{senml.BVER: 99, senml.N: "x", senml.V: 1}], "version"),
]


def test_invalid_packs_raise_value_error_naming_the_problem():
    for pack, why in BAD_PACKS:
        try:
            senml.resolve(pack)
        except ValueError as e:
            if why not in str(e):
                raise AssertionError("%r: reason %r lacks %r" % (pack, str(e), why))
            continue
        raise AssertionError("accepted %r" % (pack,))


def test_unknown_text_labels_are_ignored_and_oversized_packs_refused():
    assert senml.resolve([{senml.N: "x", senml.V: 1, "note": "hi"}]) == [("x", None, 1, 0)]
    big = [{senml.N: "x", senml.V: 1}] * (senml.MAX_RECORDS + 1)
    try:
        senml.resolve(big)
        raise AssertionError("oversized pack accepted")
    except ValueError as e:
        assert "records" in str(e)


def test_decode_pack_rejects_malformed_cbor_with_value_error():
    b = senml.encode_pack("n/", 0, [("t", None, 1.0, 0)])
    for cut in range(len(b)):
        try:
            senml.decode_pack(b[:cut])
            raise AssertionError("truncated pack accepted at %d" % cut)
        except ValueError:
            pass
    assert cbor.loads(b)[0][senml.BN] == "n/t"


def _interleaved(n, t0=1700000000):
    out = []
    for i in range(n):
        out.append(("temp", "Cel", 20.0 + i, t0 + i))
        out.append(("hum", "%RH", 40.0 + i, t0 + i))
        out.append(("state", None, i % 2 == 0, t0 + i))
    return out


def test_seq_order_restored_from_grouped_pack():
    recs = _interleaved(10)
    got = senml.in_seq_order(senml.decode_pack(senml.encode_pack("n/", 1700000000, recs)))
    assert [(r[0], r[2], r[3]) for r in got] == [("n/" + r[0], r[2], r[3]) for r in recs]


def test_any_pack_boundaries_map_records_to_the_same_seqs():
    recs = _interleaved(8)
    for size in (1, 2, 3, 5, 7, 24):
        seqs = {}
        first = 0
        packs = 0
        while first < len(recs):
            chunk = recs[first:first + size]
            chunk = chunk[:senml.seq_prefix(chunk, chunk[0][3])]  # as the uplink cuts its packs
            out = senml.in_seq_order(senml.decode_pack(senml.encode_pack("n/", chunk[0][3], chunk)))
            for i, r in enumerate(out):
                seqs[first + i] = (r[0], r[2])
            first += len(chunk)
            packs += 1
        assert seqs == {i: ("n/" + r[0], r[2]) for i, r in enumerate(recs)}, size
        assert packs <= 2 * ((len(recs) + size - 1) // size), (size, packs)


def test_time_going_backwards_is_refused_and_prefix_says_where_to_cut():
    recs = _interleaved(3)
    jump = recs + [("temp", "Cel", 1.0, 1600000000)] + _interleaved(2)
    try:
        senml.build_pack("n/", 1700000000, jump)
        raise AssertionError("unrestorable order accepted")
    except ValueError as e:
        assert "time order" in str(e)
    k = senml.seq_prefix(jump, 1700000000)
    assert k == len(recs)
    senml.build_pack("n/", 1700000000, jump[:k])
    assert senml.seq_prefix(jump[k:], 1600000000) >= 1
    # names of one instant in another order than their groups: the pack must end before
    odd = [("b", None, 1, 5), ("a", None, 2, 6), ("b", None, 3, 6)]
    assert senml.seq_prefix(odd, 5) == 2
    odd2 = [("b", None, 1, 6), ("a", None, 2, 6), ("b", None, 3, 6)]
    assert senml.seq_prefix(odd2, 6) == 2


def test_unit_less_group_after_a_unit_group_has_no_unit():
    recs = [("temp", "Cel", 1.0, 10), ("ok", None, True, 10), ("temp", "Cel", 2.0, 11), ("ok", None, False, 11)]
    out = senml.in_seq_order(senml.decode_pack(senml.encode_pack("n/", 10, recs)))
    assert [(r[0], r[1], r[2], r[3]) for r in out] == [("n/" + a, u, v, t) for a, u, v, t in recs]
