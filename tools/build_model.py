"""Train the gateway's anomaly model, export ONNX variants, measure them, pick and write the default.

    python tools/build_model.py [--quick] [--seed 7] [--out gateway/models] [--version 1]

Data: tools/datagen.py (train / val / test; test = unseen seeds, climates and anomaly mix).
Model: an MLP classifier on the window features of gateway/inference/features.py (teacher 32-48-24-1), and
its variants: dynamic INT8 and static INT8 (onnxruntime.quantization), magnitude-pruned (70% of
hidden weights, fine-tuned with the mask), a distilled student (32-12-1, trained on the teacher's
scores) and a small autoencoder trained on normal windows only (unsupervised baseline).
Every variant gets its decision threshold on val (max F1), then is measured on test.

Selection rule (uses val, never test): among variants whose val F1 is within 0.01 of the best val
F1, take the one with the lowest p50 latency at batch 1 (p99 breaks ties). The chosen model and the FP32 teacher are
written to --out with manifest.json (sha256, input schema, normalisation, thresholds).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fogline.gateway.inference import features as F
from fogline.gateway.inference.mlp import MLP, prf, prune, to_onnx, train
from fogline.tools import datagen

ROOT = Path(__file__).resolve().parent.parent

MODEL_NAME = "fogline-anomaly"
F1_TOLERANCE = 0.01
AUGMENT_DIV = 4  # train rows / augmented rows (datagen.mix_blocks)


@dataclass
class Variant:
    name: str
    path: Path
    threshold: float = 0.5
    size: int = 0
    lat: dict | None = None
    val: dict | None = None
    test: dict | None = None


def session(path: Path):
    """onnxruntime session pinned to one thread, as the gateway runs it."""
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def scores(path: Path, x: np.ndarray) -> np.ndarray:
    """Model scores for x (float32 rows), in batches of 1024."""
    s = session(path)
    name = s.get_inputs()[0].name
    return np.concatenate([s.run(None, {name: x[i:i + 1024]})[0][:, 0] for i in range(0, len(x), 1024)])


def best_threshold(y: np.ndarray, s: np.ndarray) -> float:
    """Threshold maximising F1 on (y, s); ties -> the lowest, grid on score quantiles."""
    cands = np.unique(np.quantile(s, np.linspace(0.5, 0.999, 300)))
    f1 = [prf(y, (s >= t).astype(int))["f1"] for t in cands]
    return float(cands[int(np.argmax(f1))])


def latency(path: Path, n_in: int, runs: int, batch: int, seed: int = 0) -> tuple[float, float]:
    """(p50, p99) microseconds per call of `batch` rows, 1 thread, after a warm-up."""
    s = session(path)
    name = s.get_inputs()[0].name
    x = np.random.default_rng(seed).normal(0, 1, (batch, n_in)).astype(np.float32)
    for _ in range(min(200, runs)):
        s.run(None, {name: x})
    t = np.empty(runs)
    for i in range(runs):
        t0 = time.perf_counter_ns()
        s.run(None, {name: x})
        t[i] = time.perf_counter_ns() - t0
    return float(np.percentile(t, 50) / 1e3), float(np.percentile(t, 99) / 1e3)


def confidence(score: np.ndarray, thr: float) -> np.ndarray:
    """0 at the threshold, 1 at score 0 or 1: how far the score is from the decision boundary."""
    s = np.asarray(score, dtype=np.float64)
    return np.where(s >= thr, (s - thr) / max(1 - thr, 1e-9), (thr - s) / max(thr, 1e-9))


def pick_confidence_min(y: np.ndarray, s: np.ndarray, thr: float, target_acc: float = 0.99) -> float:
    """Smallest confidence at which confident decisions on val are >= target_acc right (0.2..0.9)."""
    c = confidence(s, thr)
    pred = (s >= thr).astype(int)
    for cm in np.linspace(0.2, 0.9, 36):
        sel = c >= cm
        if sel.sum() and (pred[sel] == y[sel]).mean() >= target_acc:
            return round(float(cm), 3)
    return 0.9


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def norm_stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature mean and std over train (NaN = absent metric ignored; std floored)."""
    mean = np.nanmean(x, axis=0)
    std = np.nanstd(x, axis=0)
    return np.nan_to_num(mean), np.maximum(np.nan_to_num(std, nan=1.0), 1e-3)


def autoencoder_onnx(ae: MLP, n_in: int, thr_log: float, scale: float, path: Path) -> None:
    """Autoencoder graph whose output is sigmoid((log mse - thr_log) * scale): a 0..1 score."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    base = to_onnx(ae, n_in, "ae", out_name="recon")
    g = base.graph
    g.output.pop()
    g.initializer.extend([numpy_helper.from_array(np.array([thr_log], np.float32), "thr_log"),
                          numpy_helper.from_array(np.array([scale], np.float32), "ae_scale"),
                          numpy_helper.from_array(np.array([1e-6], np.float32), "eps")])
    g.node.extend([
        helper.make_node("Sub", ["recon", "features"], ["diff"]),
        helper.make_node("Mul", ["diff", "diff"], ["sq"]),
        helper.make_node("ReduceMean", ["sq"], ["mse"], axes=[1], keepdims=1),
        helper.make_node("Add", ["mse", "eps"], ["mse_e"]),
        helper.make_node("Log", ["mse_e"], ["lmse"]),
        helper.make_node("Sub", ["lmse", "thr_log"], ["centred"]),
        helper.make_node("Mul", ["centred", "ae_scale"], ["logit"]),
        helper.make_node("Sigmoid", ["logit"], ["score"]),
    ])
    g.output.extend([helper.make_tensor_value_info("score", TensorProto.FLOAT, ["N", 1])])
    onnx.checker.check_model(base)
    onnx.save(base, str(path))


def build(seed: int, quick: bool, work: Path, lat_runs: int, log=print) -> tuple[list[Variant], dict]:
    """Train, export and measure every variant in `work`; returns (variants, context)."""
    import logging

    import onnx
    from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType, quantize_dynamic,
                                          quantize_static)

    t0 = time.perf_counter()
    tr, va, te = (datagen.make_split(s, quick=quick) for s in ("train", "val", "test"))
    mean, std = norm_stats(tr.X)
    xva, xte = (F.normalise(d.X, mean, std) for d in (va, te))
    xmix, ymix = datagen.mix_blocks(tr, len(tr.y) // AUGMENT_DIV, seed)
    xtr = F.normalise(np.concatenate([tr.X, xmix]), mean, std)
    ytr = np.concatenate([tr.y, ymix]).astype(np.float64)[:, None]
    n_in = xtr.shape[1]
    log(f"data: train {len(xtr)} val {len(xva)} test {len(xte)} windows, {n_in} features "
        f"({time.perf_counter() - t0:.1f} s)")
    epochs = 8 if quick else 30
    pos_w = float((1 - ytr.mean()) / max(ytr.mean(), 1e-3)) ** 0.5

    teacher = train(MLP([n_in, 48, 24, 1], seed=seed), xtr, ytr, epochs=epochs, pos_weight=pos_w, seed=seed)
    pruned = train(prune(teacher, 0.7), xtr, ytr, epochs=max(2, epochs // 4), lr=1e-3, pos_weight=pos_w,
                   seed=seed + 1)
    soft = teacher.forward(xtr)
    student = train(MLP([n_in, 12, 1], seed=seed + 2), xtr, 0.5 * soft + 0.5 * ytr, epochs=epochs,
                    pos_weight=pos_w, seed=seed + 2)
    normal = xtr[:len(tr.y)][tr.y == 0]
    ae = train(MLP([n_in, 16, 6, 16, n_in], out="linear", seed=seed + 3), normal, normal, epochs=epochs,
               seed=seed + 3)
    log(f"trained teacher/pruned/student/autoencoder ({time.perf_counter() - t0:.1f} s)")

    v: list[Variant] = []
    for name, net in (("mlp-fp32", teacher), ("mlp-pruned70-fp32", pruned), ("student-fp32", student)):
        p = work / f"{name}.onnx"
        onnx.save(to_onnx(net, n_in, name), str(p))
        v.append(Variant(name, p))
    err = np.log(((ae.forward(xva) - xva) ** 2).mean(axis=1) + 1e-6)
    thr_log = float(np.quantile(err[va.y == 0], 0.99))
    autoencoder_onnx(ae, n_in, thr_log, 2.0, work / "ae-fp32.onnx")
    v.append(Variant("ae-fp32", work / "ae-fp32.onnx"))

    class Calib(CalibrationDataReader):
        def __init__(self) -> None:
            self.it = iter({"features": xtr[i:i + 64]} for i in range(0, min(len(xtr), 4096), 64))

        def get_next(self):
            return next(self.it, None)

    logging.getLogger().setLevel(logging.ERROR)  # quantizer's "consider pre-processing" advice
    for base in ("mlp-fp32", "student-fp32"):
        src = work / f"{base}.onnx"
        stem = base.replace("-fp32", "")
        dyn = work / f"{stem}-int8dyn.onnx"
        quantize_dynamic(str(src), str(dyn), weight_type=QuantType.QInt8)
        v.append(Variant(f"{stem}-int8dyn", dyn))
        sta = work / f"{stem}-int8static.onnx"
        quantize_static(str(src), str(sta), Calib(), quant_format=QuantFormat.QDQ,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
        v.append(Variant(f"{stem}-int8static", sta))

    for var in v:
        var.size = var.path.stat().st_size
        sv, st = scores(var.path, xva), scores(var.path, xte)
        var.threshold = round(best_threshold(va.y, sv), 5)
        var.val = prf(va.y, (sv >= var.threshold).astype(int))
        var.test = prf(te.y, (st >= var.threshold).astype(int))
        b1 = latency(var.path, n_in, lat_runs, 1)
        b64 = latency(var.path, n_in, max(50, lat_runs // 10), 64)
        var.lat = {"b1_p50_us": round(b1[0], 2), "b1_p99_us": round(b1[1], 2),
                   "b64_p50_us": round(b64[0], 2), "b64_p99_us": round(b64[1], 2),
                   "b64_per_window_us": round(b64[0] / 64, 3)}
    log(f"measured {len(v)} variants ({time.perf_counter() - t0:.1f} s)")
    ctx = {"mean": mean, "std": std, "val": va, "test": te, "xva": xva, "xte": xte, "n_in": n_in,
           "seed": seed, "quick": quick}
    return v, ctx


def choose(variants: list[Variant]) -> Variant:
    """Fastest (p50 at batch 1, to 0.1 us; then p99) among variants within F1_TOLERANCE of the best val F1.

    p50 rather than p99 ranks speed because p99 on a shared 2-core machine is mostly scheduler noise.
    """
    best = max(x.val["f1"] for x in variants)
    ok = [x for x in variants if x.val["f1"] >= best - F1_TOLERANCE]
    return min(ok, key=lambda x: (round(x.lat["b1_p50_us"], 1), x.lat["b1_p99_us"], x.name))


def table(variants: list[Variant], chosen: Variant | None = None) -> str:
    """The variant table as text."""
    head = (f"{'variant':<22}{'bytes':>7}{'b1 p50':>8}{'b1 p99':>8}{'b64 p50':>9}{'b64 p99':>9}"
            f"{'val F1':>8}{'test P':>8}{'test R':>8}{'test F1':>8}")
    rows = [head, "-" * len(head)]
    for x in variants:
        mark = "  <- default" if chosen is not None and x is chosen else ""
        rows.append(f"{x.name:<22}{x.size:>7}{x.lat['b1_p50_us']:>8.1f}{x.lat['b1_p99_us']:>8.1f}"
                    f"{x.lat['b64_p50_us']:>9.1f}{x.lat['b64_p99_us']:>9.1f}{x.val['f1']:>8.3f}"
                    f"{x.test['precision']:>8.3f}{x.test['recall']:>8.3f}{x.test['f1']:>8.3f}{mark}")
    rows.append("latency in microseconds per call (onnxruntime, 1 thread); thresholds tuned on val")
    return "\n".join(rows)


def per_kind_recall(ds, pred: np.ndarray) -> dict:
    """Recall per anomaly kind on a split (false-positive rate for 'normal')."""
    out = {}
    for k, name in enumerate(datagen.KINDS):
        sel = ds.kind == k
        if sel.any():
            key = "normal_fp_rate" if k == 0 else name
            out[key] = round(float(pred[sel].mean()), 4)
    return out


def manifest_for(var: Variant, ctx: dict, version: int, file: str, conf_min: float, extra: dict) -> dict:
    """manifest.json content for a written model file."""
    return {
        "name": MODEL_NAME, "version": version, "variant": var.name, "file": file,
        "sha256": sha256(var.path), "size": var.size,
        "input": {"name": "features", "dtype": "float32", "shape": [None, ctx["n_in"]],
                  "features": F.feature_names()},
        "output": {"name": "score", "dtype": "float32", "shape": [None, 1],
                   "meaning": "anomaly probability-like score in 0..1"},
        "features": {"metrics": list(F.DEFAULT_METRICS), "scales": F.DEFAULT_SCALES, "floors": F.DEFAULT_FLOORS,
                     "window_s": datagen.WINDOW_S, "base_alpha": F.BASE_ALPHA},
        "normalisation": {"mean": [round(float(m), 6) for m in ctx["mean"]],
                          "std": [round(float(s), 6) for s in ctx["std"]]},
        "threshold": var.threshold, "confidence_min": conf_min,
        "eval": {"val": var.val, "test": var.test, "latency_us": var.lat, **extra},
        "training": {"seed": ctx["seed"], "quick": ctx["quick"], "generator": "tools/datagen.py",
                     "selection": f"fastest b1 p50 within {F1_TOLERANCE} of best val F1"},
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small data and few epochs (seconds; for tests)")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--version", type=int, default=1)
    ap.add_argument("--out", default=str(ROOT / "gateway" / "models"), help="model dir to write ('' = none)")
    ap.add_argument("--lat-runs", type=int, default=None, help="batch-1 latency runs per variant")
    ap.add_argument("--json", help="also write the full results here")
    a = ap.parse_args(argv)
    lat_runs = a.lat_runs or (300 if a.quick else 3000)
    with tempfile.TemporaryDirectory() as tmp:
        variants, ctx = build(a.seed, a.quick, Path(tmp), lat_runs)
        chosen = choose(variants)
        print(table(variants, chosen))
        sc = scores(chosen.path, ctx["xva"])
        conf_min = pick_confidence_min(ctx["val"].y, sc, chosen.threshold)
        st = scores(chosen.path, ctx["xte"])
        pred = (st >= chosen.threshold).astype(int)
        conf = confidence(st, chosen.threshold) >= conf_min
        extra = {"test_by_kind": per_kind_recall(ctx["test"], pred),
                 "test_raw_forward_share": round(float(1 - conf.mean()), 4),
                 "test_confident_accuracy": round(float((pred[conf] == ctx["test"].y[conf]).mean()), 4)}
        print(f"default: {chosen.name} (rule: fastest b1 p50 within {F1_TOLERANCE} of best val F1)")
        print("test recall by kind:", json.dumps(extra["test_by_kind"]))
        print(f"confidence_min {conf_min}: raw-forward share {extra['test_raw_forward_share']:.3f}, "
              f"confident accuracy {extra['test_confident_accuracy']:.4f}")
        result = {"default": chosen.name, "variants": [
            {"name": x.name, "bytes": x.size, "threshold": x.threshold, **x.lat, "val_f1": x.val["f1"],
             **{f"test_{k}": val for k, val in x.test.items()}} for x in variants], **extra}
        if a.out:
            out = Path(a.out)
            out.mkdir(parents=True, exist_ok=True)
            fname = f"{MODEL_NAME}-v{a.version}.onnx"
            (out / fname).write_bytes(chosen.path.read_bytes())
            man = manifest_for(chosen, ctx, a.version, fname, conf_min, extra)
            # also ship the FP32 teacher and the best INT8 variant (by val F1), for switching by manifest
            int8 = max((x for x in variants if "int8" in x.name), key=lambda x: (x.val["f1"], x.name))
            alts = [x for x in (next(x for x in variants if x.name == "mlp-fp32"), int8) if x is not chosen]
            for ref in alts:
                rname = f"{MODEL_NAME}-v{a.version}-{ref.name}.onnx"
                (out / rname).write_bytes(ref.path.read_bytes())
                man.setdefault("alternates", []).append(
                    {"variant": ref.name, "file": rname, "sha256": sha256(ref.path), "threshold": ref.threshold,
                     "val": ref.val, "test": ref.test, "latency_us": ref.lat})
            (out / "manifest.json").write_text(json.dumps(man, indent=1) + "\n")
            print(f"wrote {out / fname} and {out / 'manifest.json'}")
        if a.json:
            Path(a.json).write_text(json.dumps(result, indent=1))
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
