"""Pure metric functions over reward arrays. Leaf module: imports nothing from rewardlab."""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Sequence
from typing import Literal

import numpy as np

__all__ = ["TiePolicy", "cohen_kappa", "fleiss_kappa", "majority_vote", "mean_margin", "pairwise_accuracy"]

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
    total: float
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


def majority_vote(votes: Sequence[Hashable | None], tie_break: Literal["none", "first"] = "none") -> Hashable | None:
    """The label with the most non-None votes: rewardlab's one majority vote.

    **Tie rule**: a tie between the top labels has no majority (None) unless ``tie_break="first"``, which takes the
    tied label seen first in ``votes``: what answer voting over sampled solutions needs (self-consistency must answer
    something; best-of-N and its curves use it), while aggregating annotators must not invent a preference (the
    default). No non-None vote: None.

    >>> majority_vote(["A", "A", "tie"]), majority_vote(["A", "B"]), majority_vote([None, "B"])
    ('A', None, 'B')
    >>> majority_vote(["3", "4", "4", "3"], tie_break="first"), majority_vote([None, None], tie_break="first")
    ('3', None)
    """
    counts = Counter(v for v in votes if v is not None)
    if not counts:
        return None
    top = max(counts.values())
    tied = [label for label in dict.fromkeys(v for v in votes if v is not None) if counts[label] == top]
    if len(tied) > 1 and tie_break == "none":
        return None
    return tied[0]


def cohen_kappa(a: Sequence[Hashable | None], b: Sequence[Hashable | None]) -> float:
    """Cohen's kappa between two raters over items both labelled; ``nan`` if undefined.

    >>> cohen_kappa(["A", "B", "A", "B"], ["A", "B", "A", "B"])
    1.0
    >>> round(cohen_kappa(["A", "A", "B", "B"], ["A", "B", "A", "B"]), 3)
    0.0
    """
    pairs = [(x, y) for x, y in zip(a, b) if x is not None and y is not None]
    if not pairs:
        return float("nan")
    labels = sorted({x for p in pairs for x in p}, key=repr)
    observed = sum(x == y for x, y in pairs) / len(pairs)
    ca, cb = Counter(x for x, _ in pairs), Counter(y for _, y in pairs)
    expected = sum(ca[label] * cb[label] for label in labels) / len(pairs) ** 2
    return float("nan") if expected == 1 else float((observed - expected) / (1 - expected))


def fleiss_kappa(ratings: Sequence[Sequence[Hashable | None]]) -> float:
    """Fleiss' kappa for items each rated by the same number of raters (None votes dropped per item;
    items left with fewer than 2 votes are skipped).

    >>> fleiss_kappa([["A", "A", "A"], ["B", "B", "B"]])
    1.0
    """
    rows = [[v for v in item if v is not None] for item in ratings]
    rows = [r for r in rows if len(r) >= 2]
    if not rows:
        return float("nan")
    labels = sorted({v for r in rows for v in r}, key=repr)
    counts = np.array([[r.count(label) for label in labels] for r in rows], dtype=float)
    n = counts.sum(1)
    p_item = ((counts * (counts - 1)).sum(1) / (n * (n - 1))).mean()
    p_label = (counts / n[:, None]).mean(0)
    expected = (p_label**2).sum()
    return float("nan") if expected == 1 else float((p_item - expected) / (1 - expected))
