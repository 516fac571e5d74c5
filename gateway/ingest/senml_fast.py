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
from typing import Any

from fogline.shared import senml

_FAST_KEYS = frozenset((senml.BN, senml.BT, senml.BU, senml.V, senml.T))
_BN, _BT, _BU, _V, _T = senml.BN, senml.BT, senml.BU, senml.V, senml.T
_MISSING = object()
_INT_ONLY = {int}
_NUMBERS = frozenset((int, float))
_VT = frozenset((senml.V, senml.T))
_DICT_ONLY = {dict}
_NAMES_OK: set[str] = set()  # base names already checked (bounded below)
_NAMES_MAX = 4096

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
    if len(pack) == 1:
        return _single(pack[0])
    if set(map(type, pack)) != _DICT_ONLY or set(map(type, chain.from_iterable(pack))) != _INT_ONLY:
        return None  # a record that is not a map, or a label that is not an int (bool/float/text keys)
    if not all(map(_FAST_KEYS.issuperset, pack)):
        return None
    # column passes in C where possible: values and offsets of every record, then the few records that
    # set a base field (the start of each name group) in Python
    values = [r.get(_V, _MISSING) for r in pack]
    offs = [r.get(_T, 0) for r in pack]
    if not _NUMBERS.issuperset(map(type, values)) or not _NUMBERS.issuperset(map(type, offs)):
        return None  # a missing, text or bool value (or offset): the general path decides
    n = len(pack)
    starts = [i for i, r in enumerate(pack) if not _VT.issuperset(r)]
    if not starts or starts[0] != 0:
        return None  # the first record must set the base name
    names: list[str] = []
    units: list[str | None] = []
    times: list[Any] = []
    bn: Any = ""
    bt: Any = 0
    bu: Any = None
    starts.append(n)
    for k in range(len(starts) - 1):
        i, j = starts[k], starts[k + 1]
        g = pack[i].get
        x = g(_BN, _MISSING)
        if x is not _MISSING:
            if type(x) is not str or not _name_ok(x):
                return None
            bn = x
        x = g(_BT, _MISSING)
        if x is not _MISSING:
            if type(x) is not int and type(x) is not float:
                return None
            bt = x
        x = g(_BU, _MISSING)
        if x is not _MISSING:
            if type(x) is not str:
                return None
            bu = x
        if not bn:
            return None
        names += repeat(bn, j - i)
        units += repeat(bu or None, j - i)
        times += [bt + t for t in offs[i:j]]
    values = [0 + v for v in values]  # as resolve: bv (0) + v
    if not (math.isfinite(sum(values)) and math.isfinite(sum(times))):
        return None  # a NaN or infinity somewhere (or a sum that overflows): the general path decides
    if times != sorted(times):
        order = sorted(range(n), key=times.__getitem__)  # stable: ties keep pack order
        names = [names[i] for i in order]
        units = [units[i] for i in order]
        values = [values[i] for i in order]
        times = [times[i] for i in order]
    return names, units, values, times


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
