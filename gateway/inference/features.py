"""Window statistics -> model features: one definition used by the model builder and the gateway.

A node's window set (one `fogline.gateway.aggregate.core.Window` per metric over the same interval) becomes a
fixed-length float32 vector. Features are scale-free shape figures (spread, spike excursions,
missing samples) plus per-node context (change against the previous window and against a slow
baseline), so the model does not depend on a site's absolute climate. Absolute levels are not
features on purpose: the test set's sites have climates the model never saw.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

# Order of the per-metric window statistics (the Window fields the features read).
STATS = ("count", "min", "max", "mean", "last", "stddev")
# Per-metric feature names, in vector order; the full name is "<metric>.<feature>".
PER_METRIC = ("count_ratio", "log_std", "up_excursion", "down_excursion", "log_range",
              "last_dev", "d_prev", "d_base", "trend")
DEFAULT_METRICS = ("temperature", "humidity", "pressure", "vibration")
# Physical scale (what a "large" change is) and noise floor per metric; units: degC, %RH, hPa, g.
DEFAULT_SCALES = {"temperature": 1.0, "humidity": 3.0, "pressure": 1.0, "vibration": 0.05}
DEFAULT_FLOORS = {"temperature": 0.01, "humidity": 0.05, "pressure": 0.01, "vibration": 0.001}
BASE_ALPHA = 0.05  # baseline: ~20 windows of memory
TREND_ALPHA = 0.2  # trend = smoothed change per window (~5 windows): a drift is a steady slope
# Context updates are clipped to +-STEP_CLIP scale units per window, so a step or spike barely
# moves the baseline and trend (they stay a reference for the windows after it), while a slow
# normal change (daily cycle: < 0.03 units/window) is followed exactly.
STEP_CLIP = 0.3


def feature_names(metrics: Sequence[str] = DEFAULT_METRICS) -> list[str]:
    """Full feature names in vector order."""
    return [f"{m}.{f}" for m in metrics for f in PER_METRIC]


@dataclass
class _MetricState:
    max_count: float = 0.0
    prev_mean: float | None = None
    base: float | None = None
    trend: float = 0.0


@dataclass
class NodeFeatures:
    """Per-node feature state: turns successive window sets of one node into vectors."""

    metrics: tuple[str, ...] = DEFAULT_METRICS
    scales: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_SCALES))
    floors: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_FLOORS))
    _state: dict[str, _MetricState] = field(default_factory=dict)

    def copy(self) -> "NodeFeatures":
        """An independent copy of the context (a late set is re-scored in the context it was first scored in)."""
        return NodeFeatures(self.metrics, self.scales, self.floors,
                            {k: dataclasses.replace(v) for k, v in self._state.items()})

    def vector(self, stats: Mapping[str, Sequence[float]]) -> np.ndarray:
        """Feature vector of one window set; stats maps metric -> (count,min,max,mean,last,stddev).

        A metric absent from `stats` gets NaN features (the normaliser maps NaN to the training
        mean, i.e. "nothing unusual"); it does not touch that metric's context state.
        """
        out = np.full(len(self.metrics) * len(PER_METRIC), np.nan, dtype=np.float64)
        for i, m in enumerate(self.metrics):
            s = stats.get(m)
            if s is None:
                continue
            count, lo, hi, mean, last, sd = s
            if not math.isfinite(count + lo + hi + mean + last + sd) or count <= 0:  # one NaN/inf poisons the sum
                continue
            st = self._state.setdefault(m, _MetricState())
            scale = float(self.scales.get(m, 1.0))
            floor = float(self.floors.get(m, 1e-3))
            st.max_count = max(st.max_count, count)
            sd = max(sd, 0.0)
            den = sd + floor
            o = i * len(PER_METRIC)
            out[o + 0] = count / st.max_count
            out[o + 1] = math.log10(den / scale)
            out[o + 2] = min((hi - mean) / den, 50.0)
            out[o + 3] = min((mean - lo) / den, 50.0)
            out[o + 4] = math.log10((hi - lo + floor) / scale)
            out[o + 5] = (last - mean) / scale
            out[o + 6] = 0.0 if st.prev_mean is None else (mean - st.prev_mean) / scale
            out[o + 7] = 0.0 if st.base is None else (mean - st.base) / scale
            if st.prev_mean is not None:
                d = min(max((mean - st.prev_mean) / scale, -STEP_CLIP), STEP_CLIP)
                st.trend += TREND_ALPHA * (d - st.trend)
            out[o + 8] = st.trend
            st.prev_mean = mean
            if st.base is None:
                st.base = mean
            else:
                st.base += BASE_ALPHA * min(max(mean - st.base, -STEP_CLIP * scale), STEP_CLIP * scale)
        return out


def window_stats(window: Any) -> tuple[float, ...]:
    """(count, min, max, mean, last, stddev) of a fogline.gateway.aggregate.core.Window (or any such object)."""
    w = window
    return (float(w.count), float(w.min), float(w.max), float(w.mean), float(w.last), float(w.stddev))


def normalise(x: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """(x - mean) / std as float32, NaN (absent metric) -> 0, clipped to +-20 to bound outliers."""
    z = (np.asarray(x, dtype=np.float64) - np.asarray(mean)) / np.asarray(std)
    z[np.isnan(z)] = 0.0
    np.clip(z, -20.0, 20.0, out=z)  # also maps +-inf to +-20
    return z.astype(np.float32)
