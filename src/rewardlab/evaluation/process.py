"""Step-level metrics for process reward models (ProcessBench style, Zheng et al. arXiv:2412.06559)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["first_error_index", "first_error_metrics", "gold_first_error"]


def first_error_index(step_scores: Sequence[float], threshold: float = 0.5) -> int:
    """Index of the first step whose score (a probability of being correct) is below ``threshold``; -1 if none.

    >>> first_error_index([0.9, 0.7, 0.2, 0.1]), first_error_index([0.9, 0.8])
    (2, -1)
    """
    for i, s in enumerate(step_scores):
        if s < threshold:
            return i
    return -1


def gold_first_error(labels: Sequence[float | None]) -> int | None:
    """First step labelled wrong (label <= 0 for hard/3-class, < 0.5 for soft labels); -1 if every
    labelled step is right; None if a step before the first error is unlabelled (undetermined).

    >>> gold_first_error([1.0, 1.0, 0.0, None]), gold_first_error([1.0, 1.0]), gold_first_error([None, 0.0])
    (2, -1, None)
    """
    for i, label in enumerate(labels):
        if label is None:
            return None
        if label < 0.5:
            return i
    return -1


def first_error_metrics(predicted: Sequence[int], gold: Sequence[int]) -> dict[str, float]:
    """Accuracy of the predicted first-error step on erroneous solutions and on correct ones, and
    their harmonic mean (ProcessBench's F1). Empty groups give ``nan``.

    >>> first_error_metrics([2, -1, 1], [2, -1, 0])["f1"]
    0.6666666666666666
    """
    p, g = np.asarray(predicted), np.asarray(gold)
    wrong, right = g >= 0, g == -1
    acc_err = float(np.mean(p[wrong] == g[wrong])) if wrong.any() else float("nan")
    acc_ok = float(np.mean(p[right] == -1)) if right.any() else float("nan")
    f1 = 2 * acc_err * acc_ok / (acc_err + acc_ok) if acc_err + acc_ok > 0 else 0.0
    return {"erroneous_accuracy": acc_err, "correct_accuracy": acc_ok, "f1": float(f1),
            "erroneous": int(wrong.sum()), "correct": int(right.sum())}
