"""Decode and validate node messages (cbor2 + fogline.shared.senml.resolve): every refusal is a `Rejected` with a reason code.

Reason codes (stable; used in the dead-letter table and the `dead_letters{reason=...}` counter):
topic, too_large, cbor, tag, structure, seq, senml, name, type, unit, non_finite, time, bad_record,
unknown_device, replayed_seq, stale_epoch, state, auth, ble_decrypt, ble_plaintext, ble_decode.

Whole messages are refused only when their seqs cannot be told (framing, CBOR, SenML structure); a
record with a bad name, type, unit, value or time is refused alone (`Message.bad`) and the rest stored.
Untrusted objects are never formatted whole: details use `brief()` (bounded in length and work).
"""

from __future__ import annotations

import math
import reprlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import cbor2

from fogline.gateway.ingest.readings import PackReadings, Reading
from fogline.gateway.ingest.senml_fast import Columns, resolve_columns
from fogline.shared import epoch, senml, topics

LANES = ("up", "alert")
MAX_SEQ = (1 << 63) - 1


class Rejected(Exception):
    """A message refused by validation: reason code + human detail."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass(slots=True)
class Message:
    """A validated up/alert message: readings and refused records (`bad`) carry seqs first_seq.. between them.

    An all-good pack's readings are a `PackReadings` (columns; Reading objects only if someone iterates)."""
    node: str
    lane: str
    first_seq: int
    readings: Sequence[Reading]
    link: str = "mqtt"
    size: int = 0
    auth: bytes | None = None
    raw: bytes = b""
    rx: float = 0.0
    bad: list[tuple[int, str, str]] = field(default_factory=list)  # (seq, reason, detail) of refused records
    topic: str = ""
    records: int = 0            # records in the pack (seqs first_seq..first_seq+records-1)
    epoch: int = 0              # the node's flash generation (shared/epoch.py); 0 = legacy node


@dataclass
class Policy:
    """What validation accepts (built from [ingest] config)."""
    site: str = "site1"
    max_payload_bytes: int = 16384
    max_records: int = 1024
    max_depth: int = 8
    max_future_s: float = 300.0
    max_age_s: float = 30 * 86400.0
    numeric_only: bool = True
    units: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def from_config(cls, cfg: Any) -> "Policy":
        ing = cfg.ingest
        return cls(site=cfg.site.id, max_payload_bytes=ing.max_payload_bytes, max_records=ing.max_records,
                   max_depth=ing.max_depth, max_future_s=ing.max_future_s, max_age_s=ing.max_age_s,
                   numeric_only=ing.numeric_only, units=frozenset(ing.units) | frozenset(ing.extra_units))


class _TagRefused(Exception):
    def __init__(self, tag: int):
        super().__init__(tag)
        self.tag = tag


class _NoTags(dict):  # type: ignore[type-arg]
    """cbor2 `semantic_decoders` that refuses every tag at its header, before its content is built.

    The wire format (shared/cbor.py) uses no tags; cbor2 looks a tag up here first, so shared
    references (28/29), bignums, decimals and the rest never turn into objects."""

    def __missing__(self, tag: int) -> Any:
        raise _TagRefused(tag)


_NO_TAGS = _NoTags()

class _Brief(reprlib.Repr):
    def repr_bytes(self, x: bytes, level: int) -> str:
        return repr(x[:self.maxstring]) + ("..." if len(x) > self.maxstring else "")

    repr_bytearray = repr_bytes  # type: ignore[assignment]

    def repr_int(self, x: int, level: int) -> str:
        return repr(x) if x.bit_length() <= 128 else f"<int of {x.bit_length()} bits>"


_brief = _Brief()
_brief.maxlevel, _brief.maxlist, _brief.maxtuple, _brief.maxdict = 3, 4, 4, 4
_brief.maxset = _brief.maxfrozenset = _brief.maxdeque = _brief.maxarray = 4
_brief.maxstring, _brief.maxlong, _brief.maxother = 60, 40, 40


def brief(obj: Any, limit: int = 200) -> str:
    """A bounded repr of an untrusted object: never walks or prints more than a few dozen items."""
    try:
        s = _brief.repr(obj)
    except Exception:  # e.g. an int beyond sys.get_int_max_str_digits
        s = f"<{type(obj).__name__}>"
    return s if len(s) <= limit else s[:limit - 3] + "..."


def parse_topic(topic: str, site: str) -> tuple[str, str]:
    """(node, kind) of a topic under fogline/<site>/; Rejected('topic') for any other shape."""
    try:
        s, node, kind = topics.parse_node(topic)
    except ValueError as e:
        raise Rejected("topic", str(e)) from None
    if s != site:
        raise Rejected("topic", f"site {s!r} is not this gateway's site {site!r}")
    return node, kind


def _cbor(payload: bytes, pol: Policy) -> Any:
    if len(payload) > pol.max_payload_bytes:
        raise Rejected("too_large", f"{len(payload)} bytes > {pol.max_payload_bytes}")
    try:
        return cbor2.loads(payload, max_depth=pol.max_depth, allow_duplicate_keys=False,
                           semantic_decoders=_NO_TAGS)
    except cbor2.CBORDecodeError as e:
        if isinstance(e.__cause__, _TagRefused):
            raise Rejected("tag", f"CBOR tag {e.__cause__.tag} is not part of the wire format") from None
        raise Rejected("cbor", str(e)[:200]) from None
    except (ValueError, TypeError, OverflowError, RecursionError, MemoryError) as e:
        raise Rejected("cbor", f"{type(e).__name__}: {str(e)[:200]}") from None


def _senml_reason(msg: str) -> str:
    if "non-finite" in msg:
        return "non_finite"
    if "label" in msg and ("unknown" in msg or "unsupported" in msg):
        return "senml"
    if "name" in msg:
        return "name"
    if "must be" in msg:
        return "type"
    return "senml"


def _clean_pack(node: str, lane: str, first: int, cols: Columns, pol: Policy, now: float) -> PackReadings | None:
    """Readings (as columns) of a resolved pack whose every record passes (None: some do not, check one by one)."""
    names, units, values, times = cols
    if len(names) == 1:  # a single reading (or an alert): the same checks without the column passes
        t = float(times[0])
        m = _METRICS.get((node, names[0])) or _metric_of(node, names[0])
        if not now - pol.max_age_s <= t <= now + pol.max_future_s or m is None:
            return None
        if units[0] is not None and units[0] not in pol.units:
            return None
        return PackReadings(node, lane, first, [m], units, [float(values[0])], [t])
    if not now - pol.max_age_s <= float(min(times)) <= float(max(times)) <= now + pol.max_future_s:
        return None
    name = names[0]
    if names.count(name) == len(names):  # one group (the firmware's pack of one sensor): one name to check
        m = _METRICS.get((node, name))
        if m is None:
            m = _metric_of(node, name)
            if m is None:
                return None
        metrics = [m] * len(names)
    else:
        metric: dict[str, str] = {}
        for name in set(names):
            m = _METRICS.get((node, name)) or _metric_of(node, name)
            if m is None:
                return None
            metric[name] = m
        metrics = list(map(metric.__getitem__, names))
    if not pol.units.issuperset(filter(None, set(units))):  # units are None or non-empty text
        return None
    # one metric object per name: consumers tell groups apart by identity
    return PackReadings(node, lane, first, metrics, units, list(map(float, values)), list(map(float, times)))


_METRICS: dict[tuple[str, str], str] = {}  # (node, record name) -> metric, for names under node + "/" (bounded)


def _metric_of(node: str, name: str) -> str | None:
    """The metric of record name under node + "/" (cached), or None if it is not under it."""
    prefix = node + "/"
    if not name.startswith(prefix) or len(name) == len(prefix):
        return None
    if len(_METRICS) >= 65536:  # a node inventing names must not grow it
        _METRICS.clear()
    m = _METRICS[(node, name)] = name[len(prefix):]
    return m


def decode_uplink(node: str, lane: str, payload: bytes, pol: Policy, now: float) -> Message:
    """Decode an up/alert payload `[first_seq, pack(, auth)]` into a Message or raise Rejected."""
    obj = _cbor(payload, pol)
    if not isinstance(obj, list) or len(obj) not in (2, 3, 4):
        raise Rejected("structure", "payload must be [first_seq, senml_pack(, auth(, epoch))]")
    first, pack = obj[0], obj[1]
    auth = obj[2] if len(obj) >= 3 else None
    if auth is not None and not isinstance(auth, bytes):
        raise Rejected("structure", "authenticator must be bytes")
    ep = 0
    if len(obj) == 4:  # a legacy node's [first_seq, pack] has epoch 0
        ep = obj[3]
        if not epoch.valid(ep) or not ep:
            raise Rejected("structure", f"epoch must be an integer in 1..{epoch.MAX}, got {brief(ep, 40)}")
    if isinstance(first, bool) or not isinstance(first, int) or not 1 <= first <= MAX_SEQ:
        raise Rejected("seq", f"first_seq must be an integer >= 1, got {brief(first, 80)}")
    if not isinstance(pack, list):
        raise Rejected("structure", "senml pack must be an array")
    if len(pack) > pol.max_records:
        raise Rejected("too_large", f"{len(pack)} records > {pol.max_records}")
    cols = resolve_columns(pack)  # the firmware's shape: checked per pack, not per record and label
    if cols is not None:
        if first + len(cols[0]) - 1 > MAX_SEQ:
            raise Rejected("seq", "seq overflows 63 bits")
        out = _clean_pack(node, lane, first, cols, pol, now)
        if out is not None:
            return Message(node, lane, first, out, "mqtt", len(payload), auth, payload, now, records=len(out),
                           epoch=ep)
    try:
        # Records map to seqs in time order (the seq rule: README "Wire format", shared/senml.py).
        recs = list(zip(*cols)) if cols is not None else senml.in_seq_order(senml.resolve(pack, True))
    except ValueError as e:
        m = str(e)
        raise Rejected(_senml_reason(m), m[:200]) from None
    except (TypeError, OverflowError, RecursionError) as e:  # defensive: never escape
        raise Rejected("senml", f"{type(e).__name__}: {str(e)[:200]}") from None
    if first + len(recs) - 1 > MAX_SEQ:
        raise Rejected("seq", "seq overflows 63 bits")
    prefix = node + "/"
    plen = len(prefix)
    out: list[Reading] = []
    append = out.append
    bad: list[tuple[int, str, str]] = []  # one refused record does not refuse its pack
    lo = now - pol.max_age_s
    hi = now + pol.max_future_s
    units = pol.units
    isfinite = math.isfinite
    seq = first - 1
    last_name = last_metric = None
    for name, unit, value, t in recs:
        seq += 1
        if name is not last_name:  # records of one group share the base name object
            if not name.startswith(prefix) or len(name) == plen:
                bad.append((seq, "name", f"record name {brief(name, 80)} is not under {prefix!r}"))
                continue
            last_name, last_metric = name, name[plen:]
        metric = last_metric
        tv = type(value)
        if tv is float:
            v = value
        elif tv is int:
            v = float(value)
        elif metric == senml.BAD_RECORD:
            # the node could not read this record back from its flash: its seq is used, its body is kept here
            bad.append((seq, "bad_record", f"node could not read the record from flash: {brief(value, 120)}"))
            continue
        elif pol.numeric_only:
            bad.append((seq, "type", f"{metric}: value must be a number, got {tv.__name__}"))
            continue
        else:
            continue
        if not isfinite(v):
            bad.append((seq, "non_finite", f"{metric}: value {v}"))
            continue
        if unit is not None and unit not in units:
            bad.append((seq, "unit", f"{metric}: unit {brief(unit, 40)} not accepted"))
            continue
        tf = float(t)
        if not lo <= tf <= hi:  # NaN and inf fail this too
            bad.append((seq, "time", f"{metric}: time {t} outside [{lo:.0f}, {hi:.0f}] (gateway clock {now:.0f})"))
            continue
        append(Reading(node, lane, seq, metric, unit, v, tf))
    return Message(node, lane, first, out, "mqtt", len(payload), auth, payload, now, bad=bad, records=len(recs),
                   epoch=ep)


def decode_state(payload: bytes, pol: Policy) -> dict[str, Any]:
    """Decode a node `state` map (CBOR); Rejected('state'|'cbor'|'too_large') if malformed."""
    obj = _cbor(payload, pol)
    if not isinstance(obj, dict) or not all(isinstance(k, str) for k in obj):
        raise Rejected("state", "state must be a CBOR map with text keys")
    return obj
