"""Cloud messages -> rows: one MQTT message (topic, payload) becomes readings, alerts, windows, decisions, health.

Natural keys make every write idempotent: a reading by (site, node, lane, seq), an alert by (site, node, seq),
a window summary by (site, node, metric, length, start) keeping the highest rev (shared/summary.py), a model
decision by (site, node, length, start) the same way, a health report by its outbox key. Anything that is not
one of these shapes becomes a dead letter with its reason (stored and counted, never dropped silently).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from fogline.gateway.relay.cloud import decode_cloud_message
from fogline.shared import summary as wire
from fogline.shared import topics

LANE_CODE = {"up": 0, "alert": 1}
LANE_NAME = {v: k for k, v in LANE_CODE.items()}
MAX_SEQ = 2**62


@dataclass
class Batch:
    """Rows of many messages, written in one transaction."""

    readings: list[tuple[str, str, int, int, str, str | None, float, float]] = field(default_factory=list)
    alerts: list[tuple[str, str, int, str, str | None, float, float, str, float]] = field(default_factory=list)
    windows: dict[tuple, dict[str, Any]] = field(default_factory=dict)   # key -> highest-rev row in this batch
    decisions: dict[tuple, dict[str, Any]] = field(default_factory=dict)
    health: list[tuple[str, str, str, float, str]] = field(default_factory=list)  # site, k, gw, ts, body json
    dead: list[tuple[str, str, bytes]] = field(default_factory=list)  # topic, reason, payload
    envelopes: int = 0
    messages: int = 0
    wire_bytes: int = 0  # topic + payload of every message

    def add_message(self, topic: str, payload: bytes) -> None:
        """Decode one MQTT message into this batch (bad parts become dead letters)."""
        self.messages += 1
        self.wire_bytes += len(topic) + len(payload)
        try:
            site, kind = topics.parse_cloud(topic)
            envs = decode_cloud_message(payload)
        except ValueError as e:
            self.dead.append((topic, str(e)[:200], bytes(payload)))
            return
        for env in envs:
            try:
                self._add_envelope(site, kind, env)
                self.envelopes += 1
            except (ValueError, TypeError, KeyError) as e:
                self.dead.append((topic, f"{type(e).__name__}: {e}"[:200], _dump(env).encode()))

    def _add_envelope(self, site: str, kind: str, env: dict[str, Any]) -> None:
        if not isinstance(env, dict) or not isinstance(env.get("k"), str):
            raise ValueError("envelope without key")
        lane = env.get("lane", kind)
        body = env.get("body")
        gw = _text(env.get("gw", ""), 64)
        ts = _num(env.get("ts", 0.0), "ts")
        if not isinstance(body, dict):
            raise ValueError("body is not a map")
        if lane == "alert" and "seq" in body:
            node = topics.check_id(body["node"], "node")
            seq = _seq(body["seq"])
            recs = body["records"]
            if not isinstance(recs, list) or len(recs) != 1:
                raise ValueError("alert body needs exactly one record")
            m, u, v, t = _record(recs[0])
            self.readings.append((site, node, LANE_CODE["alert"], seq, m, u, v, t))
            self.alerts.append((site, node, seq, m, u, v, t, gw, ts))
        elif lane == "raw" and "first_seq" in body:
            node = topics.check_id(body["node"], "node")
            code = LANE_CODE.get(body.get("lane", "up"))
            if code is None:
                raise ValueError(f"unknown reading lane {body.get('lane')!r}")
            first = _seq(body["first_seq"])
            recs = body["records"]
            if not isinstance(recs, list):
                raise ValueError("records is not a list")
            _seq(first + len(recs))
            self.readings.extend(_records(site, node, code, first, recs))
        elif body.get("kind") == "gateway_health":
            self.health.append((site, _text(env["k"], 200), gw, ts, _dump(body)))
        else:
            key = wire.body_key(body)
            if key is None:
                raise ValueError(f"unknown {lane} body (no window key)")
            node, metric, length, start = key
            topics.check_id(node, "node")
            row = {"site": site, "node": node, "metric": metric, "length": length, "start": start,
                   "end": _num(body["end"], "end"), "rev": wire.revision(body), "gw": gw, "lane": lane}
            if metric == wire.SET:
                row.update(action=_text(body.get("action", lane)), label=_text(body.get("label", "")),
                           score=_opt_num(body.get("score")), confidence=_opt_num(body.get("confidence")),
                           model=_text(body.get("model", "")), late=int(bool(body.get(wire.LATE))),
                           retract=int(bool(body.get(wire.RETRACT))), body=_dump(body))
                _keep(self.decisions, (site,) + key, row)
            else:
                for s in wire.STATS:
                    row[s] = _opt_num(body.get(s))
                row["unit"] = _text(body["unit"], 32) if isinstance(body.get("unit"), str) else None
                row["corr"] = int(bool(body.get(wire.CORR)))
                _keep(self.windows, (site,) + key, row)

    def rows(self) -> int:
        return len(self.readings) + len(self.alerts) + len(self.windows) + len(self.decisions) + len(self.health)


def _keep(into: dict[tuple, dict[str, Any]], key: tuple, row: dict[str, Any]) -> None:
    old = into.get(key)
    if old is None or row["rev"] > old["rev"]:
        into[key] = row


def _num(x: Any, what: str) -> float:
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        raise ValueError(f"{what} is not a number")
    x = float(x)
    if not math.isfinite(x):
        raise ValueError(f"{what} is not finite")
    return x


def _opt_num(x: Any) -> float | None:
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def _seq(x: Any) -> int:
    if isinstance(x, bool) or not isinstance(x, int) or not (0 <= x < MAX_SEQ):
        raise ValueError("seq is not an integer in range")
    return x


def _record(rec: Any) -> tuple[str, str | None, float, float]:
    if not isinstance(rec, (list, tuple)) or len(rec) != 4:
        raise ValueError("record is not [metric, unit, value, t]")
    m, u, v, t = rec
    if not isinstance(m, str) or not m or len(m) > 64 or "\x00" in m:  # PostgreSQL text holds no NUL
        raise ValueError("record metric")
    if u is not None and (not isinstance(u, str) or len(u) > 32 or "\x00" in u):
        raise ValueError("record unit")
    return m, u, _num(v, "value"), _num(t, "t")


_NUMS = (float, int)  # exact types: bool (an int subclass) is not a reading value
_isfinite = math.isfinite


def _records(site: str, node: str, code: int, first: int, recs: list[Any]) -> list[tuple]:
    """Reading rows of a raw body (the hot path: exact type checks, units checked once per metric)."""
    out = []
    ok: set[tuple[Any, Any]] = set()
    seq = first
    for rec in recs:
        if type(rec) is not list or len(rec) != 4:
            raise ValueError("record is not [metric, unit, value, t]")
        m, u, v, t = rec
        if (m, u) not in ok:
            _record([m, u, 0.0, 0.0])
            ok.add((m, u))
        if type(v) not in _NUMS or type(t) not in _NUMS or not (_isfinite(v) and _isfinite(t)):
            raise ValueError("record value/t is not a finite number")
        out.append((site, node, code, seq, m, u, float(v), float(t)))
        seq += 1
    return out


def _text(x: Any, limit: int = 100) -> str:
    """A short text column value (PostgreSQL text holds no NUL)."""
    return str(x)[:limit].replace("\x00", "")


def _dump(obj: Any) -> str:
    return json.dumps(obj, default=lambda o: o.hex() if isinstance(o, (bytes, bytearray)) else repr(o),
                      separators=(",", ":"))
