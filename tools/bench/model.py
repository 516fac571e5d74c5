"""Anomaly model benchmark: the builder's variant table + the gateway's end-to-end scoring rate.

    python tools/bench/model.py [--quick]

1. Builds every variant (tools/build_model.py, nothing written to gateway/models) and prints size,
   latency (onnxruntime, 1 thread, batch 1 and 64) and precision/recall/F1 on the unseen test mix.
2. Feeds the test mix as fogline.gateway.aggregate.core.Window sets through fogline.gateway.inference.core.InferenceEngine
   with the committed model (features + normalisation + model + decision, one set at a time as
   the gateway does) and reports sets/s and the per-set latency p50/p99, and F1 of that path.
Goals: model p99 < 100 us per window at batch 1; F1 >= 0.9 on the unseen mix. Last line: JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from fogline.gateway.inference.core import InferenceConfig, InferenceEngine  # noqa: E402
from fogline.tools import build_model, datagen  # noqa: E402


def end_to_end(quick: bool) -> dict:
    """Committed model through the engine on the test mix: rate, per-set latency, F1."""
    ds = datagen.make_split("test", quick=quick)
    sets = datagen.window_sets(ds)
    with tempfile.TemporaryDirectory() as tmp:
        got: dict = {}
        eng = InferenceEngine(InferenceConfig(registry_dir=tmp),
                              sink=lambda d: got.update({(x.node, x.start): x.label for x in d}))
        eng.start()
        lat = np.empty(len(sets))
        t0 = time.perf_counter()
        for i, ws in enumerate(sets):
            a = time.perf_counter_ns()
            eng.submit_many(ws)
            lat[i] = time.perf_counter_ns() - a
        eng.flush(force=True)
        dt = time.perf_counter() - t0
    pred = np.array([got[(f"node{int(n)}", float(s))] == "anomaly" for n, s in zip(ds.node, ds.start)])
    m = build_model.prf(ds.y, pred.astype(int))
    acts = {a: int(eng.counters[a]) for a in ("summary", "anomaly", "raw")}
    return {"sets": len(sets), "windows": int(sum(len(s) for s in sets)), "sets_per_s": round(len(sets) / dt, 1),
            "windows_per_s": round(sum(len(s) for s in sets) / dt, 1),
            "set_p50_us": round(float(np.percentile(lat, 50)) / 1e3, 2),
            "set_p95_us": round(float(np.percentile(lat, 95)) / 1e3, 2),
            "set_p99_us": round(float(np.percentile(lat, 99)) / 1e3, 2), "f1": m["f1"],
            "load_avg_1m": round(os.getloadavg()[0], 2),
            "precision": m["precision"], "recall": m["recall"], "actions": acts, "model": eng.model.ident}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small data, few runs (seconds)")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        variants, _ctx = build_model.build(7, a.quick, Path(tmp), 300 if a.quick else 3000, log=lambda *x: None)
        chosen = build_model.choose(variants)
        print(build_model.table(variants, chosen))
    e2e = end_to_end(a.quick)
    print(f"\nend to end (committed {e2e['model']}, Window sets -> features -> model -> decision, one set per call):")
    print(f"  {e2e['sets']} sets ({e2e['windows']} windows): {e2e['sets_per_s']:.0f} sets/s, "
          f"{e2e['windows_per_s']:.0f} windows/s; per set p50 {e2e['set_p50_us']} us p95 {e2e['set_p95_us']} us "
          f"p99 {e2e['set_p99_us']} us (load average {e2e['load_avg_1m']} on {os.cpu_count()} cores)")
    print(f"  P {e2e['precision']:.3f} R {e2e['recall']:.3f} F1 {e2e['f1']:.3f}; decisions {e2e['actions']}")
    best = min(variants, key=lambda x: x.lat["b1_p99_us"])
    out = {
        "quick": a.quick, "default_rule": chosen.name,
        "variants": {x.name: {"bytes": x.size, **x.lat, "test_f1": x.test["f1"], "val_f1": x.val["f1"]}
                     for x in variants},
        "end_to_end": e2e,
        "goal_p99_model_b1_lt_100us": chosen.lat["b1_p99_us"] < 100.0,
        "goal_p99_set_lt_100us": e2e["set_p99_us"] < 100.0,
        "goal_f1_ge_0_9": e2e["f1"] >= 0.9, "fastest_b1_p99_variant": best.name,
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
