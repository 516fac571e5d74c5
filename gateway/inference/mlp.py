"""Small numpy MLPs (classifier and autoencoder) with backprop, pruning, distillation, ONNX export.

No deep-learning framework: a few dense layers trained with Adam on a single core in seconds.
Everything is seeded, so the same seed gives the same weights and the same ONNX bytes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class MLP:
    """Dense ReLU network; `out` is "sigmoid" (classifier score) or "linear" (autoencoder)."""

    sizes: list[int]
    out: str = "sigmoid"
    seed: int = 0
    W: list[np.ndarray] = field(default_factory=list)
    b: list[np.ndarray] = field(default_factory=list)
    masks: list[np.ndarray] | None = None  # pruning masks (1 keep, 0 pruned)

    def __post_init__(self) -> None:
        if not self.W:
            rng = np.random.default_rng(self.seed)
            for i, o in zip(self.sizes[:-1], self.sizes[1:]):
                self.W.append(rng.normal(0, np.sqrt(2.0 / i), (i, o)))
                self.b.append(np.zeros(o))

    def forward(self, x: np.ndarray, keep: bool = False):
        """Output (and the activations when keep, for backprop)."""
        acts = [x]
        h = x
        for k, (w, b) in enumerate(zip(self.W, self.b)):
            z = h @ w + b
            last = k == len(self.W) - 1
            if not last:
                h = np.maximum(z, 0)
            elif self.out == "sigmoid":
                h = 1.0 / (1.0 + np.exp(-np.clip(z, -40, 40)))
            else:
                h = z
            acts.append(h)
        return (h, acts) if keep else h

    def n_params(self) -> int:
        """Weights + biases (pruned weights not counted)."""
        nz = sum(int((w != 0).sum()) for w in self.W)
        return nz + sum(b.size for b in self.b)


def train(net: MLP, x: np.ndarray, target: np.ndarray, *, epochs: int, lr: float = 3e-3, batch: int = 256,
          pos_weight: float = 1.0, l2: float = 1e-5, seed: int = 0) -> MLP:
    """Adam on BCE (sigmoid nets; soft targets allowed) or MSE (linear nets), in place."""
    rng = np.random.default_rng(seed)
    mw = [np.zeros_like(w) for w in net.W] + [np.zeros_like(b) for b in net.b]
    vw = [np.zeros_like(p) for p in mw]
    step = 0
    n = len(x)
    for _ in range(epochs):
        order = rng.permutation(n)
        for s in range(0, n, batch):
            idx = order[s:s + batch]
            xb, tb = x[idx], target[idx]
            out, acts = net.forward(xb, keep=True)
            if net.out == "sigmoid":
                wgt = np.where(tb > 0.5, pos_weight, 1.0)
                delta = (out - tb) * wgt / len(idx)  # dBCE/dz for a sigmoid output
            else:
                delta = 2.0 * (out - tb) / tb.size
            grads_w, grads_b = [], []
            for k in range(len(net.W) - 1, -1, -1):
                grads_w.insert(0, acts[k].T @ delta + l2 * net.W[k])
                grads_b.insert(0, delta.sum(axis=0))
                if k:
                    delta = (delta @ net.W[k].T) * (acts[k] > 0)
            step += 1
            params = net.W + net.b
            for j, (p, g) in enumerate(zip(params, grads_w + grads_b)):
                mw[j] = 0.9 * mw[j] + 0.1 * g
                vw[j] = 0.999 * vw[j] + 0.001 * g * g
                p -= lr * (mw[j] / (1 - 0.9 ** step)) / (np.sqrt(vw[j] / (1 - 0.999 ** step)) + 1e-8)
            if net.masks is not None:
                for w, m in zip(net.W, net.masks):
                    w *= m
    return net


def prune(net: MLP, sparsity: float) -> MLP:
    """Copy of net with the smallest-magnitude weights of each hidden layer set to zero (and masked)."""
    new = MLP(list(net.sizes), net.out, net.seed, [w.copy() for w in net.W], [b.copy() for b in net.b])
    new.masks = []
    for k, w in enumerate(new.W):
        if k == len(new.W) - 1:  # the tiny output layer carries the decision: keep it dense
            new.masks.append(np.ones_like(w))
            continue
        cut = np.quantile(np.abs(w), sparsity)
        m = (np.abs(w) > cut).astype(w.dtype)
        w *= m
        new.masks.append(m)
    return new


def to_onnx(net: MLP, n_in: int, name: str, in_name: str = "features", out_name: str = "score"):
    """ONNX ModelProto: MatMul+Add(+Relu) layers, Sigmoid output for classifiers; opset 17."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes, inits = [], []
    h = in_name
    for k, (w, b) in enumerate(zip(net.W, net.b)):
        inits.append(numpy_helper.from_array(w.astype(np.float32), f"W{k}"))
        inits.append(numpy_helper.from_array(b.astype(np.float32), f"B{k}"))
        nodes.append(helper.make_node("MatMul", [h, f"W{k}"], [f"mm{k}"], name=f"matmul{k}"))
        nodes.append(helper.make_node("Add", [f"mm{k}", f"B{k}"], [f"z{k}"], name=f"add{k}"))
        h = f"z{k}"
        if k < len(net.W) - 1:
            nodes.append(helper.make_node("Relu", [h], [f"h{k}"], name=f"relu{k}"))
            h = f"h{k}"
    n_out = net.sizes[-1]
    if net.out == "sigmoid":
        nodes.append(helper.make_node("Sigmoid", [h], [out_name], name="sigmoid"))
    else:
        nodes.append(helper.make_node("Identity", [h], [out_name], name="out"))
    graph = helper.make_graph(
        nodes, name,
        [helper.make_tensor_value_info(in_name, TensorProto.FLOAT, ["N", n_in])],
        [helper.make_tensor_value_info(out_name, TensorProto.FLOAT, ["N", n_out])],
        initializer=inits)
    model = helper.make_model(graph, producer_name="fogline-build_model", producer_version="1",
                              opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def prf(y: np.ndarray, pred: np.ndarray) -> dict:
    """Precision, recall, F1 of binary predictions."""
    tp = int(((pred == 1) & (y == 1)).sum())
    fp = int(((pred == 1) & (y == 0)).sum())
    fn = int(((pred == 0) & (y == 1)).sum())
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    return {"precision": round(p, 4), "recall": round(r, 4), "f1": round(2 * p * r / (p + r) if p + r else 0.0, 4)}
