"""The demo's model decisions against its scenarios' ground truth: false-positive rate per node and the
injected faults found, from a real `fogline demo --headless` run (or a summary JSON it printed).

    python tools/bench/demo_detection.py [--duration 300] [--seed 1] [--nodes 5]
    python tools/bench/demo_detection.py --summary run.json

Judged by event time (the reading times the nodes stamped, tools/demo_node.py's truth.log), so the
figures do not depend on this machine's speed; a busy host shows up as "short" windows (fewer readings
than a whole window holds), reported apart. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_demo(duration: float, seed: int, nodes: int) -> dict:
    """Summary dict of one headless demo run."""
    proc = subprocess.run([sys.executable, "-m", "fogline.tools.cli", "demo", "--headless", "--duration", str(duration),
                           "--seed", str(seed), "--nodes", str(nodes)], capture_output=True, text=True,
                          cwd=str(ROOT), timeout=duration + 300)
    if proc.returncode != 0:
        raise SystemExit(f"demo failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return json.loads(proc.stdout)


def figures(s: dict) -> dict:
    """The detection figures of a demo summary."""
    det = s["detection"]
    return {
        "duration_s": s["duration_s"], "seed": s["seed"], "window_s": det["window_s"],
        "per_node": {n: {k: d[k] for k in ("scenario", "windows_scored", "truth_normal", "truth_anomalous",
                                           "short_windows", "short_flagged", "false_positives", "fp_rate",
                                           "window_recall")} for n, d in det["per_node"].items()},
        "normal_nodes": det["normal_nodes"], "false_positives_on_normal_nodes": det["false_positives_on_normal_nodes"],
        "false_positives": det["false_positives"],
        "injected": [{k: i[k] for k in ("node", "scenario", "faults", "found", "found_by")} for i in det["injected"]],
        "recall": det["recall"], "missed": det["missed"],
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=300)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--nodes", type=int, default=5)
    ap.add_argument("--summary", help="read this summary JSON instead of running the demo")
    a = ap.parse_args(argv)
    s = json.loads(Path(a.summary).read_text()) if a.summary else run_demo(a.duration, a.seed, a.nodes)
    f = figures(s)
    print(f"{'node':<7}{'scenario':<11}{'scored':>7}{'normal':>7}{'anom':>6}{'short':>6}{'FP':>4}{'FP rate':>9}"
          f"{'recall':>8}")
    for n, d in f["per_node"].items():
        rate = "-" if d["fp_rate"] is None else f"{d['fp_rate']:.0%}"
        rec = "-" if d["window_recall"] is None else f"{d['window_recall']:.0%}"
        print(f"{n:<7}{d['scenario']:<11}{d['windows_scored']:>7}{d['truth_normal']:>7}{d['truth_anomalous']:>6}"
              f"{d['short_windows']:>6}{d['false_positives']:>4}{rate:>9}{rec:>8}")
    for i in f["injected"]:
        print(f"injected {'+'.join(i['faults'])} on {i['node']}: "
              + (", ".join(i["found_by"]) if i["found"] else "MISSED"))
    print(f"{f['duration_s']} s, {f['window_s']:g} s windows: false positives on normal nodes "
          f"{f['false_positives_on_normal_nodes']}, injected faults found {len(f['injected']) - len(f['missed'])}"
          f"/{len(f['injected'])}")
    print(json.dumps(f))
    return 0


if __name__ == "__main__":
    sys.exit(main())
