"""Local side of federated learning: weights from the ONNX model, bounded fine-tuning, export, scoring.

The trainable architecture is the one tools/build_model.py ships (fogline.gateway.inference.mlp.MLP exported by
fogline.gateway.inference.mlp.to_onnx: initializers W0,B0,W1,B1,...). Fine-tuning starts from the current model's
weights, keeps its pruning mask (pruned weights stay zero, so their deltas are zero) and its
normalisation (part of the model contract: every gateway normalises the same way). A round is
bounded by steps, wall seconds and sample count, so its CPU time and memory are capped.
"""

from __future__ import annotations

import copy
import io
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from fogline.gateway.inference.features import NodeFeatures, normalise
from fogline.gateway.inference.registry import LoadedModel, ModelError, sha256_bytes
from fogline.gateway.inference.mlp import MLP, prf, to_onnx, train

CHUNK_STEPS = 8  # steps per fogline.gateway.inference.mlp.train call; time and stop checks happen between chunks


@dataclass
class LocalData:
    """A gateway's own windows as raw feature rows (N, F) with 0/1 labels."""

    X: np.ndarray
    y: np.ndarray

    def __len__(self) -> int:
        return len(self.y)


def split_holdout(d: LocalData, ratio: float, block: int = 30, seed: int = 0) -> tuple[LocalData, LocalData]:
    """(train, holdout): whole blocks of consecutive windows held back, so neighbours do not leak."""
    n = len(d)
    nb = max(1, (n + block - 1) // block)
    rng = np.random.default_rng(seed)
    hold_blocks = rng.permutation(nb)[:max(1, int(round(ratio * nb)))] if ratio > 0 and nb > 1 else []
    hold = np.zeros(n, dtype=bool)
    for b in hold_blocks:
        hold[b * block:(b + 1) * block] = True
    return LocalData(d.X[~hold], d.y[~hold]), LocalData(d.X[hold], d.y[hold])


def net_from_onnx(data: bytes | str | Path) -> MLP:
    """fogline.gateway.inference.mlp.MLP with the weights of an exported classifier (W0,B0,...); ModelError if not one."""
    import onnx
    from onnx import numpy_helper

    raw = Path(data).read_bytes() if isinstance(data, (str, Path)) else data
    try:
        model = onnx.load(io.BytesIO(raw))
    except Exception as e:
        raise ModelError(f"federation: ONNX not readable ({type(e).__name__})") from None
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    W, b = [], []
    while f"W{len(W)}" in inits and f"B{len(W)}" in inits:
        W.append(inits[f"W{len(W)}"].astype(np.float64))
        b.append(inits[f"B{len(b)}"].astype(np.float64))
    ops = {n.op_type for n in model.graph.node}
    if not W or W[-1].shape[1] != 1 or "Sigmoid" not in ops or not ops <= {"MatMul", "Add", "Relu", "Sigmoid"}:
        raise ModelError("federation: model is not a trainable float MLP classifier (e.g. a quantised variant)")
    sizes = [W[0].shape[0]] + [w.shape[1] for w in W]
    net = MLP(sizes, "sigmoid", 0, W, b)
    hidden_zero = [float((w == 0).mean()) for w in W[:-1]]
    if hidden_zero and max(hidden_zero) > 0.2:  # a pruned model: keep its sparsity while fine-tuning
        net.masks = [(w != 0).astype(np.float64) for w in W[:-1]] + [np.ones_like(W[-1])]
    return net


def params(net: MLP) -> list[np.ndarray]:
    """Flat tensor list [W0, B0, W1, B1, ...]."""
    return [t for wb in zip(net.W, net.b) for t in wb]


def with_deltas(net: MLP, deltas: list[np.ndarray]) -> MLP:
    """Copy of net plus deltas (pruned weights stay zero)."""
    p = [a + d for a, d in zip(params(net), deltas)]
    new = MLP(list(net.sizes), net.out, net.seed, p[0::2], p[1::2])
    if net.masks is not None:
        new.masks = [m.copy() for m in net.masks]
        for w, m in zip(new.W, new.masks):
            w *= m
    return new


def fine_tune(base: MLP, x: np.ndarray, y: np.ndarray, *, max_steps: int, max_seconds: float, max_samples: int,
              batch: int = 64, lr: float = 2e-3, seed: int = 0,
              stop: Callable[[], bool] | None = None) -> tuple[list[np.ndarray], dict[str, Any]]:
    """(deltas, info) of fine-tuning a copy of base on normalised rows x with labels y, within bounds.

    Keeps only the newest max_samples rows (the caller passes rows oldest first), so memory is
    capped; stops after max_steps optimiser steps or max_seconds of wall time, whichever first.
    """
    t0 = time.monotonic()
    if len(x) > max_samples:
        x, y = x[-max_samples:], y[-max_samples:]
    if len(x) == 0:
        raise ValueError("federation: no local training rows")
    net = with_deltas(base, [np.zeros_like(p) for p in params(base)])
    yy = np.asarray(y, dtype=np.float64).reshape(-1, 1)
    p = float(yy.mean())
    pos_w = float(np.sqrt((1 - p) / max(p, 1e-3))) if p > 0 else 1.0
    rng = np.random.default_rng(seed)
    steps = 0
    while steps < max_steps and time.monotonic() - t0 < max_seconds and not (stop and stop()):
        k = min(CHUNK_STEPS, max_steps - steps)
        idx = rng.choice(len(x), size=min(len(x), k * batch), replace=len(x) < k * batch)
        train(net, x[idx], yy[idx], epochs=1, lr=lr, batch=batch, pos_weight=pos_w, seed=int(rng.integers(1 << 30)))
        steps += (len(idx) + batch - 1) // batch
        time.sleep(0)  # let ingest threads in between chunks
    deltas = [a - b for a, b in zip(params(net), params(base))]
    return deltas, {"steps": steps, "samples": int(len(x)), "seconds": round(time.monotonic() - t0, 3)}


def export(net: MLP, base_manifest: dict[str, Any], version: int, info: dict[str, Any]) -> tuple[dict, bytes]:
    """(manifest, ONNX bytes) of net as a new model version derived from base_manifest."""
    n_in = net.sizes[0]
    proto = to_onnx(net, n_in, f"{base_manifest['name']}-v{version}")
    data = proto.SerializeToString()
    man = copy.deepcopy(base_manifest)
    man.pop("alternates", None)  # they name the base version's files
    man.update({"version": int(version), "variant": f"fed-{info.get('method', 'fedavg')}",
                "file": f"{base_manifest['name']}-v{version}.onnx", "sha256": sha256_bytes(data),
                "size": len(data), "eval": {}, "training": {"federated": info}})
    return man, data


def scores_of(model: LoadedModel, x_norm: np.ndarray) -> np.ndarray:
    """Model scores of normalised rows in batches."""
    if len(x_norm) == 0:
        return np.zeros(0)
    return np.concatenate([model.run(x_norm[i:i + 1024].astype(np.float32)) for i in range(0, len(x_norm), 1024)])


def gate_score(y: np.ndarray, s: np.ndarray, thr: float) -> float:
    """F1 at thr when y has anomalies, else 1 - false-positive rate (a quiet site still judges FPs)."""
    pred = (s >= thr).astype(int)
    if int(np.sum(y)) > 0:
        return float(prf(np.asarray(y), pred)["f1"])
    return float(1.0 - pred.mean()) if len(pred) else 0.0


def features_by_node(sets_by_node: dict[str, list[dict[str, tuple]]], manifest: dict[str, Any]) -> np.ndarray:
    """Raw feature rows of each node's window sets (metric -> stats), node by node in time order."""
    f = manifest["features"]
    rows = []
    for node in sorted(sets_by_node):
        nf = NodeFeatures(metrics=tuple(f["metrics"]), scales=f["scales"], floors=f["floors"])
        rows.extend(nf.vector(s) for s in sets_by_node[node])
    return np.array(rows).reshape(-1, len(manifest["input"]["features"]))


def data_from_store(db_path: str | Path, model: LoadedModel, since: float, window_s: float = 60.0,
                    aliases: dict[str, str] | None = None) -> LocalData:
    """The gateway's own windows since `since` from its SQLite store, pseudo-labelled by the model.

    Labels: the current model's confident decisions (score >= threshold -> 1); windows it is not
    confident about are left out, so fine-tuning adapts to the site's normal without guessing.
    """
    import sqlite3

    con = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        q = ('SELECT n.name, s.metric, w.start, w.count, w.min, w.max, w.mean, w.last, w.stddev FROM windows w '
             'JOIN series s ON s.sid = w.sid JOIN nodes n ON n.nid = s.nid WHERE w.length = ? AND w.start >= ? '
             'ORDER BY n.name, w.start')
        rows = con.execute(q, (window_s, since)).fetchall()
    finally:
        con.close()
    al = aliases or {}
    sets: dict[str, dict[float, dict[str, tuple]]] = {}
    for node, metric, start, *st in rows:
        sets.setdefault(node, {}).setdefault(start, {})[al.get(metric, metric)] = tuple(float(v) for v in st)
    by_node = {n: [v[k] for k in sorted(v)] for n, v in sets.items()}
    return pseudo_label(features_by_node(by_node, model.manifest), model)


def pseudo_label(X: np.ndarray, model: LoadedModel) -> LocalData:
    """Rows the model is confident about (confidence >= its confidence_min), labelled by its decision."""
    from fogline.gateway.inference.decisions import confidence

    if not len(X):
        return LocalData(X, np.zeros(0, dtype=np.int8))
    s = scores_of(model, normalise(X, model.mean, model.std))
    keep = np.array([confidence(float(v), model.threshold) for v in s]) >= model.confidence_min
    return LocalData(X[keep], (s[keep] >= model.threshold).astype(np.int8))
