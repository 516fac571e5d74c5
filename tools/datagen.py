"""Seeded generator of labelled multi-sensor series and the gateway's window features.

Each simulated node samples four sensors at 1 Hz:
- temperature (degC): site base + daily cycle + slow weather wander + noise, 0.01 resolution;
- humidity (%RH): anti-correlated with temperature, + wander + noise, clipped to 0..100;
- pressure (hPa): site base + slow weather random walk + noise;
- vibration (g RMS): machine idle level + a smooth working-hours pattern + noise (some nodes have
  no vibration sensor at all: the metric is then absent from their window sets).
Values are float32-rounded like a board's readings.

Anomalies (events, random start and length, labelled per sample):
- spike: 1-3 samples far off (either sign);
- drift: a ramp away from the truth, reset after; labelled where the offset is >= DRIFT_LABEL (2) scale
  units (2 degC, 6 %RH, 2 hPa, 0.1 g: beyond a typical sensor tolerance);
- stuck: the sensor repeats its last value (zero variance);
- step: an offset for a few minutes;
- dropout: a share of the samples is missing;
- overheat (correlated): vibration multiplies and temperature ramps up together;
- glitch (correlated): every sensor of the node steps at once by a moderate amount;
- stuck_pair (correlated, test mix only): temperature and humidity freeze together.

Windows are 60 s, aligned, reduced to (count, min, max, mean, last, stddev) per metric exactly as
`fogline.gateway.aggregate.core` does (population stddev), then to features by `fogline.gateway.inference.features.NodeFeatures`
node by node in time order, the same code the gateway runs. A window is labelled anomalous if it
holds a spike sample, or if at least 20% of its samples of any metric are faulty (so a fault that
merely touches the last second of a window does not count against it).

Splits: train and val use the training mix and climates (disjoint seeds); test uses seeds never
used in training, wider climates (cold stores, hot rooms), different noise levels and a different
anomaly mix (other weights and magnitudes, plus stuck_pair).
"""

from __future__ import annotations

import argparse
import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fogline.gateway.inference.features import DEFAULT_METRICS, DEFAULT_SCALES, NodeFeatures, feature_names

WINDOW_S = 60
SPIKE_MIN_FRAC = 0.2
DRIFT_LABEL = 2.0  # a drift counts as a fault once it is this many scale units off (sensor tolerance)

TRAIN_MIX = {"weights": {"spike": 3, "drift": 1, "stuck": 1.2, "step": 1.5, "dropout": 1, "overheat": 1,
                         "glitch": 1},
             "per_hour": 0.6, "mag": (3.0, 12.0), "climate": (14.0, 26.0), "noise": (0.04, 0.1)}
TEST_MIX = {"weights": {"spike": 2, "drift": 1.5, "stuck": 1, "step": 1, "dropout": 1.5, "overheat": 1,
                        "glitch": 1.5, "stuck_pair": 1},
            "per_hour": 0.8, "mag": (2.5, 10.0), "climate": (2.0, 34.0), "noise": (0.03, 0.12)}
SPLITS = {  # split -> (first seed, nodes, hours, mix); seeds of different splits never overlap
    "train": (1000, 48, 24, TRAIN_MIX),
    "val": (2000, 8, 24, TRAIN_MIX),
    "test": (9000, 12, 24, TEST_MIX),
}
QUICK = {"train": 8, "val": 3, "test": 4, "hours": 8}
KINDS = ("normal", "spike", "drift", "stuck", "step", "dropout", "overheat", "glitch", "stuck_pair")


@dataclass
class Dataset:
    """Windows of one split: stats (N, M, 6) with NaN rows for absent metrics, features, labels."""

    stats: np.ndarray
    X: np.ndarray
    y: np.ndarray
    kind: np.ndarray  # index into KINDS (the first fault kind in the window; 0 normal)
    node: np.ndarray  # node index within the split
    ym: np.ndarray  # (N, M) which metrics are faulty in each window
    start: np.ndarray  # window start, epoch seconds
    metrics: tuple[str, ...] = DEFAULT_METRICS


def _wander(rng: np.random.Generator, n: int, amp: float, k: int = 30) -> np.ndarray:
    """Smooth random wander of about +-amp over hours (per-minute walk, (2k+1)-minute smoothing)."""
    m = n // 60 + 2
    walk = np.cumsum(rng.normal(0, 1, m))
    walk = np.convolve(np.pad(walk, (k, k), mode="edge"), np.ones(2 * k + 1) / (2 * k + 1), "valid")
    walk = walk - walk.mean()
    walk *= amp / (np.abs(walk).max() + 1e-9)
    return np.interp(np.arange(n) / 60.0, np.arange(m), walk)


def _clean_series(rng: np.random.Generator, n: int, t0: int, mix: dict) -> tuple[dict, dict]:
    """Normal sensor series and their noise sigmas for one node."""
    t = t0 + np.arange(n)
    day = 2 * np.pi * ((t % 86400) / 86400.0 - rng.uniform(0.2, 0.4))
    lo, hi = mix["climate"]
    nl, nh = mix["noise"]
    sig = {"temperature": rng.uniform(nl, nh), "humidity": rng.uniform(0.15, 0.5),
           "pressure": rng.uniform(0.03, 0.08), "vibration": rng.uniform(0.004, 0.012)}
    temp = rng.uniform(lo, hi) + rng.uniform(1.0, 5.0) * np.sin(day) + _wander(rng, n, rng.uniform(0.3, 1.5))
    hum = np.clip(rng.uniform(35, 65) - rng.uniform(0.8, 2.0) * (temp - temp.mean()) + _wander(rng, n, 3.0),
                  3, 97)
    # weather: a few hPa over many hours (real pressure tendency rarely exceeds 1-2 hPa/h)
    pres = rng.uniform(995, 1030) + _wander(rng, n, rng.uniform(1.0, 6.0), k=120)
    hour = (t % 86400) / 3600.0
    on, off = rng.uniform(6, 9), rng.uniform(16, 20)
    work = 1 / (1 + np.exp(-(hour - on) * 3)) * (1 / (1 + np.exp((hour - off) * 3)))
    vib = rng.uniform(0.05, 0.15) + rng.uniform(0.1, 0.4) * work
    clean = {"temperature": temp, "humidity": hum, "pressure": pres, "vibration": vib}
    return clean, sig


def _events(rng: np.random.Generator, n: int, mix: dict, metrics: tuple[str, ...]) -> list[dict]:
    """Random, non-overlapping fault events for one node."""
    kinds = [k for k in mix["weights"] if k != "overheat" or "vibration" in metrics]
    w = np.array([mix["weights"][k] for k in kinds], dtype=float)
    count = rng.poisson(mix["per_hour"] * n / 3600.0)
    starts = np.sort(rng.integers(600, max(601, n - 3600), size=count))
    out, busy_until = [], 0
    for s in starts:
        if s < busy_until + 300:
            continue
        kind = kinds[rng.choice(len(kinds), p=w / w.sum())]
        dur = {"spike": int(rng.integers(1, 4)), "drift": int(rng.integers(20, 90)) * 60,
               "stuck": int(rng.integers(8, 45)) * 60, "step": int(rng.integers(3, 15)) * 60,
               "dropout": int(rng.integers(5, 30)) * 60, "overheat": int(rng.integers(5, 25)) * 60,
               "glitch": int(rng.integers(2, 10)) * 60, "stuck_pair": int(rng.integers(8, 40)) * 60}[kind]
        out.append({"kind": kind, "start": int(s), "dur": dur, "metric": metrics[rng.integers(len(metrics))],
                    "mag": float(rng.uniform(*mix["mag"])) * (1 if rng.random() < 0.5 else -1),
                    "frac": float(rng.uniform(0.3, 0.9))})
        busy_until = int(s) + dur
    return out


def _apply(rng: np.random.Generator, ev: dict, x: dict, fault: dict, spike: np.ndarray) -> None:
    """Inject one event into the series x (in place) and mark faulty samples."""
    s, d, m, kind = ev["start"], ev["dur"], ev["metric"], ev["kind"]
    sl = slice(s, s + d)
    idx = KINDS.index(kind)
    sc = DEFAULT_SCALES
    if kind == "spike":
        x[m][sl] += ev["mag"] * sc[m]
        spike[sl] = idx
        fault[m][sl] = idx
    elif kind == "drift":
        off = np.linspace(0, ev["mag"] * 0.6 * sc[m], d)
        x[m][sl] += off
        fault[m][sl] = np.where(np.abs(off) >= DRIFT_LABEL * sc[m], idx, fault[m][sl])
    elif kind == "stuck":
        x[m][sl] = x[m][s - 1]
        fault[m][sl] = idx
    elif kind == "stuck_pair":
        for mm in ("temperature", "humidity"):
            x[mm][sl] = x[mm][s - 1]
            fault[mm][sl] = idx
    elif kind == "step":
        x[m][sl] += ev["mag"] * 0.8 * sc[m]
        fault[m][sl] = idx
    elif kind == "dropout":
        drop = rng.random(d) < ev["frac"]
        seg = x[m][sl]
        seg[drop] = np.nan
        fault[m][sl] = idx
    elif kind == "overheat":
        x["vibration"][sl] *= 1.0 + abs(ev["mag"]) * 0.3
        x["temperature"][sl] += np.linspace(0, abs(ev["mag"]) * 0.6 * sc["temperature"], d)
        fault["vibration"][sl] = idx
        fault["temperature"][sl] = idx
    elif kind == "glitch":
        for mm in x:
            x[mm][sl] += np.sign(ev["mag"]) * rng.uniform(1.2, 2.5) * sc[mm]
            fault[mm][sl] = idx


def _round(m: str, v: np.ndarray) -> np.ndarray:
    res = 0.001 if m == "vibration" else 0.01
    return (np.round(v / res) * res).astype(np.float32).astype(np.float64)


def window_stats(samples: np.ndarray) -> np.ndarray:
    """(W, 60) samples with NaN gaps -> (W, 6) count,min,max,mean,last,stddev (NaN row if empty)."""
    ok = ~np.isnan(samples)
    count = ok.sum(axis=1).astype(np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mn, mx = np.nanmin(samples, axis=1), np.nanmax(samples, axis=1)
        mean = np.nanmean(samples, axis=1)
        sd = np.sqrt(np.nanmean((samples - mean[:, None]) ** 2, axis=1))
    last_idx = samples.shape[1] - 1 - np.argmax(ok[:, ::-1], axis=1)
    last = samples[np.arange(len(samples)), last_idx]
    out = np.stack([count, mn, mx, mean, last, sd], axis=1)
    out[count == 0] = np.nan
    return out


def gen_node(seed: int, hours: int, mix: dict, t0: int = 1_767_225_600) -> dict:
    """One node's windows: stats (W, M, 6), labels, kinds, starts."""
    rng = np.random.default_rng(seed)
    n = hours * 3600
    metrics = DEFAULT_METRICS if rng.random() > 0.2 else DEFAULT_METRICS[:3]
    clean, sig = _clean_series(rng, n, t0, mix)
    x = {m: clean[m] + rng.normal(0, sig[m], n) for m in DEFAULT_METRICS}
    x["humidity"] = np.clip(x["humidity"], 0, 100)
    fault = {m: np.zeros(n, dtype=np.int8) for m in DEFAULT_METRICS}
    spike = np.zeros(n, dtype=np.int8)
    for ev in _events(rng, n, mix, metrics):
        _apply(rng, ev, x, fault, spike)
    w = n // WINDOW_S
    stats = np.full((w, len(DEFAULT_METRICS), 6), np.nan)
    label = np.zeros(w, dtype=np.int8)
    ym = np.zeros((w, len(DEFAULT_METRICS)), dtype=np.int8)
    kind = np.zeros(w, dtype=np.int8)
    for i, m in enumerate(DEFAULT_METRICS):
        if m not in metrics:
            continue
        stats[:, i, :] = window_stats(_round(m, x[m]).reshape(w, WINDOW_S))
        f = fault[m].reshape(w, WINDOW_S)
        hit = (f > 0).mean(axis=1) >= SPIKE_MIN_FRAC
        ym[:, i] = hit | (f == KINDS.index("spike")).any(axis=1)
        first = f.max(axis=1)
        kind = np.where(hit & (kind == 0), first, kind)
        label |= hit
    sp = spike.reshape(w, WINDOW_S).max(axis=1)
    kind = np.where((sp > 0) & (kind == 0), sp, kind)
    label |= sp > 0
    return {"stats": stats, "y": label, "ym": ym, "kind": kind, "start": t0 + np.arange(w) * WINDOW_S}


def features(stats: np.ndarray, metrics: tuple[str, ...] = DEFAULT_METRICS) -> np.ndarray:
    """Feature matrix of one node's windows in time order, through fogline.gateway.inference.features.NodeFeatures."""
    nf = NodeFeatures(metrics=metrics)
    rows = []
    for w in stats:
        rows.append(nf.vector({m: w[i] for i, m in enumerate(metrics) if not np.isnan(w[i, 0])}))
    return np.array(rows)


def make_split(name: str, quick: bool = False, seed_offset: int = 0) -> Dataset:
    """Generate one split ("train", "val", "test"); quick shrinks nodes and hours for tests."""
    first, nodes, hours, mix = SPLITS[name]
    if quick:
        nodes, hours = QUICK[name], QUICK["hours"]
    parts = [gen_node(first + seed_offset + k, hours, mix) for k in range(nodes)]
    X = np.concatenate([features(p["stats"]) for p in parts])
    return Dataset(stats=np.concatenate([p["stats"] for p in parts]), X=X,
                   y=np.concatenate([p["y"] for p in parts]).astype(np.int8),
                   kind=np.concatenate([p["kind"] for p in parts]).astype(np.int8),
                   node=np.concatenate([np.full(len(p["y"]), k) for k, p in enumerate(parts)]),
                   ym=np.concatenate([p["ym"] for p in parts]),
                   start=np.concatenate([p["start"] for p in parts]))


def mix_blocks(ds: Dataset, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Augmented rows: normal windows with 1-2 metric feature blocks swapped in from other windows.

    Half get blocks from windows where that metric is faulty (label 1), half from windows where it
    is fine (label 0), so the model learns "any metric faulty -> anomaly" for combinations the
    generator rarely draws (two sensors failing at once) without learning "mixed -> anomaly".
    """
    rng = np.random.default_rng(seed)
    per = ds.X.shape[1] // len(ds.metrics)
    normal = np.flatnonzero(ds.y == 0)
    X = ds.X[rng.choice(normal, n)].copy()
    y = (rng.random(n) < 0.5).astype(np.int8)
    pools = {}
    for m in range(len(ds.metrics)):
        present = ~np.isnan(ds.X[:, m * per])
        pools[(m, 1)] = np.flatnonzero((ds.ym[:, m] == 1) & present)
        pools[(m, 0)] = np.flatnonzero((ds.y == 0) & present)
    for i in range(n):
        ms = rng.choice(len(ds.metrics), size=int(rng.integers(1, 3)), replace=False)
        for m in ms:
            pool = pools[(m, int(y[i]))]
            if len(pool):
                X[i, m * per:(m + 1) * per] = ds.X[pool[rng.integers(len(pool))], m * per:(m + 1) * per]
    return X, y


def describe(ds: Dataset) -> dict:
    """Counts of windows per kind."""
    kinds = {KINDS[k]: int((ds.kind == k).sum()) for k in range(len(KINDS)) if (ds.kind == k).any()}
    return {"windows": int(len(ds.y)), "anomalous": int(ds.y.sum()), "by_kind": kinds}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", help="write the splits as .npz here")
    a = ap.parse_args()
    for name in SPLITS:
        ds = make_split(name, quick=a.quick)
        print(name, json.dumps(describe(ds)))
        if a.out:
            Path(a.out).mkdir(parents=True, exist_ok=True)
            np.savez_compressed(Path(a.out) / f"{name}.npz", stats=ds.stats, X=ds.X, y=ds.y, kind=ds.kind,
                                node=ds.node, start=ds.start, names=np.array(feature_names()))


if __name__ == "__main__":
    main()


def window_sets(ds: Dataset, prefix: str = "node") -> list[list]:
    """fogline.gateway.aggregate.core.Window sets (one list per window row, metrics in order) for a split."""
    from fogline.gateway.aggregate.core import Window

    out = []
    for i in range(len(ds.y)):
        node, start = f"{prefix}{int(ds.node[i])}", float(ds.start[i])
        ws = []
        for j, m in enumerate(ds.metrics):
            c, lo, hi, mean, last, sd = ds.stats[i, j]
            if np.isnan(c):
                continue
            ws.append(Window(node, m, start, start + WINDOW_S, int(c), float(lo), float(hi), float(mean),
                             float(last), float(sd)))
        out.append(ws)
    return out
