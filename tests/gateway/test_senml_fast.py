"""fogline.gateway.ingest.senml_fast agrees with fogline.shared.senml (the one definition) on every pack it accepts."""

from __future__ import annotations

import math

import cbor2
from hypothesis import given, settings
from hypothesis import strategies as st

from fogline.gateway.ingest import validate
from fogline.gateway.ingest.senml_fast import resolve_columns
from fogline.shared import cbor, senml

_names = st.sampled_from(["n1/temp", "n1/hum", "n1/a.b-c:d_e", "", "n1/bad name", "-x", "n1/\u00e9"])
_nums = (st.integers(-2**64, 2**64) | st.floats(allow_nan=True, allow_infinity=True) | st.just(-0.0)
         | st.floats(-1e9, 1e9))
_any = _nums | st.booleans() | st.none() | st.text(max_size=4) | st.binary(max_size=3)
_label_values = {senml.BN: _names | _any, senml.BT: _nums | _any, senml.BU: st.sampled_from(["Cel", "", "%RH"]) | _any,
                 senml.V: _nums | _nums | _any, senml.T: _nums | _any}
_record = st.fixed_dictionaries({}, optional={**_label_values, senml.N: st.just("x"), senml.BV: _nums,
                                              senml.VS: st.just("s")})
_keys_odd = st.dictionaries(st.sampled_from([1.0, True, False, "x", "y_", 99, 2.0]), _nums, max_size=2)


def _reference(pack):
    try:
        return senml.in_seq_order(senml.resolve(pack, True))
    except ValueError:
        return "refused"


def _same(a, b) -> bool:
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) == math.copysign(1, b))
    return a == b


def _check(pack):
    fast = resolve_columns(pack)
    if fast is None:
        return False
    ref = _reference(pack)
    assert ref != "refused", pack
    got = list(zip(*fast))
    assert len(got) == len(ref)
    for g, r in zip(got, ref):
        assert all(_same(x, y) for x, y in zip(g, r)), (pack, g, r)
    return True


_fin = st.integers(-2**40, 2**40) | st.floats(-1e12, 1e12) | st.just(-0.0)
_valid_record = st.fixed_dictionaries({senml.V: _fin}, optional={
    senml.BN: st.sampled_from(["n1/temp", "n1/hum", "n1/a.b-c:d_e"]), senml.BT: _fin,
    senml.BU: st.sampled_from(["Cel", "", "%RH"]), senml.T: _fin})
_valid_pack = st.builds(lambda first, rest: [{senml.BN: "n1/t", **first}] + rest, _valid_record,
                        st.lists(_valid_record, max_size=10))


@settings(max_examples=500, deadline=None)
@given(pack=_valid_pack)
def test_valid_packs_of_the_firmware_labels_are_resolved_as_shared_senml_does(pack):
    assert _check(pack)


@settings(max_examples=1000, deadline=None)
@given(pack=_valid_pack, where=st.integers(0, 10), label=st.sampled_from(sorted(_label_values)), bad=_any,
       odd=st.lists(_keys_odd, max_size=1))
def test_a_perturbed_pack_is_resolved_as_shared_senml_does_or_left_to_it(pack, where, label, bad, odd):
    i = where % len(pack)
    pack[i] = {**pack[i], label: bad, **(odd[0] if odd else {})}
    _check(pack)


@settings(max_examples=1000, deadline=None)
@given(pack=st.lists(_record, min_size=1, max_size=8), odd=st.lists(_keys_odd, max_size=1))
def test_any_pack_the_fast_path_accepts_resolves_as_shared_senml_does(pack, odd):
    if odd:
        pack = [{**pack[0], **odd[0]}] + pack[1:]
    _check(pack)


@settings(max_examples=300, deadline=None)
@given(vals=st.lists(st.tuples(st.sampled_from(["temp", "hum", "p"]), st.floats(-1e6, 1e6, width=32),
                               st.integers(0, 50)), min_size=1, max_size=40))
def test_firmware_packs_take_the_fast_path(vals):
    t0 = 1_700_000_000
    recs = sorted([(m, "Cel" if m == "temp" else None, v, t0 + dt) for m, v, dt in vals], key=lambda r: r[3])
    k = senml.seq_prefix(recs, t0)
    pack = cbor2.loads(cbor.dumps(senml.build_pack("n1/", t0, recs[:k])))
    assert _check(pack)


def test_other_shapes_fall_back_to_shared_senml():
    for pack in ([], [{senml.BN: "n1/t", senml.VS: "x"}], [{senml.BN: "n1/t", senml.V: 1, senml.N: "x"}],
                 [{senml.BN: "n1/t", senml.V: math.nan}], [{senml.BN: "n1/t", senml.V: True}],
                 [{senml.BN: "n1/t", 2.0: 1.0}], [{senml.BN: "n1/t", senml.V: 1.0}, [1]], "x",
                 [{senml.BN: "bad name", senml.V: 1.0}], [{senml.V: 1.0}], [{senml.BN: "n1/t", senml.V: 1e308},
                                                                           {senml.V: 1e308}]):
        assert resolve_columns(pack) is None, pack


@settings(max_examples=600, deadline=None)
@given(pack=_valid_pack, where=st.integers(0, 10), label=st.sampled_from(sorted(_label_values)), bad=_any,
       perturb=st.booleans(), node=st.sampled_from(["n1", "n2"]))
def test_decode_uplink_fast_and_general_paths_agree(pack, where, label, bad, perturb, node):
    if perturb:
        i = where % len(pack)
        pack[i] = {**pack[i], label: bad}
    try:
        data = cbor2.dumps([5, pack])
    except Exception:
        return
    pol = validate.Policy(units=frozenset({"Cel"}), max_age_s=1e12, max_future_s=1e11)

    def run():
        try:
            m = validate.decode_uplink(node, "up", data, pol, 0.0)
        except validate.Rejected as e:
            return e.reason
        return [(r.seq, r.metric, r.unit, r.value, r.t) for r in m.readings], m.bad, m.records
    fast = run()
    real = validate.resolve_columns
    validate.resolve_columns = lambda p: None
    try:
        general = run()
    finally:
        validate.resolve_columns = real
    assert fast == general


@settings(max_examples=600, deadline=None)
@given(pack=_valid_pack, where=st.integers(0, 10), label=st.sampled_from(sorted(_label_values)), bad=_any)
def test_a_cached_pack_shape_never_accepts_what_shared_senml_refuses(pack, where, label, bad):
    # the shape (labels of each record) is cached by its first pack: a later pack of the same shape with a bad
    # value in any label is still resolved as shared senml does, or left to it
    assert _check(pack) and _check(pack)  # the second call runs from the cached shape
    i = where % len(pack)
    if label in pack[i]:
        _check([{**r, label: bad} if k == i else r for k, r in enumerate(pack)])


def test_a_cached_shape_does_not_take_labels_or_records_that_only_compare_equal():
    good = [{senml.BN: "n1/t", senml.BT: 10, senml.V: 1.0}, {senml.V: 2.0, senml.T: 1}]
    assert resolve_columns(good) is not None  # caches the shape ((bn, bt, v), (v, t))
    for pack in ([{senml.BN: "n1/t", senml.BT: 10, float(senml.V): 1.0}, {senml.V: 2.0, senml.T: 1}],
                 [{senml.BN: "n1/t", senml.BT: 10, senml.V: 1.0}, {senml.V: 2.0, float(senml.T): 1}],
                 [{senml.BN: "n1/t", senml.BT: 10, senml.V: 1.0}, [senml.V, senml.T]],
                 [{senml.BN: "n1/t", senml.BT: 10, senml.V: 1.0}, {senml.V: True, senml.T: 1}],
                 [{senml.BN: "n1/t", senml.BT: True, senml.V: 1.0}, {senml.V: 2.0, senml.T: 1}],
                 [{senml.BN: "n1/bad name", senml.BT: 10, senml.V: 1.0}, {senml.V: 2.0, senml.T: 1}],
                 [{senml.BN: "n1/t", senml.BT: 10, senml.V: 1.0}, {senml.V: math.inf, senml.T: 1}],
                 [{senml.BN: "n1/t", senml.BT: 10, senml.V: 1.0}, {senml.V: "2", senml.T: 1}],
                 [{senml.BN: "n1/t", senml.BT: 10, senml.V: 1.0}, 7]):
        assert resolve_columns(pack) is None, pack
    assert _check([{senml.BN: "n1/t", senml.BT: 10, senml.V: -0.0}, {senml.V: 0, senml.T: 1}])
