"""What [placement] declares: the weights and limits of the scoring (`PlacementConfig`) and the workloads.

A workload (filter chain, rule set or model of one source node) declares its needs: heap, flash, CPU
per sample, power. Both are checked when the config loads, with errors naming the field; the scoring
that uses them is `fogline.gateway.placement.score`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fogline.shared import config_schema

KINDS = ("filter", "rules", "model")
WEIGHT_KEYS = ("proximity", "resources", "link", "power")


@dataclass
class PlacementConfig:
    """[placement] where workloads run: weights, limits, hysteresis, the workloads."""
    enabled: bool = False             # off: nothing is placed, no config is pushed
    interval_s: float = 5.0           # re-evaluate every workload this often (node `state` also triggers it)
    decisions_file: str = ""          # "" = <site.data_dir>/placement.json (read by `fogline placement`)
    publish: bool = True              # retained decisions on fogline/<site>/_gw/<gw>/placement
    # score weights (a table naming some of them keeps the defaults of the others)
    weights: dict[str, float] = field(default_factory=lambda: {"proximity": 0.35, "resources": 0.25,
                                                               "link": 0.2, "power": 0.2})
    proximity_gateway: float = 0.5    # proximity part of the gateway (the node itself is 1.0)
    rtt_ref_ms: float = 100.0         # link part halves at this node uplink round trip
    power_mains: float = 1.0          # power part by source
    power_usb: float = 0.9
    power_battery: float = 0.8        # times the battery fraction
    gw_power: str = "mains"           # the gateway's own supply (usb, battery or mains)
    stickiness: float = 0.05          # bonus of the current candidate: no flapping on small changes
    node_heap_reserve: int = 16384    # a node keeps at least this much heap free after its workloads
    node_flash_reserve: int = 16384   # ...and this much log flash
    node_cpu_us_max: int = 2000       # most CPU per sample a node workload may declare
    battery_min_pct: float = 20.0     # optional workloads leave a battery node below this...
    battery_resume_pct: float = 35.0  # ...and come back only at or above this (hysteresis)
    state_max_age_s: float = 600.0    # node capabilities older than this do not count
    gw_mem_reserve: int = 64 << 20    # gateway keeps this much MemAvailable after a workload
    gw_rss_max: int = 0               # gateway process RSS cap in bytes (0 = no cap)
    gw_cpu_max_pct: float = 90.0      # no new gateway workload above this load
    gw_workload_mem_max: int = 64 << 20  # sum of declared heap_bytes of the gateway's workloads
    gw_cpu_ms_per_s: float = 50.0     # CPU-time budget per workload per second on the gateway; over it
                                      # readings are shed (counted), not queued
    workloads: list[dict[str, Any]] = field(default_factory=list)  # [[placement.workloads]] tables

    def validate(self) -> None:
        defaults = PlacementConfig.__dataclass_fields__["weights"].default_factory()  # type: ignore[misc]
        self.weights = {**defaults, **self.weights}  # a partial table overrides only the weights it names
        for k, v in self.weights.items():
            if k not in WEIGHT_KEYS:
                raise ValueError(f"placement.weights.{k}: unknown weight (known: {', '.join(WEIGHT_KEYS)})")
            if v < 0:
                raise ValueError(f"placement.weights.{k}: must be >= 0")
        if sum(self.weights.values()) <= 0:
            raise ValueError("placement.weights: need one positive weight")
        if self.battery_resume_pct < self.battery_min_pct:
            raise ValueError("placement.battery_resume_pct: must be >= battery_min_pct")
        if self.gw_power not in ("usb", "battery", "mains"):
            raise ValueError("placement.gw_power: must be usb, battery or mains")
        if self.interval_s <= 0 or self.rtt_ref_ms <= 0 or self.gw_cpu_ms_per_s <= 0:
            raise ValueError("placement.interval_s/rtt_ref_ms/gw_cpu_ms_per_s: must be > 0")
        names = set()
        for i, w in enumerate(self.workloads):
            wl = Workload.from_dict(w, f"placement.workloads[{i}]")
            if wl.name in names:
                raise ValueError(f"placement.workloads[{i}].name: duplicate {wl.name!r}")
            names.add(wl.name)

    def parsed_workloads(self) -> list["Workload"]:
        return [Workload.from_dict(w, f"placement.workloads[{i}]") for i, w in enumerate(self.workloads)]


@dataclass
class Workload:
    """A unit of processing with declared needs, tied to its source node."""
    name: str
    kind: str                         # filter | rules | model
    node: str                         # source node
    sensor: str | None = None         # filter: the sensor whose chain this is (node: sensors[].filters)
    filters: list[Any] = field(default_factory=list)
    rules: list[dict[str, Any]] = field(default_factory=list)
    model: str | None = None
    heap_bytes: int = 0
    flash_bytes: int = 0
    cpu_us: int = 0                   # per sample
    power: str = "any"                # any | mains
    optional: bool = True             # optional work leaves a low battery node

    _KEYS = ("name", "kind", "node", "sensor", "filters", "rules", "model", "heap_bytes", "flash_bytes", "cpu_us",
             "power", "optional")

    @classmethod
    def from_dict(cls, d: Any, path: str = "workload") -> "Workload":
        """Parse and check one workload table; ValueError('path.field: reason')."""
        if not isinstance(d, dict):
            raise ValueError(f"{path}: must be a table")
        for k in d:
            if k not in cls._KEYS:
                raise ValueError(f"{path}.{k}: unknown field")
        for k in ("name", "kind", "node"):
            if not isinstance(d.get(k), str) or not d[k]:
                raise ValueError(f"{path}.{k}: required string")
        if d["kind"] not in KINDS:
            raise ValueError(f"{path}.kind: must be one of {', '.join(KINDS)}")
        for k in ("heap_bytes", "flash_bytes", "cpu_us"):
            v = d.get(k, 0)
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise ValueError(f"{path}.{k}: must be an integer >= 0")
        if d.get("power", "any") not in ("any", "mains"):
            raise ValueError(f"{path}.power: must be any or mains")
        if not isinstance(d.get("optional", True), bool):
            raise ValueError(f"{path}.optional: must be true or false")
        w = cls(**{k: d[k] for k in cls._KEYS if k in d})
        if w.kind == "filter":
            if not isinstance(w.sensor, str) or not w.sensor:
                raise ValueError(f"{path}.sensor: required for a filter workload")
            if not isinstance(w.filters, list) or not w.filters:
                raise ValueError(f"{path}.filters: a non-empty list of filters")
            for i, f in enumerate(w.filters):
                config_schema.validate_filter(f, f"{path}.filters[{i}]")  # same checks as the node's config
        elif w.kind == "rules":
            if not isinstance(w.rules, list) or not w.rules or not all(isinstance(r, dict) for r in w.rules):
                raise ValueError(f"{path}.rules: a non-empty list of rule tables")
            for i, r in enumerate(w.rules):
                if not isinstance(r.get("name"), str) or not isinstance(r.get("sensor"), str):
                    raise ValueError(f"{path}.rules[{i}]: needs name and sensor")
        elif not w.model:
            raise ValueError(f"{path}.model: required for a model workload")
        return w

    def actuators(self) -> list[str]:
        return [r["actuator"] for r in self.rules if r.get("actuator")]
