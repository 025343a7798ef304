"""Bootstrap confidence intervals and rank statistics. Pure numpy functions."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

__all__ = ["bootstrap_mean_ci", "bootstrap_ci", "bootstrap_mean_of_means_ci"]


def bootstrap_mean_ci(
    values: np.ndarray, n_rounds: int = 1000, confidence: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values`` (vectorized: one resample matrix).

    Empty input gives ``(nan, nan)``; a single value gives a zero-width interval.

    >>> lo, hi = bootstrap_mean_ci(np.array([1.0, 0.0, 1.0, 1.0]), n_rounds=2000)
    >>> 0.0 <= lo <= 0.75 <= hi <= 1.0
    True
    """
    values = np.asarray(values, dtype=float)
    if values.size == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    # counts of each item per round: (R, n) multinomial draws avoid an (R, n) index matrix of floats
    counts = rng.multinomial(values.size, np.full(values.size, 1 / values.size), size=n_rounds)
    means = counts @ values / values.size
    alpha = (1 - confidence) / 2
    return float(np.quantile(means, alpha)), float(np.quantile(means, 1 - alpha))


def bootstrap_ci(
    statistic: Callable[[np.ndarray], float], n_items: int, n_rounds: int = 1000, confidence: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of ``statistic(indices)`` over resampled item indices."""
    if n_items == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    stats = np.array([statistic(rng.integers(0, n_items, n_items)) for _ in range(n_rounds)])
    alpha = (1 - confidence) / 2
    return float(np.nanquantile(stats, alpha)), float(np.nanquantile(stats, 1 - alpha))


def bootstrap_mean_of_means_ci(groups: list[np.ndarray], n_rounds: int = 1000, confidence: float = 0.95,
                               seed: int = 0) -> tuple[float, float]:
    """Percentile interval of the unweighted mean of the groups' means, each group resampled on its own (a
    stratified bootstrap: the groups' sizes stay fixed). ``(nan, nan)`` when any group is empty.

    >>> lo, hi = bootstrap_mean_of_means_ci([np.array([1.0, 1.0, 0.0]), np.array([0.0, 0.0, 1.0, 0.0])], 2000)
    >>> lo <= (2 / 3 + 1 / 4) / 2 <= hi
    True
    """
    groups = [np.asarray(g, dtype=float) for g in groups]
    if not groups or any(g.size == 0 for g in groups):
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = np.zeros(n_rounds)
    for g in groups:
        counts = rng.multinomial(g.size, np.full(g.size, 1 / g.size), size=n_rounds)
        means += counts @ g / g.size
    means /= len(groups)
    alpha = (1 - confidence) / 2
    return float(np.quantile(means, alpha)), float(np.quantile(means, 1 - alpha))
