"""Event lines of the demo: an alert record told with its rule (metric, value, threshold, actuator)."""

from __future__ import annotations

from typing import Any, Mapping


def _num(v: Any) -> str:
    return f"{v:.2f}" if isinstance(v, float) else str(v)


def describe_alert(node: str, name: str, value: Any, unit: Any, rules: Mapping[str, Mapping[str, Any]]) -> str:
    """"ALERT node1 temp_high: temperature 38.93 Cel > 30 (relay on)" for an alert record (rule name
    or "<rule>.clear", the value the rule saw); an unknown rule keeps the bare "name=value"."""
    clear = name.endswith(".clear")
    base = name[:-len(".clear")] if clear else name
    r = rules.get(base)
    head = f"{'CLEAR' if clear else 'ALERT'} {node} {base}"
    if r is None:
        return f"{head} {name}={_num(value)}"
    sensor, kind = r.get("sensor", "?"), r.get("type")
    u = f" {unit}" if unit else ""
    act = f" ({r['actuator']} {'off' if clear else 'on'})" if r.get("actuator") else ""
    thr, hyst = r.get("threshold"), float(r.get("hysteresis", 0.0) or 0.0)
    if kind in ("above", "below") and isinstance(thr, (int, float)):
        if clear:
            back = thr - hyst if kind == "above" else thr + hyst
            side = "<=" if kind == "above" else ">="
            return f"{head}: {sensor} {_num(value)}{u} {side} {back:g}{act}"
        return f"{head}: {sensor} {_num(value)}{u} {'>' if kind == 'above' else '<'} {thr:g}{act}"
    if kind == "rate" and isinstance(thr, (int, float)):
        return f"{head}: {sensor} changing {_num(value)}{u}/s, limit {thr:g}{act}"
    if kind == "stale":
        missing = float(r.get("missing_ms", 0)) / 1000.0
        return (f"{head}: {sensor} reading again{act}" if clear
                else f"{head}: no {sensor} reading for {missing:g} s{act}")
    return f"{head}: {sensor} {_num(value)}{u}{act}"
