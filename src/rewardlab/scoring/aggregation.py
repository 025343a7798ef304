"""Aggregate per-step PRM scores (probabilities of each step being correct) into one solution score.

Bias notes: ``product`` (PRM800K / Lightman et al. arXiv:2305.20050) multiplies probabilities, so
it penalizes long solutions; ``min`` (Math-Shepherd, arXiv:2312.08935) judges a solution by its
weakest step, independent of length; ``last`` trusts the final step's score to summarize the
whole prefix; ``mean`` and ``geometric_mean`` dilute one bad step in a long solution.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

__all__ = ["Aggregation", "aggregate"]

Aggregation = Literal["min", "product", "last", "mean", "geometric_mean"]


def aggregate(step_scores: Sequence[float], how: Aggregation = "min") -> float:
    """One score from step probabilities. Empty input raises ``ValueError``.

    >>> [round(aggregate([0.9, 0.5, 0.8], h), 3) for h in ("min", "product", "last", "mean", "geometric_mean")]
    [0.5, 0.36, 0.8, 0.733, 0.711]
    """
    if not step_scores:
        raise ValueError("cannot aggregate a solution with no scored steps")
    if how == "min":
        return float(min(step_scores))
    if how == "product":
        return float(math.prod(step_scores))
    if how == "last":
        return float(step_scores[-1])
    if how == "mean":
        return float(sum(step_scores) / len(step_scores))
    if how == "geometric_mean":
        return float(math.exp(sum(math.log(max(s, 1e-12)) for s in step_scores) / len(step_scores)))
    raise ValueError(f"aggregation must be one of min, product, last, mean, geometric_mean; got {how!r}")
