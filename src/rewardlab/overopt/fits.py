"""Gao et al. (arXiv:2210.10760) functional forms of gold reward against ``d = sqrt(KL)``, fitted by least squares
(both are linear in their parameters), with bootstrap intervals, R^2 and the predicted peak.

* best-of-N: ``R(d) = d (alpha - beta d)``; peak at ``d* = alpha / (2 beta)``, ``R* = alpha^2 / (4 beta)``;
* RL: ``R(d) = d (alpha - beta log d)``; peak at ``d* = exp(alpha / beta - 1)``, ``R* = beta d*``.

R is the gold reward *gain* over the reference (``R(0) = 0``): subtract the d = 0 value first.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

__all__ = ["GaoFit", "fit_gao"]

Form = Literal["bon", "rl"]


def _design(d: np.ndarray, form: Form) -> np.ndarray:
    if form == "bon":
        return np.stack([d, -d * d], 1)
    if form == "rl":
        safe = np.where(d > 0, d, 1.0)
        return np.stack([d, -d * np.log(safe)], 1)
    raise ValueError(f"form must be 'bon' or 'rl', got {form!r}")


@dataclass(frozen=True)
class GaoFit:
    """Fitted ``alpha``, ``beta`` (with percentile intervals when bootstrapped), R^2, and the predicted peak."""

    form: str
    alpha: float
    beta: float
    r_squared: float
    peak_d: float | None
    peak_gain: float | None
    alpha_ci: tuple[float, float] | None = None
    beta_ci: tuple[float, float] | None = None


def _peak(form: Form, alpha: float, beta: float) -> tuple[float | None, float | None]:
    if beta <= 0:
        return None, None  # no peak: gold keeps rising within this form
    if form == "bon":
        return alpha / (2 * beta), alpha * alpha / (4 * beta)
    exponent = alpha / beta - 1
    if exponent > 50:  # d* > 5e21: a beta this small next to alpha means no peak at any reachable KL
        return None, None
    d_star = math.exp(exponent)
    return d_star, beta * d_star


def _solve(d: np.ndarray, gain: np.ndarray, form: Form) -> tuple[float, float, float]:
    x = _design(d, form)
    (alpha, beta), *_ = np.linalg.lstsq(x, gain, rcond=None)
    fitted = x @ np.array([alpha, beta])
    total = float(((gain - gain.mean()) ** 2).sum())
    r2 = 1 - float(((gain - fitted) ** 2).sum()) / total if total > 0 else float("nan")
    return float(alpha), float(beta), r2


def fit_gao(d: Sequence[float], gain: Sequence[float], form: Form = "bon", resamples: Sequence[Sequence[float]] = (),
            confidence: float = 0.95) -> GaoFit:
    """Least-squares fit of one Gao form to points ``(d, gain)``; ``resamples`` are gains of bootstrap replicates
    (e.g. curves recomputed on resampled prompts) at the same d, for percentile intervals of alpha and beta.

    >>> d = np.linspace(0.1, 2.0, 12)
    >>> fit = fit_gao(d, d * (1.0 - 0.4 * d), "bon")
    >>> round(fit.alpha, 3), round(fit.beta, 3), round(fit.peak_d, 3), round(fit.r_squared, 3)
    (1.0, 0.4, 1.25, 1.0)
    """
    d_arr, g_arr = np.asarray(d, dtype=float), np.asarray(gain, dtype=float)
    if d_arr.shape != g_arr.shape or d_arr.size < 3:
        raise ValueError("need at least 3 points of equal-length d and gain")
    alpha, beta, r2 = _solve(d_arr, g_arr, form)
    peak_d, peak_gain = _peak(form, alpha, beta)
    alpha_ci = beta_ci = None
    if len(resamples):
        fits = np.array([_solve(d_arr, np.asarray(r, dtype=float), form)[:2] for r in resamples])
        lo, hi = 100 * (1 - confidence) / 2, 100 * (1 + confidence) / 2
        alpha_ci = (float(np.percentile(fits[:, 0], lo)), float(np.percentile(fits[:, 0], hi)))
        beta_ci = (float(np.percentile(fits[:, 1], lo)), float(np.percentile(fits[:, 1], hi)))
    return GaoFit(form, alpha, beta, r2, peak_d, peak_gain, alpha_ci, beta_ci)
