"""A node's desired-config overlay for the workloads placed on it: its sensors' filter chains and its rules."""

from __future__ import annotations

import copy
from typing import Any

from fogline.gateway.placement.score import Workload


def node_fragment(node: str, placed_here: list[Workload], all_of_node: list[Workload],
                  base: dict[str, Any] | None, board_frag: dict[str, Any],
                  running: list[str] | None = None) -> tuple[dict[str, Any] | None, str | None]:
    """Overlay for one node's desired config: its sensors' chains and rules as placed. (frag, error).

    The sensor list replaces the node's (lists replace in a pushed config): when the node reported the
    sensors it runs (`running`), a list that would drop one is refused instead of pushed.
    """
    base = base or {}
    here = {w.name for w in placed_here}
    frag: dict[str, Any] = {}
    filt = [w for w in all_of_node if w.kind == "filter"]
    if filt:
        sensors = copy.deepcopy(base.get("sensors") or board_frag.get("sensors") or [])
        by_name = {s.get("name"): s for s in sensors if isinstance(s, dict)}
        for w in filt:
            s = by_name.get(w.sensor)
            if s is None:
                return None, f"workload {w.name}: node {node} has no sensor {w.sensor!r} in the twin or board file"
            s["filters"] = copy.deepcopy(w.filters) if w.name in here else []
        missing = [n for n in (running or []) if n not in by_name]
        if missing:
            return None, (f"node {node} runs sensors {missing} that neither the twin file nor the board file "
                          f"lists: a push would drop them (add them to the twin file's [nodes.{node}] sensors)")
        frag["sensors"] = sensors
    rw = [w for w in all_of_node if w.kind == "rules"]
    if rw:
        mine = {r["name"] for w in rw for r in w.rules}
        rules = [r for r in (base.get("rules") or []) if r.get("name") not in mine]
        for w in rw:
            if w.name in here:
                rules += copy.deepcopy(w.rules)
        frag["rules"] = rules
    return frag, None
