"""Win rates, Elo and Bradley-Terry ratings with bootstrap intervals, length-controlled win rate."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import RewardlabError

__all__ = [
    "Battles", "FitError", "Ratings", "bradley_terry_ratings", "elo_ratings", "length_controlled_win_rate", "rate_battles",
    "read_battles", "win_rate",
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
        # numpy's stubs leave Ellipsis out of index tuples; (..., ca, cb) is a valid fancy index
        np.add.at(w, (..., ca, cb), cell_counts * cs)  # type: ignore[arg-type]
        np.add.at(w, (..., cb, ca), cell_counts * (1 - cs))  # type: ignore[arg-type]
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


@dataclass(frozen=True)
class Battles:
    """Pairwise battles: ``outcome[i]`` is 1 when ``model_a[i]`` won, 0.5 a tie, 0 a loss; lengths optional (None)."""

    model_a: tuple[str, ...]
    model_b: tuple[str, ...]
    outcome: tuple[float, ...]
    lengths: tuple[tuple[float | None, float | None], ...]


_WINNER_VALUES = {"model_a": 1.0, "model_b": 0.0, "tie": 0.5}


def read_battles(path: str | os.PathLike) -> Battles:
    """Read ``{model_a, model_b, winner: model_a|model_b|tie, length_a?, length_b?}`` records (jsonl/json/parquet);
    a bad record raises :class:`~rewardlab.errors.DataFormatError` naming file:line and field."""
    from ..data.readers import iter_records
    from ..errors import DataFormatError

    a, b, outcome, lengths = [], [], [], []
    for location, record in iter_records(str(path)):
        for key in ("model_a", "model_b", "winner"):
            if not isinstance(record.get(key), str):
                raise DataFormatError(location, "expected a string ('winner' is model_a, model_b or tie)", key)
        if record["winner"] not in _WINNER_VALUES:
            raise DataFormatError(location, f"expected model_a, model_b or tie, got {record['winner']!r}", "winner")
        for key in ("length_a", "length_b"):
            value = record.get(key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
                raise DataFormatError(location, f"expected a number (the reply's length), got {value!r}", key)
        a.append(record["model_a"])
        b.append(record["model_b"])
        outcome.append(_WINNER_VALUES[record["winner"]])
        lengths.append((record.get("length_a"), record.get("length_b")))
    return Battles(tuple(a), tuple(b), tuple(outcome), tuple(lengths))


def _baseline_win_rates(battles: Battles, baseline: str) -> dict[str, Any]:
    rows = {}
    for model in sorted(set(battles.model_a) | set(battles.model_b)):
        if model == baseline:
            continue
        pairs = []  # (outcome for `model`, its length minus the baseline's, or None)
        for x, y, o, (la, lb) in zip(battles.model_a, battles.model_b, battles.outcome, battles.lengths):
            if {x, y} != {model, baseline}:
                continue
            diff = None if la is None or lb is None else (la - lb if x == model else lb - la)
            pairs.append((o if x == model else 1 - o, diff))
        if not pairs:
            continue
        rate, se = win_rate([p[0] for p in pairs])
        row: dict[str, Any] = {"win_rate": rate, "standard_error": se, "battles": len(pairs)}
        if all(p[1] is not None for p in pairs):
            try:
                row["length_controlled_win_rate"] = length_controlled_win_rate([p[0] for p in pairs], [p[1] for p in pairs if p[1] is not None])
            except FitError as err:
                row["length_controlled_win_rate"] = None
                row["length_controlled_note"] = str(err)
        rows[model] = row
    return {"baseline": baseline, "models": rows}


def rate_battles(battles: Battles, baseline: str | None = None, bootstrap: int = 1000, seed: int = 0) -> dict[str, Any]:
    """What ``rewardlab ratings`` reports: Bradley-Terry ratings with bootstrap intervals, Elo, and with a
    ``baseline`` each model's win rate against it (plus the length-controlled win rate when every battle has lengths).

    >>> battles = Battles(("a", "a", "b"), ("b", "b", "a"), (1.0, 0.5, 0.0), ((None, None),) * 3)
    >>> result = rate_battles(battles, baseline="b", bootstrap=20)
    >>> result["ratings"]["battles"], result["win_rates"]["models"]["a"]["win_rate"]
    (3, 0.8333333333333334)
    """
    a, b, outcome = list(battles.model_a), list(battles.model_b), list(battles.outcome)
    ratings = bradley_terry_ratings(a, b, outcome, n_rounds=bootstrap, seed=seed)
    results: dict[str, Any] = {"ratings": {"bradley_terry": ratings.table(), "elo": elo_ratings(a, b, outcome),
                                           "battles": len(a), "bootstrap_rounds": bootstrap}}
    if baseline:
        results["win_rates"] = _baseline_win_rates(battles, baseline)
    return results
