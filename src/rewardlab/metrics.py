"""Pure metric functions over reward arrays. Leaf module: imports nothing from rewardlab."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np

__all__ = ["TiePolicy", "mean_margin", "pairwise_accuracy"]

TiePolicy = Literal["half", "zero", "exclude"]
"""How a pair with ``r_c == r_r`` counts: 0.5, 0 (a miss), or left out of the denominator."""


def pairwise_accuracy(
    chosen_rewards: Sequence[float] | np.ndarray,
    rejected_rewards: Sequence[float] | np.ndarray,
    tie_policy: TiePolicy = "half",
) -> float:
    """Fraction of pairs with ``r_c > r_r``; ties per ``tie_policy``.

    Empty input (or all ties under ``exclude``) gives ``nan``.

    >>> pairwise_accuracy([2.0, 1.0, 0.0], [1.0, 1.0, 3.0])
    0.5
    >>> pairwise_accuracy([2.0, 1.0, 0.0], [1.0, 1.0, 3.0], tie_policy="exclude")
    0.5
    >>> pairwise_accuracy([2.0, 1.0, 0.0], [1.0, 1.0, 3.0], tie_policy="zero")
    0.3333333333333333
    """
    chosen, rejected = np.asarray(chosen_rewards, dtype=float), np.asarray(rejected_rewards, dtype=float)
    if chosen.shape != rejected.shape:
        raise ValueError(f"shapes differ: chosen {chosen.shape}, rejected {rejected.shape}")
    wins, ties = float((chosen > rejected).sum()), float((chosen == rejected).sum())
    if tie_policy == "half":
        total, score = chosen.size, wins + 0.5 * ties
    elif tie_policy == "zero":
        total, score = chosen.size, wins
    elif tie_policy == "exclude":
        total, score = chosen.size - ties, wins
    else:
        raise ValueError(f"tie_policy must be 'half', 'zero' or 'exclude', got {tie_policy!r}")
    return score / total if total else float("nan")


def mean_margin(chosen_rewards: Sequence[float] | np.ndarray, rejected_rewards: Sequence[float] | np.ndarray) -> float:
    """Mean of ``r_c - r_r``; ``nan`` for empty input.

    >>> mean_margin([2.0, 1.0], [1.0, 2.0])
    0.0
    """
    diff = np.asarray(chosen_rewards, dtype=float) - np.asarray(rejected_rewards, dtype=float)
    return float(diff.mean()) if diff.size else float("nan")
