"""SenML (RFC 8428) packs in CBOR with integer labels: encode, decode, resolve.

A record is a tuple (name, unit, value, time) with absolute time in seconds.
Packs group records by name: the first record of each group sets the base
name (and base unit), which RFC 8428 applies to all following records until
changed, so later records carry only time and value.

Times: the base time travels as an integer (seconds) and each record's `t` as
a small offset from it, so the seq rule below is exact on single-precision
runtimes too. There a float cannot hold epoch seconds (its spacing near 1.7e9
is 128 s): nodes keep integer seconds, and `build_pack` refuses a float time
of epoch size on such a runtime instead of silently reordering records.
Epoch seconds are also above a 32-bit board's small-int range (2**30), so a
node counts seconds from NODE_EPOCH (2020-01-01 UTC; small ints until 2054)
and passes `epoch=NODE_EPOCH`: the pack adds it once, to the base time.

Seq rule for `up`/`alert` packs: record order is a stable sort of the resolved
records by time (`in_seq_order`). `build_pack` refuses input that this rule
could not restore; `seq_prefix` says how much of a list can go in one pack.
"""

from . import cbor

try:
    from micropython import const
except ImportError:
    def const(x):
        return x

BVER = const(-1)
BN = const(-2)
BT = const(-3)
BU = const(-4)
BV = const(-5)
BS = const(-6)
N = const(0)
U = const(1)
V = const(2)
VS = const(3)
VB = const(4)
S = const(5)
T = const(6)
UT = const(7)
VD = const(8)

_STR_LABELS = (BN, BU, N, U, VS)
_NUM_LABELS = (BT, BV, BS, V, S, T, UT)
_KNOWN = (BVER, BN, BT, BU, BV, BS, N, U, V, VS, VB, S, T, UT, VD)
_VALUE_LABELS = (V, VS, VB, VD)
_NAME_FIRST = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
_NAME_REST = _NAME_FIRST + "-:./_"
MAX_RECORDS = const(1024)
NODE_EPOCH = 1577836800  # 2020-01-01T00:00:00Z in Unix seconds
_F32_EXACT = 16777216.0  # 2**24: beyond this a float32 no longer holds whole seconds
# Metric name of the placeholder a node sends (value: the raw bytes) for a record it cannot read back
# from flash: the seq stays in place, the gateway dead-letters it alone.
BAD_RECORD = "fogline_bad_record"


def _num(x):
    # Integral times travel as CBOR ints (1-3 bytes instead of a float).
    if isinstance(x, float) and x == int(x) and -4294967296.0 < x < 4294967296.0:
        return int(x)
    return x


def _value_field(rec, value):
    if value is True or value is False:
        rec[VB] = value
    elif isinstance(value, (int, float)):
        rec[V] = value
    elif isinstance(value, str):
        rec[VS] = value
    elif isinstance(value, (bytes, bytearray)):
        rec[VD] = bytes(value)
    else:
        raise ValueError("senml: unsupported value type %s" % type(value).__name__)


def _pack_order(records):
    # Indices of records in pack order: grouped by name, groups in order of first appearance.
    order = []
    groups = {}
    for i in range(len(records)):
        name = records[i][0]
        g = groups.get(name)
        if g is None:
            g = groups[name] = []
            order.append(name)
        g.append(i)
    out = []
    for name in order:
        out.extend(groups[name])
    return out


def _check_times(records, base_time):
    if not cbor.F32:
        return
    for i in range(-1, len(records)):
        t = base_time if i < 0 else records[i][3]
        if isinstance(t, float) and not -_F32_EXACT < t < _F32_EXACT:
            raise ValueError("senml: float time %r on a single-precision runtime; use integer seconds" % t)


def _restorable(records, base_time):
    # Replays the decoder: resolved times are bt + t exactly as they travel on the wire.
    po = _pack_order(records)
    bt = _num(base_time)
    pos = sorted(range(len(po)), key=lambda p: (bt + _num(records[po[p]][3] - base_time), p))
    for i in range(len(pos)):
        if po[pos[i]] != i:
            return False
    return True


def seq_prefix(records, base_time):
    """Largest k such that records[:k] fit one pack with the seq rule intact (k >= 1)."""
    n = len(records)
    if n <= 1 or _restorable(records, base_time):
        return n
    lo, hi = 1, n - 1  # records[:lo] restorable, records[:hi + 1] not
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if _restorable(records[:mid], base_time):
            lo = mid
        else:
            hi = mid - 1
    return lo


def in_seq_order(records):
    """Resolved records of an up/alert pack in seq order: a stable sort by time."""
    idx = sorted(range(len(records)), key=lambda i: (records[i][3], i))
    return [records[i] for i in idx]


def build_pack(base_name, base_time, records, epoch=0):
    """SenML pack (a list of label-keyed dicts) with times counted from epoch; ValueError if the seq rule can't hold."""
    _check_times(records, base_time)
    if not _restorable(records, base_time):
        raise ValueError("senml: records out of time order; put seq_prefix(records) in a pack")
    pack = []
    prev = None
    bu = None
    for i in _pack_order(records):
        name, unit, value, t = records[i]
        rec = {}
        if name != prev:
            rec[BN] = base_name + name
            if unit or bu:
                # An empty base unit ends an earlier one for a unit-less group.
                bu = rec[BU] = unit or ""
            prev = name
        if not pack:
            rec[BT] = _num(base_time) + epoch if epoch else _num(base_time)
        dt = _num(t - base_time)
        if dt:
            rec[T] = dt
        _value_field(rec, value)
        pack.append(rec)
    return pack


def encode_pack(base_name, base_time, records, epoch=0):
    """Encode records (name, unit, value, time) as a CBOR SenML pack."""
    return cbor.dumps(build_pack(base_name, base_time, records, epoch))


def _check_name(name):
    if not name:
        raise ValueError("senml: empty name")
    if name[0] not in _NAME_FIRST:
        raise ValueError("senml: bad name %r" % name)
    for c in name:
        if c not in _NAME_REST:
            raise ValueError("senml: bad character in name %r" % name)


def _finite(x, label):
    if x != x or x in (float("inf"), float("-inf")):
        raise ValueError("senml: non-finite number for label %d" % label)


def _check_field(k, x):
    if k in _STR_LABELS:
        if not isinstance(x, str):
            raise ValueError("senml: label %d must be text" % k)
    elif k in _NUM_LABELS:
        if x is True or x is False or not isinstance(x, (int, float)):
            raise ValueError("senml: label %d must be a number" % k)
        _finite(x, k)
    elif k == VB:
        if x is not True and x is not False:
            raise ValueError("senml: vb must be a boolean")
    elif k == VD:
        if not isinstance(x, bytes):
            raise ValueError("senml: vd must be bytes")
    elif k == BVER:
        if not isinstance(x, int) or x is True or x is False or x < 1 or x > 10:
            raise ValueError("senml: unsupported version")


def resolve(pack, strict=True):
    """Resolve a decoded pack into records (name, unit, value, time); ValueError if invalid."""
    if not isinstance(pack, list):
        raise ValueError("senml: pack must be an array")
    if not pack:
        raise ValueError("senml: empty pack")
    if len(pack) > MAX_RECORDS:
        raise ValueError("senml: more than %d records" % MAX_RECORDS)
    bn = ""
    bt = 0
    bu = None
    bv = 0
    out = []
    for rec in pack:
        if not isinstance(rec, dict):
            raise ValueError("senml: record must be a map")
        for k in rec:
            if not isinstance(k, int) or isinstance(k, bool):
                if isinstance(k, str) and not k.endswith("_"):
                    continue  # RFC 8428: unknown text labels are ignored
                raise ValueError("senml: unsupported label %r" % (k,))
            if k not in _KNOWN:
                if strict:
                    raise ValueError("senml: unknown label %d" % k)
                continue
            _check_field(k, rec[k])
        if BN in rec:
            bn = rec[BN]
        if BT in rec:
            bt = rec[BT]
        if BU in rec:
            bu = rec[BU]
        if BV in rec:
            bv = rec[BV]
        nvals = 0
        for k in _VALUE_LABELS:
            if k in rec:
                nvals += 1
        if nvals > 1:
            raise ValueError("senml: more than one value field")
        if V in rec:
            value = bv + rec[V]
        elif VS in rec:
            value = rec[VS]
        elif VB in rec:
            value = rec[VB]
        elif VD in rec:
            value = rec[VD]
        elif S in rec:
            value = rec[S]
        elif BV in rec:
            value = bv
        else:
            raise ValueError("senml: record without a value")
        name = bn + rec.get(N, "")
        _check_name(name)
        out.append((name, rec.get(U, bu) or None, value, bt + rec.get(T, 0)))
    return out


def decode_pack(data, strict=True):
    """Decode CBOR bytes of a SenML pack into resolved records."""
    return resolve(cbor.loads(data), strict)
