"""Figures for test reports and benches: one percentile rule for all of them."""

from __future__ import annotations


def pctl(xs: list[float], q: float, ndigits: int | None = None, empty: float | None = None) -> float | None:
    """The q-quantile (0..1) by nearest rank from below: sorted(xs)[int(q * n)], the last for q = 1; `empty` if none."""
    if not xs:
        return empty
    s = sorted(xs)
    v = s[min(len(s) - 1, int(q * len(s)))]
    return v if ndigits is None else round(v, ndigits)
