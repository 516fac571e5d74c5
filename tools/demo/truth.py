"""The demo's ground truth against the gateway's decisions: false positives per node, injected faults
found or missed. Judged by event time (the reading times the nodes stamped), never by wall time.

Each virtual node records every sensor read with its scenario flags (tools/demo_node.py, "truth.log":
`epoch_s t_s metric flags`). A scored window is anomalous in truth by the rule the model was trained
with (tools/datagen.py): it holds a spike, or at least SPIKE_MIN_FRAC of a metric's reads are faulty;
a drift counts once it is DRIFT_LABEL scale units off. A window whose readings reached the gateway
short by that share too (the node started or stopped inside it, or a host too busy to run the node
on time made fewer samples or adverts) is "short": missing data by the same rule, which the model may
rightly flag, so it is reported apart (short_windows, short_flagged), not judged as normal.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from fogline.gateway.inference.features import DEFAULT_SCALES
from fogline.tools.datagen import DRIFT_LABEL, SPIKE_MIN_FRAC

# tools/sim/scenario.py flag bits
SPIKE, STUCK, DROPOUT, DRIFT, STEP, DEAD = 1, 2, 4, 8, 16, 32
FLAG_NAMES = {SPIKE: "spike", STUCK: "stuck", DROPOUT: "dropout", DRIFT: "drift", STEP: "step", DEAD: "dead"}
# simulated signal unit per model unit: the BME280 reads Pa, the node sends hPa
SIM_PER_MODEL_UNIT = {"pressure": 100.0}


@dataclass
class Read:
    t: float       # epoch seconds the node stamped
    t_s: float     # scenario seconds
    metric: str
    flags: int


@dataclass
class NodeTruth:
    """One node's recorded reads and its scenario's signal specs (for drift magnitudes)."""
    node: str
    scenario: str
    reads: list[Read] = field(default_factory=list)
    signals: dict[str, dict[str, Any]] = field(default_factory=dict)
    period_s: float = 1.0  # how often a reading of each metric should reach the gateway (sample or advert)

    def short(self, start: float, end: float, counts: dict[str, Any] | None) -> bool:
        """The gateway got fewer than (1 - SPIKE_MIN_FRAC) of the readings a whole window holds for some
        metric: the node started or stopped inside it, or readings were not made (a starved host)."""
        if not counts:
            return False
        want = (end - start) / self.period_s
        return min(float(c) for c in counts.values()) < (1.0 - SPIKE_MIN_FRAC) * want

    def faulty(self, r: Read) -> int:
        """Flags of a read that make it faulty (a drift only once it is DRIFT_LABEL scale units off)."""
        f = r.flags
        if f & DRIFT:
            s = self.signals.get(r.metric, {})
            off = abs(float(s.get("drift_per_h", 0.0)) * (r.t_s - float(s.get("drift_start_s", 0))) / 3600.0)
            unit = DEFAULT_SCALES.get(r.metric, 1.0) * SIM_PER_MODEL_UNIT.get(r.metric, 1.0)
            if off < DRIFT_LABEL * unit:
                f &= ~DRIFT
        return f

    def window(self, start: float, end: float) -> tuple[bool | str | None, list[str]]:
        """(anomalous, fault kinds) of the window [start, end): True, False, "onset" (a fault under way but
        below the labelling rule: a drift still under DRIFT_LABEL, a fault in the last seconds), or None
        when the node read nothing in it."""
        per: dict[str, list[int]] = {}
        spikes: set[str] = set()
        onset = False
        for r in self.reads:
            if start <= r.t < end:
                onset = onset or bool(r.flags)
                f = self.faulty(r)
                c = per.setdefault(r.metric, [0, 0])
                c[0] += 1
                if f:
                    c[1] += 1
                if f & SPIKE:
                    spikes.add(r.metric)
        if not per:
            return None, []
        kinds: set[str] = set()
        bad = bool(spikes)
        for m, (n, nf) in per.items():
            if nf and nf >= SPIKE_MIN_FRAC * n:
                bad = True
        if not bad and onset:
            return "onset", []
        if bad:
            for r in self.reads:
                if start <= r.t < end:
                    f = self.faulty(r)
                    kinds.update(name for bit, name in FLAG_NAMES.items() if f & bit)
        return bad, sorted(kinds)

    def onset(self) -> float | None:
        """Epoch time of the first faulty read (None: a node with normal sensors)."""
        return next((r.t for r in self.reads if self.faulty(r)), None)


def load_truth(path: Path, node: str, scenario: str, signals: dict[str, dict[str, Any]]) -> NodeTruth:
    """Parse a node's truth.log (a torn last line is skipped)."""
    nt = NodeTruth(node, scenario, signals=signals)
    try:
        text = Path(path).read_text()
    except OSError:
        return nt
    for line in text.splitlines():
        parts = line.split()
        if len(parts) != 4:
            continue
        try:
            nt.reads.append(Read(float(parts[0]), float(parts[1]), parts[2], int(parts[3])))
        except ValueError:
            continue
    return nt


def _rate(n: int, d: int) -> float | None:
    return round(n / d, 4) if d else None


def evaluate(truths: Iterable[NodeTruth], decisions: Iterable[dict[str, Any]],
             alerts: dict[str, list[tuple[str, float]]]) -> dict[str, Any]:
    """Per-node false-positive rate and window recall, and per injected fault: found by the model
    (an anomaly on a truly anomalous window) and/or by a node alert raised after its onset."""
    last: dict[tuple[str, float], dict[str, Any]] = {}
    for d in decisions:  # a correction re-decides a window: the latest decision counts
        last[(str(d["node"]), float(d["start"]))] = d
    per_node: dict[str, Any] = {}
    injected: list[dict[str, Any]] = []
    for nt in truths:
        mine = sorted((d for (n, _s), d in last.items() if n == nt.node), key=lambda d: d["start"])
        scored = normal = anomalous = fp = tp = unknown = short = short_flagged = onset = 0
        first_found = None
        kinds: set[str] = set()
        for d in mine:
            truth, k = nt.window(float(d["start"]), float(d["end"]))
            scored += 1
            flagged = d.get("label") == "anomaly"
            if truth is None:
                unknown += 1
            elif truth == "onset":
                onset += 1
            elif not truth and nt.short(float(d["start"]), float(d["end"]), d.get("counts")):
                short += 1
                short_flagged += flagged
            elif truth:
                anomalous += 1
                kinds.update(k)
                if flagged:
                    tp += 1
                    first_found = d["start"] if first_found is None else first_found
            else:
                normal += 1
                fp += flagged
        per_node[nt.node] = {"scenario": nt.scenario, "windows_scored": scored, "truth_normal": normal,
                             "truth_anomalous": anomalous, "no_truth": unknown, "fault_onset_windows": onset,
                             "short_windows": short, "short_flagged": short_flagged, "false_positives": fp,
                             "fp_rate": _rate(fp, normal), "true_positives": tp,
                             "window_recall": _rate(tp, anomalous)}
        onset = nt.onset()
        if onset is None:
            continue
        raised = sorted({name for name, t in alerts.get(nt.node, []) if not name.endswith(".clear")
                         and t >= onset - 1.0})
        fault_kinds = sorted({FLAG_NAMES[b] for r in nt.reads for b in FLAG_NAMES if nt.faulty(r) & b})
        by = (["model"] if tp else []) + [f"alert {a}" for a in raised]
        injected.append({"node": nt.node, "scenario": nt.scenario, "faults": fault_kinds, "onset": onset,
                         "found": bool(by), "found_by": by, "first_anomaly_window": first_found})
    normal_nodes = [n for n, v in per_node.items() if not any(i["node"] == n for i in injected)]
    return {
        "per_node": per_node,
        "normal_nodes": normal_nodes,
        "false_positives_on_normal_nodes": sum(per_node[n]["false_positives"] for n in normal_nodes),
        "false_positives": sum(v["false_positives"] for v in per_node.values()),
        "injected": injected,
        "found": sum(1 for i in injected if i["found"]),
        "missed": [i["node"] for i in injected if not i["found"]],
        "recall": _rate(sum(1 for i in injected if i["found"]), len(injected)),
    }
