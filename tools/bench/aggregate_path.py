"""CPU per reading of the fog-tier windows alone: Aggregator.add_many over packs, windows fired as the watermark moves.

The same shape as tools/bench/gateway_ingest.py's load (nodes round-robin, packs of --pack readings one second
apart, so every pack fires a short window), with --metrics series per node interleaved in each pack, windows
10 s / 60 s / 900 s (the defaults), watermark 5 s. Reports process CPU per reading, the minimum of --repeat
runs (the run least disturbed by other load). Last line: one JSON object.

Usage: python tools/bench/aggregate_path.py [--nodes 20] [--packs 500] [--pack 10] [--metrics 1] [--repeat 7]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


LENGTHS = [10.0, 60.0, 900.0]


def one_run(nodes: int, packs: int, pack: int, metrics: int) -> tuple[float, int]:
    """(CPU us per reading, windows delivered) of one fresh Aggregator over the whole load."""
    from fogline.gateway.aggregate.core import Aggregator

    out: list = []
    agg = Aggregator(LENGTHS, 5.0, out.append, 30.0)
    names = [f"m{k}" for k in range(metrics)]
    t0 = 1e9
    data = []
    for i in range(packs):
        ms = [names[j % metrics] for j in range(pack)]
        ts = [t0 + i * pack + (j // metrics) * metrics for j in range(pack)]
        for n in range(nodes):
            vs = [20.0 + ((i * pack + j + n) % 500) * 0.01 for j in range(pack)]
            data.append((f"b{n:03d}", ms, ["Cel"] * pack, vs, ts))
    c = time.process_time()
    for node, ms, us, vs, ts in data:
        agg.add_many(node, ms, us, vs, ts, 5.0)
    return (time.process_time() - c) / (len(data) * pack) * 1e6, len(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, default=20)
    ap.add_argument("--packs", type=int, default=500, help="packs per node")
    ap.add_argument("--pack", type=int, default=10)
    ap.add_argument("--metrics", type=int, default=1, help="series per node, interleaved in each pack")
    ap.add_argument("--repeat", type=int, default=7)
    a = ap.parse_args()
    runs = []
    for _ in range(a.repeat):
        us, wins = one_run(a.nodes, a.packs, a.pack, a.metrics)
        runs.append(us)
    print(f"{a.nodes} nodes, packs of {a.pack}, {a.metrics} series a node: {min(runs):.2f} us CPU per reading "
          f"(min of {a.repeat}; runs {', '.join(f'{r:.2f}' for r in runs)}), {wins} windows delivered")
    print(json.dumps({"nodes": a.nodes, "pack": a.pack, "metrics": a.metrics, "windows": wins,
                      "min_cpu_us_per_reading": round(min(runs), 2), "runs": [round(r, 2) for r in runs]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
