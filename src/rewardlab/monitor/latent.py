"""A latent-space monitor: the share of rollouts whose reward-model representation is a Mahalanobis outlier against
the reference replies (the statistic behind InfoRM's Mahalanobis Outlier Probability, Miao et al., arXiv:2402.09345).

The representation is what the reward head reads (``LocalScorer.embed``: the final hidden state at the pooling
position). With few reference replies and hundreds of dimensions a covariance is singular, so the reference is
projected on its top ``dims`` principal components (shrunk towards the diagonal) and the outlier cut is the
``quantile`` of the distances of *held-out* reference replies (half the reference fits, the other half calibrates),
so a stationary stream scores about ``1 - quantile`` outliers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..errors import ConfigError
from .rollouts import Rollout

__all__ = ["LatentOutlierMonitor", "mahalanobis_distances"]


def mahalanobis_distances(points: np.ndarray, mean: np.ndarray, precision: np.ndarray) -> np.ndarray:
    """``sqrt((x - mu)^T P (x - mu))`` per row. Shapes: ``(N, D)``, ``(D,)``, ``(D, D)`` -> ``(N,)``.

    >>> mahalanobis_distances(np.array([[3.0, 0.0], [0.0, 2.0]]), np.zeros(2), np.diag([1.0, 0.25])).tolist()
    [3.0, 1.0]
    """
    centred = points - mean
    return np.sqrt(np.maximum(np.einsum("nd,de,ne->n", centred, precision, centred), 0.0))


class LatentOutlierMonitor:
    """A :class:`~rewardlab.monitor.monitor.WindowPlugin` giving ``latent_outlier_share`` (and ``latent_distance_mean``).

    ``embed(prompts, responses) -> (N, H)`` array, e.g. ``LocalScorer.embed`` of the proxy reward model.
    """

    name = "latent"

    def __init__(self, embed: Callable[[list[Any], list[str]], Any], dims: int = 16, quantile: float = 0.95,
                 shrinkage: float = 0.1, seed: int = 0):
        if not 0 < quantile < 1 or not 0 <= shrinkage <= 1 or dims < 1:
            raise ConfigError("need 0 < quantile < 1, 0 <= shrinkage <= 1 and dims >= 1")
        self.embed, self.dims, self.quantile, self.shrinkage, self.seed = embed, dims, quantile, shrinkage, seed
        self._fitted: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, float] | None = None

    def _vectors(self, rollouts: Sequence[Rollout]) -> np.ndarray:
        return np.asarray(self.embed([r.prompt for r in rollouts], [r.response for r in rollouts]), dtype=float)

    def _project(self, x: np.ndarray) -> np.ndarray:
        assert self._fitted is not None
        centre, basis = self._fitted[0], self._fitted[1]
        return (x - centre) @ basis

    def fit(self, reference: Sequence[Rollout]) -> None:
        if len(reference) < 8:
            raise ConfigError(f"the latent monitor needs at least 8 reference rollouts, got {len(reference)}")
        x = self._vectors(reference)
        order = np.random.default_rng(self.seed).permutation(len(x))
        fit_part, calib_part = x[order[: len(x) // 2]], x[order[len(x) // 2:]]
        centre = fit_part.mean(0)
        k = max(1, min(self.dims, len(fit_part) - 2, x.shape[1]))
        _, _, vt = np.linalg.svd(fit_part - centre, full_matrices=False)
        basis = vt[:k].T  # (H, k)
        z = (fit_part - centre) @ basis
        cov = np.cov(z, rowvar=False).reshape(k, k)
        cov = (1 - self.shrinkage) * cov + self.shrinkage * np.diag(np.diag(cov)) + 1e-6 * np.eye(k)
        precision = np.linalg.inv(cov)
        self._fitted = (centre, basis, np.zeros(k), precision, 0.0)
        cut = float(np.quantile(mahalanobis_distances(self._project(calib_part), np.zeros(k), precision), self.quantile))
        self._fitted = (centre, basis, np.zeros(k), precision, cut)

    def statistics(self, window: Sequence[Rollout]) -> dict[str, float]:
        if self._fitted is None:
            raise ConfigError("the latent monitor is used before it was fitted on a reference window")
        _, _, mean, precision, cut = self._fitted
        d = mahalanobis_distances(self._project(self._vectors(window)), mean, precision)
        return {"latent_outlier_share": float((d > cut).mean()), "latent_distance_mean": float(d.mean())}
