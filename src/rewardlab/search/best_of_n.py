"""Best-of-N under any ``Scorer``, majority and reward-weighted voting, and the analytic BoN KL."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["BestOfN", "best_of_n", "best_of_n_kl", "bon_accuracy_curve", "majority_vote", "weighted_vote"]


def best_of_n_kl(n: int) -> float:
    """KL(best-of-n || base) = log n - (n - 1) / n (Stiennon et al. 2020; Beirami et al. arXiv:2401.01879 show it is an upper bound).

    >>> best_of_n_kl(1), round(best_of_n_kl(16), 4)
    (0.0, 1.8351)
    """
    if n < 1:
        raise ValueError("n must be >= 1")
    return math.log(n) - (n - 1) / n


@dataclass(frozen=True)
class BestOfN:
    """The chosen candidate, its index, every reward, and the BoN KL for this N."""

    index: int
    candidate: str
    rewards: tuple[float, ...]
    kl: float


def best_of_n(scorer: Any, prompt: Any, candidates: Sequence[str]) -> BestOfN:
    """Highest reward wins; ties go to the earliest candidate (deterministic).

    >>> class Len:
    ...     def score(self, prompts, responses): return [float(len(r)) for r in responses]
    >>> best_of_n(Len(), "q", ["ab", "abcd", "wxyz"]).index
    1
    """
    if not candidates:
        raise ValueError("best_of_n needs at least one candidate")
    rewards = [float(r) for r in scorer.score([prompt] * len(candidates), list(candidates))]
    index = int(np.argmax(rewards))  # first maximum
    return BestOfN(index, candidates[index], tuple(rewards), best_of_n_kl(len(candidates)))


def majority_vote(answers: Sequence[str | None]) -> str | None:
    """The most frequent answer (None answers ignored); ties go to the answer seen first.

    >>> majority_vote(["3", "4", "4", "3"]), majority_vote([None, None])
    ('3', None)
    """
    counts: dict[str, int] = {}
    for a in answers:
        if a is not None:
            counts[a] = counts.get(a, 0) + 1
    return max(counts, key=lambda a: (counts[a], -answers.index(a))) if counts else None


def weighted_vote(answers: Sequence[str | None], weights: Sequence[float]) -> str | None:
    """Reward-weighted majority: the answer with the largest summed weight (ties: seen first).

    >>> weighted_vote(["3", "4", "4"], [0.9, 0.3, 0.4])
    '3'
    """
    totals: dict[str, float] = defaultdict(float)
    for a, w in zip(answers, weights):
        if a is not None:
            totals[a] += float(w)
    return max(totals, key=lambda a: (totals[a], -answers.index(a))) if totals else None


def bon_accuracy_curve(
    correct: np.ndarray, answers: Sequence[Sequence[str | None]], gold: Sequence[str], rewards: dict[str, np.ndarray],
    ns: Sequence[int], samples: int = 200, seed: int = 0, selector: Callable | None = None,
) -> dict[str, list[float]]:
    """Accuracy vs N for majority vote, each named reward (pick the top-scored candidate) and the oracle.

    ``correct`` is ``(Q, K)`` booleans for K candidates per question; for each N <= K we average
    over ``samples`` random subsets of N candidates per question (exact when N = K).
    """
    rng = np.random.default_rng(seed)
    q, k = correct.shape
    curves: dict[str, list[float]] = {"majority": [], "oracle": [], **{name: [] for name in rewards}}
    for n in ns:
        if n > k:
            raise ValueError(f"N={n} exceeds the {k} candidates per question")
        reps = 1 if n == k else samples
        totals = defaultdict(float)
        for _ in range(reps):
            for i in range(q):
                subset = rng.choice(k, n, replace=False) if n < k else np.arange(k)
                vote = majority_vote([answers[i][j] for j in subset])
                totals["majority"] += float(vote is not None and vote == gold[i])
                totals["oracle"] += float(correct[i, subset].any())
                for name, r in rewards.items():
                    best = subset[int(np.argmax(r[i, subset]))]
                    totals[name] += float(correct[i, best])
        for name in curves:
            curves[name].append(totals[name] / (reps * q))
    return curves
