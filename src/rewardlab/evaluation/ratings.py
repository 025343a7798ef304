"""Win rates, Elo and Bradley-Terry ratings with bootstrap intervals, length-controlled win rate."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import RewardlabError

__all__ = [
    "FitError", "Ratings", "bradley_terry_ratings", "elo_ratings", "length_controlled_win_rate", "win_rate",
]


class FitError(RewardlabError, ArithmeticError):
    """A statistical fit did not converge or is not identifiable on this data."""


def win_rate(outcomes: Sequence[float]) -> tuple[float, float]:
    """Mean of outcomes (1 win, 0.5 tie, 0 loss) and its standard error; ``(nan, nan)`` if empty.

    >>> rate, se = win_rate([1, 1, 0.5, 0])
    >>> rate, round(se, 4)
    (0.625, 0.2394)
    """
    x = np.asarray(outcomes, dtype=float)
    if x.size == 0:
        return float("nan"), float("nan")
    se = float(x.std(ddof=1) / np.sqrt(x.size)) if x.size > 1 else float("nan")
    return float(x.mean()), se


@dataclass(frozen=True)
class Ratings:
    """Ratings on the Elo scale (400 log10 odds, mean 1000) with bootstrap percentile intervals."""

    names: tuple[str, ...]
    rating: np.ndarray
    lower: np.ndarray
    upper: np.ndarray

    def table(self) -> list[dict[str, float | str]]:
        order = np.argsort(-self.rating)
        return [{"name": self.names[i], "rating": float(self.rating[i]), "lower": float(self.lower[i]),
                 "upper": float(self.upper[i])} for i in order]


def _index(model_a: Sequence[str], model_b: Sequence[str]) -> tuple[tuple[str, ...], np.ndarray, np.ndarray]:
    names = tuple(sorted(set(model_a) | set(model_b)))
    lookup = {n: i for i, n in enumerate(names)}
    return names, np.array([lookup[a] for a in model_a]), np.array([lookup[b] for b in model_b])


def elo_ratings(model_a: Sequence[str], model_b: Sequence[str], outcome: Sequence[float], k: float = 4.0,
                base: float = 1000.0) -> dict[str, float]:
    """Online Elo in battle order (outcome 1: a wins, 0.5 tie, 0: b wins); order-dependent by design.

    >>> r = elo_ratings(["x"] * 50, ["y"] * 50, [1.0] * 50)
    >>> r["x"] > 1000 > r["y"]
    True
    """
    names, a, b = _index(model_a, model_b)
    rating = np.full(len(names), base)
    for i, j, s in zip(a, b, np.asarray(outcome, dtype=float)):
        expected = 1 / (1 + 10 ** ((rating[j] - rating[i]) / 400))
        rating[i] += k * (s - expected)
        rating[j] -= k * (s - expected)
    return dict(zip(names, rating.tolist()))


def _bt_fit(wins: np.ndarray, iterations: int = 500, prior: float = 0.01) -> np.ndarray:
    """MM algorithm (Hunter 2004) for BT strengths, batched over leading axes: ``(..., M, M)`` -> ``(..., M)``.

    ``wins[i, j]`` counts i beating j (ties add 0.5 to both). A ``prior`` pseudo-count against every
    other player keeps strengths finite for undefeated or winless players.
    """
    m = wins.shape[-1]
    wins = wins + prior * (1 - np.eye(m))
    games = wins + np.swapaxes(wins, -1, -2)
    total_wins = wins.sum(-1)
    p = np.ones(wins.shape[:-1])
    for _ in range(iterations):
        denom = (games / (p[..., :, None] + p[..., None, :])).sum(-1)
        new = total_wins / denom
        new = new / np.exp(np.log(new).mean(-1, keepdims=True))
        if np.max(np.abs(new - p)) < 1e-10:
            p = new
            break
        p = new
    return p


def bradley_terry_ratings(
    model_a: Sequence[str], model_b: Sequence[str], outcome: Sequence[float], n_rounds: int = 1000,
    confidence: float = 0.95, seed: int = 0,
) -> Ratings:
    """Maximum-likelihood BT ratings with battle-bootstrap intervals, vectorized over rounds.

    Battles are aggregated into (a, b, outcome) cells; a bootstrap round is a multinomial draw of
    cell counts (equivalent to resampling battles), so 1,000 rounds over 100k battles take seconds.
    """
    names, a, b = _index(model_a, model_b)
    s = np.asarray(outcome, dtype=float)
    if not (a.size == b.size == s.size) or a.size == 0:
        raise FitError("need the same positive number of model_a, model_b and outcome entries")
    m = len(names)
    cells, counts = np.unique(np.stack([a, b, s]), axis=1, return_counts=True)
    ca, cb, cs = cells[0].astype(int), cells[1].astype(int), cells[2]

    def win_matrix(cell_counts: np.ndarray) -> np.ndarray:  # (R, C) -> (R, M, M)
        w = np.zeros(cell_counts.shape[:-1] + (m, m))
        np.add.at(w, (..., ca, cb), cell_counts * cs)
        np.add.at(w, (..., cb, ca), cell_counts * (1 - cs))
        return w

    point = _bt_fit(win_matrix(counts[None].astype(float)))[0]
    rng = np.random.default_rng(seed)
    draws = rng.multinomial(a.size, counts / a.size, size=n_rounds).astype(float)
    boot = _bt_fit(win_matrix(draws))
    to_elo = lambda p: 400 * np.log10(p) + 1000  # noqa: E731
    alpha = (1 - confidence) / 2
    return Ratings(names, to_elo(point), np.quantile(to_elo(boot), alpha, axis=0), np.quantile(to_elo(boot), 1 - alpha, axis=0))


def length_controlled_win_rate(outcome: Sequence[float], length_diff: Sequence[float], iterations: int = 50) -> float:
    """Win rate at zero length difference from a logistic model ``P(win) = sigmoid(b0 + b1 * z)``.

    ``z`` is the candidate-minus-baseline length difference, standardized; ties count as 0.5
    (fractional logistic regression, fitted by Newton's method). The result is ``sigmoid(b0)``
    (in the spirit of AlpacaEval's length-controlled win rate, Dubois et al. arXiv:2404.04475).
    Raises :class:`FitError` when the fit diverges (e.g. outcomes perfectly separated by length).
    """
    y = np.asarray(outcome, dtype=float)
    d = np.asarray(length_diff, dtype=float)
    if y.size < 3 or y.size != d.size:
        raise FitError(f"length-controlled win rate needs at least 3 outcomes with lengths, got {y.size}")
    z = (d - d.mean()) / (d.std() or 1.0)
    x = np.stack([np.ones_like(z), z], axis=1)
    beta = np.zeros(2)
    for _ in range(iterations):
        p = 1 / (1 + np.exp(-(x @ beta)))
        grad = x.T @ (y - p)
        hess = (x * (p * (1 - p))[:, None]).T @ x + 1e-9 * np.eye(2)
        step = np.linalg.solve(hess, grad)
        beta = beta + step
        if not np.all(np.isfinite(beta)) or np.abs(beta).max() > 30:
            raise FitError("length-controlled fit diverged: outcomes are (nearly) separated by length; "
                           "report the raw win rate instead")
        if np.abs(step).max() < 1e-10:
            break
    # z was centred, so undo the centring to evaluate at zero raw length difference
    b0 = beta[0] - beta[1] * d.mean() / (d.std() or 1.0)
    return float(1 / (1 + np.exp(-b0)))
