"""Pure statistics of one window of rollouts, against a reference window. numpy and scipy only; no rewardlab imports.

Every function states its edge cases: fewer than two values, constant inputs and empty texts give ``nan`` where a
statistic is undefined (never an exception, never a made-up 0), so a rule compares ``nan`` as "not crossed".

Lengths are counted in whitespace words (tokenizer-free, so a dump from any trainer gives the same numbers);
repetition is over lower-cased word n-grams.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

__all__ = [
    "distinct_n", "linear_trend", "population_stability_index", "rank_correlation", "repeated_ngram_rate",
    "reply_length", "sequence_kl_from_logprobs", "standardized_shift", "summarize", "wasserstein_distance",
]


def _words(text: str) -> list[str]:
    return text.lower().split()


def reply_length(text: str) -> int:
    """Length of a reply in whitespace-separated words.

    >>> reply_length("Paris is the capital.")
    4
    """
    return len(text.split())


def distinct_n(texts: Sequence[str], n: int = 2) -> float:
    """Distinct-n (Li et al., arXiv:1510.03055): unique word n-grams over all n-grams in ``texts``, in ``[0, 1]``.

    Higher is more diverse; ``nan`` when the texts hold no n-gram at all.

    >>> distinct_n(["a b c", "a b d"], n=2)
    0.75
    >>> distinct_n(["same same", "same same"], n=2)
    0.5
    """
    grams = [tuple(w[i:i + n]) for w in map(_words, texts) for i in range(len(w) - n + 1)]
    return len(set(grams)) / len(grams) if grams else float("nan")


def repeated_ngram_rate(text: str, n: int = 3) -> float:
    """Share of a reply's word n-grams that repeat an n-gram seen earlier in the same reply, in ``[0, 1]``.

    0 for a reply with no repeat (or shorter than ``n`` words: nothing can repeat); lower is better.

    >>> repeated_ngram_rate("I am happy. I am happy. I am happy.", n=3)
    0.5714285714285714
    >>> repeated_ngram_rate("one two", n=3)
    0.0
    """
    words = _words(text)
    grams = [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]
    return (len(grams) - len(set(grams))) / len(grams) if grams else 0.0


def wasserstein_distance(values: Sequence[float], reference: Sequence[float]) -> float:
    """The 1-Wasserstein (earth mover's) distance between two empirical distributions; ``nan`` if either is empty.

    >>> wasserstein_distance([1.0, 2.0], [0.0, 1.0])
    1.0
    """
    if len(values) == 0 or len(reference) == 0:
        return float("nan")
    from scipy.stats import wasserstein_distance as w1

    return float(w1(values, reference))


def population_stability_index(values: Sequence[float], reference: Sequence[float], bins: int = 10,
                               floor: float = 1e-4) -> float:
    """PSI ``sum_b (p_b - q_b) log(p_b / q_b)`` over ``bins`` bins at the reference's quantiles (0 = same shape;
    0.1-0.25 is read as a moderate shift, > 0.25 as a large one). Shares are floored at ``floor`` so an empty bin is
    finite. ``nan`` when either side is empty or the reference is constant.

    >>> round(population_stability_index(list(range(100)), list(range(100))), 6)
    0.0
    >>> population_stability_index([50.0] * 20, list(range(100))) > 1
    True
    """
    v, r = np.asarray(values, float), np.asarray(reference, float)
    if v.size == 0 or r.size == 0 or np.ptp(r) == 0:
        return float("nan")
    edges = np.unique(np.quantile(r, np.linspace(0, 1, bins + 1)[1:-1]))
    p = np.bincount(np.searchsorted(edges, v, side="right"), minlength=edges.size + 1) / v.size
    q = np.bincount(np.searchsorted(edges, r, side="right"), minlength=edges.size + 1) / r.size
    p, q = np.maximum(p, floor), np.maximum(q, floor)
    return float(((p - q) * np.log(p / q)).sum())


def rank_correlation(a: Sequence[float], b: Sequence[float]) -> float:
    """Spearman's rho; ``nan`` with fewer than 3 pairs or when either side is constant.

    >>> round(rank_correlation([1, 2, 3, 4], [10, 20, 30, 25]), 6)
    0.8
    """
    x, y = np.asarray(a, float), np.asarray(b, float)
    if x.shape != y.shape:
        raise ValueError(f"shapes differ: {x.shape} and {y.shape}")
    if x.size < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    from scipy.stats import spearmanr

    return float(spearmanr(x, y).statistic)


def standardized_shift(mean: float, reference_mean: float, reference_std: float) -> float:
    """``(mean - reference_mean) / reference_std``: how far a window's mean moved, in reference standard deviations;
    ``nan`` when the reference std is 0 or undefined.

    >>> standardized_shift(1.5, 1.0, 0.5)
    1.0
    """
    if not (reference_std > 0) or not math.isfinite(reference_std):
        return float("nan")
    return (mean - reference_mean) / reference_std


def summarize(values: Sequence[float]) -> dict[str, float]:
    """Mean, std (ddof 1; ``nan`` for one value), 10/50/90% quantiles; all ``nan`` for no value.

    >>> summarize([1.0, 2.0, 3.0])["q50"], summarize([1.0, 2.0, 3.0])["std"]
    (2.0, 1.0)
    """
    v = np.asarray(values, float)
    if v.size == 0:
        return {k: float("nan") for k in ("mean", "std", "q10", "q50", "q90")}
    q10, q50, q90 = np.quantile(v, [0.1, 0.5, 0.9])
    return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if v.size > 1 else float("nan"),
            "q10": float(q10), "q50": float(q50), "q90": float(q90)}


def linear_trend(values: Sequence[float]) -> float:
    """Least-squares slope of ``values`` against their index (per window); ``nan`` with fewer than 3 finite values.

    >>> round(linear_trend([1.0, 2.0, 3.0, 4.0]), 6)
    1.0
    """
    v = np.asarray([x for x in values if math.isfinite(x)], float)
    if v.size < 3:
        return float("nan")
    return float(np.polyfit(np.arange(v.size, dtype=float), v, 1)[0])


def sequence_kl_from_logprobs(policy_logprobs: Sequence[float], reference_logprobs: Sequence[float]) -> tuple[float, float]:
    """``(k1, k3)`` per-sequence KL(pi || pi_ref) in nats from the sampled tokens' log-probs under both models
    (Schulman 2020; ``log r = ref - pi``; k1 = sum -log r, k3 = sum (r - 1) - log r), as :mod:`rewardlab.control`.

    >>> sequence_kl_from_logprobs([-0.5, -1.0], [-0.5, -1.0])
    (0.0, 0.0)
    >>> [round(v, 4) for v in sequence_kl_from_logprobs([-0.6931], [-1.3863])]
    [0.6932, 0.1932]
    """
    p, r = np.asarray(policy_logprobs, float), np.asarray(reference_logprobs, float)
    if p.shape != r.shape:
        raise ValueError(f"policy and reference log-probs differ in length: {p.size} and {r.size}")
    log_r = r - p
    return float(-log_r.sum()) + 0.0, float((np.expm1(log_r) - log_r).sum())  # + 0.0: no -0.0
