"""Simulated federation: three gateways with different local data, for tests and tools/bench/federation.py.

Gateways differ in climate, sensor mix and anomaly mix/rate (tools/datagen.py):
  gw-cold  cold store (0..8 degC), no vibration sensors, few anomalies (spikes, stuck sensors);
  gw-hot   hot machine room (28..36 degC), vibration, drifts/steps/overheating;
  gw-mild  office climate, vibration, many dropouts and glitches.
Each trains on its own nodes; the union test mix is unseen nodes of all three. The starting model
is the shipped architecture (read from the bundled ONNX) trained briefly on a little generic data,
as a site that shipped with a weak model would have.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fogline.gateway.federation import local as fedlocal
from fogline.gateway.federation.coord import Coordinator
from fogline.gateway.federation.core import FederationConfig, Member, load_bytes, registry_installer
from fogline.gateway.inference.registry import BUNDLED_DIR, LoadedModel, ModelRegistry, read_manifest
from fogline.tools import datagen
from fogline.gateway.inference.mlp import MLP, prf, train


def _mix(**kw: Any) -> dict:
    m = dict(datagen.TRAIN_MIX)
    m.update(kw)
    return m


GATEWAYS = {  # id -> (mix, has vibration sensors, seed base)
    "gw-cold": (_mix(climate=(0.0, 8.0), per_hour=0.3, weights={"spike": 3, "stuck": 1}), False, 100),
    "gw-hot": (_mix(climate=(28.0, 36.0), per_hour=0.8, weights={"drift": 1, "step": 2, "overheat": 1}), True, 200),
    "gw-mild": (_mix(climate=(14.0, 24.0), per_hour=1.2, weights={"dropout": 1, "glitch": 1}), True, 300),
}
TRAIN_SEED, TEST_SEED = 5000, 7000
WEAK_LR = 0.002  # learning rate for rounds from the weak start model (the shipped one uses the config default)


@dataclass
class Site:
    """One simulated gateway's data: training windows (raw features) and the window stats behind them."""
    gw: str
    data: fedlocal.LocalData
    stats: np.ndarray  # (N, M, 6) window statistics the features came from (never leave the gateway)


def gateway_data(gw: str, nodes: int, hours: int, seed0: int) -> Site:
    """Windows of `nodes` simulated nodes of gateway gw (labels from the generator)."""
    mix, vib, base = GATEWAYS[gw]
    xs, ys, sts = [], [], []
    for k in range(nodes):
        p = datagen.gen_node(seed0 + base + k, hours, mix)
        st, y = p["stats"].copy(), p["y"] > 0
        if not vib:  # this site has no vibration sensors: drop the metric and its faults
            st[:, 3, :] = np.nan
            y = p["ym"][:, :3].any(axis=1)
        xs.append(datagen.features(st))
        ys.append(y.astype(np.int8))
        sts.append(st)
    return Site(gw, fedlocal.LocalData(np.concatenate(xs), np.concatenate(ys)), np.concatenate(sts))


def union_test(nodes: int, hours: int) -> fedlocal.LocalData:
    """Unseen nodes of every gateway, concatenated."""
    parts = [gateway_data(g, nodes, hours, TEST_SEED).data for g in GATEWAYS]
    return fedlocal.LocalData(np.concatenate([p.X for p in parts]), np.concatenate([p.y for p in parts]))


def base_model(seed: int = 3) -> tuple[dict[str, Any], bytes]:
    """(manifest, ONNX bytes) v1: the shipped architecture, briefly trained on one generic node."""
    shipped = read_manifest(BUNDLED_DIR)
    sizes = fedlocal.net_from_onnx(BUNDLED_DIR / shipped["file"]).sizes
    mean, std = shipped["normalisation"]["mean"], shipped["normalisation"]["std"]
    g = gateway_data("gw-mild", 1, 4, 0).data
    from fogline.gateway.inference.features import normalise
    net = train(MLP(list(sizes), seed=seed), normalise(g.X, mean, std), g.y[:, None].astype(np.float64),
                epochs=1, batch=64, seed=seed)
    man, data = fedlocal.export(net, shipped, 1, {"method": "seed"})
    man.update({"variant": "seed-mlp", "threshold": 0.5, "training": {"seed": seed, "note": "weak starting model"}})
    return man, data


def f1(model: LoadedModel, d: fedlocal.LocalData) -> float:
    """F1 of a loaded model at its threshold on raw feature rows."""
    from fogline.gateway.inference.features import normalise
    s = fedlocal.scores_of(model, normalise(d.X, model.mean, model.std))
    return float(prf(d.y, (s >= model.threshold).astype(int))["f1"])


def local_only(base: tuple[dict[str, Any], bytes], site: Site, cfg: FederationConfig, rounds: int) -> LoadedModel:
    """The model gw would have trained alone: the same split, steps x rounds of fine-tuning on its train part."""
    man, data = base
    tr, _hold = fedlocal.split_holdout(site.data, cfg.holdout_ratio, seed=len(site.data))
    from fogline.gateway.inference.features import normalise
    x = normalise(tr.X, man["normalisation"]["mean"], man["normalisation"]["std"])
    net = fedlocal.net_from_onnx(data)
    deltas, _ = fedlocal.fine_tune(net, x, tr.y, max_steps=cfg.max_steps * rounds, max_seconds=600,
                                   max_samples=cfg.max_samples, batch=cfg.batch, lr=cfg.lr, seed=1)
    m2, d2 = fedlocal.export(fedlocal.with_deltas(net, deltas), man, man["version"] + 1, {"method": "local"})
    m2["threshold"] = man["threshold"]
    return load_bytes(m2, d2)


def keys() -> dict[str, bytes]:
    """Deterministic per-participant test keys (never use these anywhere real)."""
    ids = list(GATEWAYS) + ["coordinator"]
    return {g: (g.encode() * 8)[:32] for g in ids}


def payload_sequences(payload: bytes) -> list[np.ndarray]:
    """Every run of numbers in a federation payload: float32 tensors and lists of CBOR numbers in the body."""
    import cbor2
    out: list[np.ndarray] = []

    def walk(o: Any) -> None:
        if isinstance(o, dict):
            for k, v in o.items():
                if k == "data" and isinstance(v, list):  # delta tensors
                    code = {"float16": "<f2"}.get(o.get("dtype"), "<f4")
                    out.extend(np.frombuffer(b, code).astype(np.float64) for b in v)
                else:
                    walk(v)
        elif isinstance(o, list):
            nums = [float(v) for v in o if isinstance(v, (int, float)) and not isinstance(v, bool)]
            if nums:
                out.append(np.array(nums))
            for v in o:
                walk(v)
        elif isinstance(o, float):
            out.append(np.array([o]))

    walk(cbor2.loads(cbor2.loads(payload)["body"]))
    return out


def private_triples(arrays: list[np.ndarray]) -> set[tuple[float, float, float]]:
    """Consecutive value triples of each row (window stats, feature rows), float32-rounded as tensors are,
    leaving out triples with a zero or only whole numbers."""
    out: set[tuple[float, float, float]] = set()
    for a in arrays:
        rows = np.asarray(a, dtype=np.float64).reshape(len(a), -1).astype(np.float32).astype(np.float64)
        for r in rows:
            r = r[np.isfinite(r)]
            out.update(zip(r[:-2].tolist(), r[1:-1].tolist(), r[2:].tolist()))
    # zeros and whole numbers (empty deltas, counts, first-window context) say nothing about a site
    return {t for t in out if 0.0 not in t and not all(v == int(v) for v in t)}


def leaked(payload: bytes, triples: set[tuple[float, float, float]]) -> list[tuple[float, float, float]]:
    """Triples of private values that appear in a row inside the payload (should be none)."""
    hits = []
    for seq in payload_sequences(payload):
        s32 = seq.astype(np.float32).astype(np.float64).tolist()
        hits.extend(t for t in zip(s32, s32[1:], s32[2:]) if t in triples)
    return hits


def build(cfg: FederationConfig, sites: list[Site], base: tuple[dict[str, Any], bytes], buses: dict[str, Any],
          reg_root: Path, threaded: bool = True) -> tuple[Coordinator, list[Member]]:
    """Coordinator on buses["coordinator"] and one Member per site on buses[gw], each with its own registry."""
    k = keys()
    coord = Coordinator(cfg, "coordinator", k["coordinator"], {s.gw: k[s.gw] for s in sites}, base,
                        buses["coordinator"])
    members = []
    for s in sites:
        reg = ModelRegistry(reg_root / s.gw)
        members.append(Member(cfg, s.gw, k[s.gw], {"coordinator": k["coordinator"]}, s.data, base, buses[s.gw],
                              install=registry_installer(reg), threaded=threaded))
    return coord, members
