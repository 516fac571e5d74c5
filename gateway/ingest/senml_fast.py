"""The firmware's SenML pack shape resolved into columns with checks done per pack, not per record and label.

`resolve_columns(pack)` returns exactly what `fogline.shared.senml.in_seq_order(fogline.shared.senml.resolve(pack))`
would, as columns, for packs that use only the labels the firmware writes for numeric readings
(bn, bt, bu, v, t) with valid names and finite numbers. For anything else it returns None and the
caller runs `fogline.shared.senml.resolve`, which stays the one definition (and words the errors); a
hypothesis test checks the two agree.
"""

from __future__ import annotations

import math
from itertools import chain, repeat
from operator import add, itemgetter
from typing import Any

from fogline.shared import senml

_FAST_KEYS = frozenset((senml.BN, senml.BT, senml.BU, senml.V, senml.T))
_BN, _BT, _BU, _V, _T = senml.BN, senml.BT, senml.BU, senml.V, senml.T
_MISSING = object()
_INT_ONLY = {int}
_NUMBERS = frozenset((int, float))
_VT = frozenset((senml.V, senml.T))
_DICT_INT = {dict, int}
_NAMES_OK: set[str] = set()  # base names already checked (bounded below)
_NAMES_MAX = 4096
_SHAPES: dict[tuple[tuple[Any, ...], ...], "Plan | None"] = {}  # record label tuples -> groups (None: general path)
_SHAPES_MAX = 1024
_GET_V = itemgetter(_V)

Columns = tuple[list[str], list["str | None"], list[Any], list[Any]]


def _name_ok(name: str) -> bool:
    if name in _NAMES_OK:
        return True
    try:
        senml._check_name(name)
    except ValueError:
        return False
    if len(_NAMES_OK) >= _NAMES_MAX:
        _NAMES_OK.clear()
    _NAMES_OK.add(name)
    return True


def resolve_columns(pack: Any) -> Columns | None:
    """(names, units, values, times) in seq order (stable by time), or None: use fogline.shared.senml.resolve."""
    if type(pack) is not list or not pack or len(pack) > senml.MAX_RECORDS:
        return None
    n = len(pack)
    if n == 1:
        return _single(pack[0])
    try:  # one pass: every record a map, every label a real int (2.0 and True equal labels as dict keys)
        if set(map(type, chain(pack, chain.from_iterable(pack)))) != _DICT_INT:
            return None
    except TypeError:  # a record that is not iterable
        return None
    key = tuple(map(tuple, pack))  # the labels of each record: a firmware's packs repeat a few shapes
    plan = _SHAPES.get(key, _MISSING)
    if plan is _MISSING:
        plan = _plan(key)
    if plan is None:
        return None
    values = list(map(_GET_V, pack))  # every record has v (the plan says so)
    offs = list(map(dict.get, pack, repeat(_T), repeat(0)))
    if not _NUMBERS.issuperset(map(type, chain(values, offs))):
        return None  # a text or bool value (or offset): the general path decides
    bn: Any = ""
    bt: Any = 0
    bu: Any = None
    names: list[str] = []
    units: list[str | None] = []
    times: list[Any] = []
    for i, j, has_bn, has_bt, has_bu in plan:
        r = pack[i]
        if has_bn:
            bn = r[_BN]
            if type(bn) is not str or not _name_ok(bn):
                return None
        if has_bt:
            bt = r[_BT]
            if type(bt) is not int and type(bt) is not float:
                return None
        if has_bu:
            bu = r[_BU]
            if type(bu) is not str:
                return None
        if j - i == n:  # one group: no slices
            names = [bn] * n
            units = [bu or None] * n
            times = list(map(add, repeat(bt, n), offs))
        else:
            names += repeat(bn, j - i)
            units += repeat(bu or None, j - i)
            times += map(add, repeat(bt, j - i), offs[i:j])
    if 0.0 in values:  # as resolve: bv (0) + v, which only changes -0.0 (to 0.0)
        values = list(map(add, repeat(0, n), values))
    if not (math.isfinite(sum(values)) and math.isfinite(sum(times))):
        return None  # a NaN or infinity somewhere (or a sum that overflows): the general path decides
    if times != sorted(times):
        order = sorted(range(n), key=times.__getitem__)  # stable: ties keep pack order
        names = [names[i] for i in order]
        units = [units[i] for i in order]
        values = [values[i] for i in order]
        times = [times[i] for i in order]
    return names, units, values, times


Plan = tuple[tuple[int, int, bool, bool, bool], ...]  # groups: (first, end, sets bn, sets bt, sets bu)


def _plan(key: tuple[tuple[Any, ...], ...]) -> Plan | None:
    """The groups of a pack shape (labels of each record), or None if it is not the fast shape; cached."""
    plan: Plan | None = None
    # only real int labels, each record with v, the first setting the base name (a later group may set bt/bu only)
    if (set(map(type, chain.from_iterable(key))) == _INT_ONLY and _FAST_KEYS.issuperset(chain.from_iterable(key))
            and all(_V in r for r in key) and _BN in key[0]):
        starts = [i for i, r in enumerate(key) if not _VT.issuperset(r)]
        ends = starts[1:] + [len(key)]
        plan = tuple((i, j, _BN in key[i], _BT in key[i], _BU in key[i]) for i, j in zip(starts, ends))
    if len(_SHAPES) >= _SHAPES_MAX:  # bounded: a sender inventing shapes must not grow it
        _SHAPES.clear()
    _SHAPES[key] = plan
    return plan


def _single(rec: Any) -> Columns | None:
    """A one-record pack (a single reading or an alert) without the column passes."""
    if type(rec) is not dict or not rec.keys() <= _FAST_KEYS:
        return None
    for k in rec:
        if type(k) is not int:
            return None  # True/False/2.0 compare equal to labels: only real ints are labels
    bn = rec.get(_BN, _MISSING)
    if type(bn) is not str or not bn or not _name_ok(bn):
        return None
    bt = rec.get(_BT, 0)
    bu = rec.get(_BU, _MISSING)
    v = rec.get(_V, _MISSING)
    t = rec.get(_T, 0)
    for x in (bt, v, t):
        if type(x) is not int and type(x) is not float:
            return None
    if bu is _MISSING:
        bu = None
    elif type(bu) is not str:
        return None
    v = 0 + v
    t = bt + t
    if not (math.isfinite(v) and math.isfinite(t)):
        return None
    return [bn], [bu or None], [v], [t]
