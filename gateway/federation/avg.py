"""Aggregation of federated model updates: FedAvg and robust variants, pure numpy.

An update is a list of weight-delta tensors (same shapes for every gateway) plus the number of
samples it was trained on. `aggregate` returns the combined delta:

- "fedavg": mean weighted by sample counts (McMahan et al. 2017);
- "median": coordinate-wise median (a minority of arbitrary updates cannot move it far);
- "trimmed_mean": per coordinate, drop ceil(trim x n) of the highest and of the lowest values (at least
  one each with 3+ updates and trim > 0, never all), then average.

Non-finite updates are refused before aggregation (`check_update`), never averaged. With three or
more updates, `screen` also drops any update whose delta norm is more than `max_norm_ratio` times the
median norm (a gateway sending scaled weights), so even plain FedAvg is not pulled away by it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fogline.gateway.federation.config import AGGREGATORS as METHODS


class UpdateRefused(ValueError):
    """An update was refused; the message says why."""


@dataclass
class Update:
    """One gateway's contribution to a round."""

    gateway: str
    deltas: list[np.ndarray]
    samples: int


def check_update(u: Update, shapes: list[tuple[int, ...]], max_samples: int = 10_000_000) -> None:
    """Raise UpdateRefused unless u has the expected shapes, finite values and a sane sample count."""
    if not isinstance(u.samples, int) or isinstance(u.samples, bool) or not 0 < u.samples <= max_samples:
        raise UpdateRefused(f"update {u.gateway}: sample count {u.samples!r} out of range")
    if [tuple(d.shape) for d in u.deltas] != [tuple(s) for s in shapes]:
        raise UpdateRefused(f"update {u.gateway}: tensor shapes do not match the base model")
    for d in u.deltas:
        if not np.all(np.isfinite(d)):
            raise UpdateRefused(f"update {u.gateway}: non-finite values (NaN/inf)")


def norm(deltas: list[np.ndarray]) -> float:
    """L2 norm over all tensors of an update."""
    return float(np.sqrt(sum(float(np.sum(np.square(d, dtype=np.float64))) for d in deltas)))


def screen(updates: list[Update], max_norm_ratio: float) -> tuple[list[Update], list[tuple[str, str]]]:
    """(kept, [(gateway, reason)]): drop updates whose norm exceeds max_norm_ratio x the median norm."""
    if len(updates) < 3 or max_norm_ratio <= 0:
        return list(updates), []
    norms = [norm(u.deltas) for u in updates]
    med = float(np.median(norms))
    kept, dropped = [], []
    for u, n in zip(updates, norms):
        if med > 0 and n > max_norm_ratio * med:
            dropped.append((u.gateway, f"delta norm {n:.3g} > {max_norm_ratio} x median {med:.3g}"))
        else:
            kept.append(u)
    return kept, dropped


def aggregate(updates: list[Update], method: str = "fedavg", trim: float = 0.2) -> list[np.ndarray]:
    """Combined deltas of (already checked) updates by method; ValueError on an unknown method or none."""
    if method not in METHODS:
        raise ValueError(f"aggregate: unknown method {method!r} (one of {', '.join(METHODS)})")
    if not updates:
        raise ValueError("aggregate: no updates")
    out = []
    for k in range(len(updates[0].deltas)):
        stack = np.stack([u.deltas[k].astype(np.float64) for u in updates])
        if method == "fedavg":
            w = np.array([u.samples for u in updates], dtype=np.float64)
            out.append(np.tensordot(w / w.sum(), stack, axes=1))
        elif method == "median":
            out.append(np.median(stack, axis=0))
        else:
            n = len(updates)
            cut = min(int(np.ceil(trim * n - 1e-9)), (n - 1) // 2)  # 3 updates, trim 0.2: drop 1 each end
            srt = np.sort(stack, axis=0)
            out.append(srt[cut:n - cut].mean(axis=0))
    return out
