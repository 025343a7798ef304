"""Calibration of pairwise preference probabilities ``P(chosen > rejected) = sigmoid((r_c - r_r) / T)``."""

from __future__ import annotations

from typing import Literal

import numpy as np

__all__ = ["brier_loss", "expected_calibration_error", "fit_temperature", "reliability_curve"]


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1 + np.tanh(0.5 * x))


def _symmetrize(margins: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each pair as two predictions (p for "chosen wins" = 1, 1 - p for the reverse = 0), so a
    model that always says 0.9 for the chosen is judged on both outcomes, not only positives."""
    p = _sigmoid(margins)
    return np.concatenate([p, 1 - p]), np.concatenate([np.ones_like(p), np.zeros_like(p)])


def reliability_curve(
    margins: np.ndarray, n_bins: int = 10, binning: Literal["width", "mass"] = "width", temperature: float = 1.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per bin: mean predicted probability, observed frequency, count (bins without items are dropped).

    ``margins`` are ``r_c - r_r`` per pair; predictions are symmetrized (see ``_symmetrize``).
    """
    probs, outcomes = _symmetrize(np.asarray(margins, dtype=float) / temperature)
    if probs.size == 0:
        return np.empty(0), np.empty(0), np.empty(0)
    if binning == "width":
        edges = np.linspace(0, 1, n_bins + 1)
    elif binning == "mass":
        edges = np.unique(np.quantile(probs, np.linspace(0, 1, n_bins + 1)))
    else:
        raise ValueError(f"binning must be 'width' or 'mass', got {binning!r}")
    index = np.clip(np.searchsorted(edges, probs, side="right") - 1, 0, len(edges) - 2)
    counts = np.bincount(index, minlength=len(edges) - 1)
    keep = counts > 0
    mean_p = np.bincount(index, probs, len(edges) - 1)[keep] / counts[keep]
    freq = np.bincount(index, outcomes, len(edges) - 1)[keep] / counts[keep]
    return mean_p, freq, counts[keep]


def expected_calibration_error(
    margins: np.ndarray, n_bins: int = 10, binning: Literal["width", "mass"] = "width", temperature: float = 1.0
) -> float:
    """ECE = sum_b (n_b / N) |mean_p_b - freq_b| (Naeini et al. 2015; Guo et al. arXiv:1706.04599).

    Empty input gives ``nan``.

    >>> round(expected_calibration_error(np.zeros(100)), 6)  # always 0.5, right half the time
    0.0
    """
    mean_p, freq, counts = reliability_curve(margins, n_bins, binning, temperature)
    if counts.size == 0:
        return float("nan")
    return float(np.sum(counts * np.abs(mean_p - freq)) / counts.sum())


def brier_loss(margins: np.ndarray, temperature: float = 1.0) -> float:
    """Mean squared error of ``P(chosen > rejected)`` against 1 (the chosen did win); lower is better.

    >>> brier_loss(np.array([0.0]))
    0.25
    """
    margins = np.asarray(margins, dtype=float)
    if margins.size == 0:
        return float("nan")
    return float(np.mean((1 - _sigmoid(margins / temperature)) ** 2))


def fit_temperature(margins: np.ndarray, bounds: tuple[float, float] = (0.01, 100.0)) -> float:
    """Temperature T minimizing the negative log-likelihood of ``sigmoid(margin / T)`` (Guo et al. 2017).

    One-dimensional and convex in ``1/T``: golden-section search on ``log T``.

    >>> rng = np.random.default_rng(0)
    >>> true = rng.normal(0, 2, 20000)
    >>> won = rng.random(20000) < 1 / (1 + np.exp(-true))
    >>> margins = np.where(won, true, -true) * 3  # a model 3x over-confident
    >>> round(fit_temperature(margins), 1)
    3.0
    """
    margins = np.asarray(margins, dtype=float)
    if margins.size == 0:
        raise ValueError("cannot fit a temperature on no pairs")

    def nll(log_t: float) -> float:
        return float(np.mean(np.logaddexp(0, -margins / np.exp(log_t))))

    lo, hi = np.log(bounds[0]), np.log(bounds[1])
    ratio = (np.sqrt(5) - 1) / 2
    a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
    for _ in range(100):
        if nll(a) < nll(b):
            hi, b = b, a
            a = hi - ratio * (hi - lo)
        else:
            lo, a = a, b
            b = lo + ratio * (hi - lo)
    return float(np.exp((lo + hi) / 2))
