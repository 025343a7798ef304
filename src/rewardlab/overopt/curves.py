"""Gold and proxy reward against ``d = sqrt(KL)`` from a pool of N samples per prompt of the reference policy.

Shapes: ``gold`` and ``proxy`` are ``(P, N)``: P prompts, N candidates each, sampled from ``pi_ref``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["best_of_n_weights", "bon_curve", "tilted_curve"]


def best_of_n_weights(proxy: np.ndarray, n: int) -> np.ndarray:
    """``(P, N)`` probability that each candidate is the proxy's pick among n drawn without replacement from N.

    The unbiased estimator over all ``C(N, n)`` subsets (not one random draw): with candidates sorted by proxy
    reward ascending, the one of rank i (1-based) wins a subset iff the subset holds it and n - 1 of the i - 1
    below it: ``C(i - 1, n - 1) / C(N, n)``. Ties in the proxy share their ranks' weights equally.

    >>> best_of_n_weights(np.array([[0.1, 0.9, 0.5]]), 2).round(3).tolist()
    [[0.0, 0.667, 0.333]]
    """
    p, size = proxy.shape
    if not 1 <= n <= size:
        raise ValueError(f"n must be in [1, {size}], got {n}")
    total = math.comb(size, n)
    by_rank = np.array([math.comb(i, n - 1) / total for i in range(size)])  # rank i (0-based) ascending
    weights = np.zeros_like(proxy, dtype=float)
    for row in range(p):
        order = np.argsort(proxy[row], kind="stable")
        ranked = proxy[row][order]
        w = by_rank.copy()
        start = 0
        while start < size:  # equal proxy rewards: average the weights of the ranks they occupy
            end = start
            while end + 1 < size and ranked[end + 1] == ranked[start]:
                end += 1
            w[start : end + 1] = w[start : end + 1].mean()
            start = end + 1
        weights[row, order] = w
    return weights


def bon_curve(gold: np.ndarray, proxy: np.ndarray, ns: Sequence[int]) -> dict[str, Any]:
    """Best-of-n for each n: mean gold and proxy reward of the proxy's pick, the gold-optimal pick's gold (the
    ceiling), ``KL_bon = log n - (n - 1) / n`` (Stiennon et al. 2020) and ``d = sqrt(KL)``.

    >>> gold = np.array([[0.0, 1.0, 0.0, 1.0]]); proxy = np.array([[0.1, 0.2, 0.3, 0.4]])
    >>> bon_curve(gold, proxy, [1, 4])["gold"]
    [0.5, 1.0]
    """
    from ..search.best_of_n import best_of_n_kl

    out: dict[str, list[float]] = {"n": [], "kl": [], "d": [], "gold": [], "proxy": [], "gold_ceiling": []}
    for n in ns:
        w = best_of_n_weights(proxy, n)
        ceiling = best_of_n_weights(gold, n)
        kl = best_of_n_kl(n)
        out["n"].append(int(n))
        out["kl"].append(kl)
        out["d"].append(math.sqrt(kl))
        out["gold"].append(float((w * gold).sum(1).mean()))
        out["proxy"].append(float((w * proxy).sum(1).mean()))
        out["gold_ceiling"].append(float((ceiling * gold).sum(1).mean()))
    return out


def tilted_curve(gold: np.ndarray, proxy: np.ndarray, betas: Sequence[float]) -> dict[str, Any]:
    """The KL-regularized optimum restricted to the pool: ``pi_beta(y) ~ pi_ref(y) exp(r_proxy(y) / beta)``, with the
    pool's empirical reference (uniform over its N samples), per prompt; its exact KL to that reference
    ``sum_i w_i log(N w_i)`` and its expected gold and proxy reward, averaged over prompts. This is what RL with a KL
    penalty beta converges to (Korbak et al. arXiv:2205.11275), without the noise of an RL run, but only within the
    pool: KL cannot exceed ``log N``.

    >>> curve = tilted_curve(np.array([[0.0, 1.0]]), np.array([[0.0, 1.0]]), [1e9, 1e-9])
    >>> [round(k, 4) for k in curve["kl"]], [round(g, 4) for g in curve["gold"]]
    ([0.0, 0.6931], [0.5, 1.0])
    """
    size = proxy.shape[1]
    out: dict[str, list[float]] = {"beta": [], "kl": [], "d": [], "gold": [], "proxy": []}
    for beta in betas:
        if beta <= 0:
            raise ValueError(f"beta must be > 0, got {beta}")
        logits = proxy / beta
        logits = logits - logits.max(1, keepdims=True)
        w = np.exp(logits)
        w /= w.sum(1, keepdims=True)
        kl = np.where(w > 0, w * np.log(np.clip(w * size, 1e-300, None)), 0.0).sum(1)
        out["beta"].append(float(beta))
        out["kl"].append(float(kl.mean()))
        out["d"].append(float(np.sqrt(max(kl.mean(), 0.0))))
        out["gold"].append(float((w * gold).sum(1).mean()))
        out["proxy"].append(float((w * proxy).sum(1).mean()))
    return out
