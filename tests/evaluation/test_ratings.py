import numpy as np
import pytest

from rewardlab.evaluation.ratings import FitError, bradley_terry_ratings, elo_ratings, length_controlled_win_rate, win_rate


def _tournament(strengths, n, seed=0, tie_rate=0.0):
    rng = np.random.default_rng(seed)
    m = len(strengths)
    a = rng.integers(0, m, n)
    b = (a + rng.integers(1, m, n)) % m
    p = 1 / (1 + np.exp(-(strengths[a] - strengths[b])))
    u = rng.random(n)
    outcome = np.where(u < tie_rate, 0.5, (rng.random(n) < p).astype(float))
    names = [f"m{i}" for i in range(m)]
    return [names[i] for i in a], [names[i] for i in b], outcome


def test_bt_ratings_recover_true_strengths_within_their_intervals():
    strengths = np.array([-1.5, -0.5, 0.0, 0.4, 1.2, 2.0])
    a, b, s = _tournament(strengths, 20000)
    ratings = bradley_terry_ratings(a, b, s, n_rounds=500)
    true_elo = 400 * strengths / np.log(10)
    true_elo = true_elo - true_elo.mean() + 1000  # same centring: geometric mean strength 1 -> 1000
    inside = (ratings.lower <= true_elo) & (true_elo <= ratings.upper)
    assert inside.sum() >= 5  # 95% intervals: all, or all but one by chance
    assert list(np.argsort(ratings.rating)) == list(np.argsort(strengths))
    assert np.all(ratings.upper - ratings.lower < 40)


def test_bt_bootstrap_is_vectorized_enough_for_100k_battles():
    a, b, s = _tournament(np.linspace(-1, 1, 12), 100_000, seed=2, tie_rate=0.1)
    ratings = bradley_terry_ratings(a, b, s, n_rounds=1000)  # seconds, not minutes (see docs/benchmarks.md)
    assert ratings.rating.shape == (12,) and np.all(ratings.lower <= ratings.rating + 1e-6)


def test_elo_and_win_rate():
    elo = elo_ratings(["a", "a", "b"], ["b", "c", "c"], [1.0, 1.0, 0.5])
    assert elo["a"] > elo["b"] and sum(elo.values()) == pytest.approx(3000)
    assert win_rate([1, 0.5, 0, 1])[0] == 0.625
    assert np.isnan(win_rate([])[0])


def test_length_controlled_win_rate_removes_a_pure_length_effect():
    rng = np.random.default_rng(0)
    diff = rng.normal(50, 40, 4000)  # the candidate is usually longer
    wins = (rng.random(4000) < 1 / (1 + np.exp(-diff / 40))).astype(float)  # judged on length alone
    assert wins.mean() > 0.7
    assert length_controlled_win_rate(wins, diff) == pytest.approx(0.5, abs=0.04)


def test_length_controlled_fit_failure_is_a_clear_error():
    with pytest.raises(FitError, match="separated by length"):
        length_controlled_win_rate([1, 1, 1, 0, 0, 0], [10, 20, 30, -10, -20, -30])
    with pytest.raises(FitError, match="at least 3"):
        length_controlled_win_rate([1], [2])
