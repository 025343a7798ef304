import math

import numpy as np
import pytest

from rewardlab.metrics import mean_margin, pairwise_accuracy


def test_tie_policies():
    chosen, rejected = [1.0, 1.0, 2.0, 0.0], [1.0, 1.0, 1.0, 1.0]
    assert pairwise_accuracy(chosen, rejected, "half") == 0.5
    assert pairwise_accuracy(chosen, rejected, "zero") == 0.25
    assert pairwise_accuracy(chosen, rejected, "exclude") == 0.5


def test_edge_cases_are_nan_not_zero():
    assert math.isnan(pairwise_accuracy([], []))
    assert math.isnan(pairwise_accuracy([1.0], [1.0], "exclude"))
    assert math.isnan(mean_margin([], []))


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="tie_policy"):
        pairwise_accuracy([1.0], [0.0], "drop")
    with pytest.raises(ValueError, match="shapes differ"):
        pairwise_accuracy([1.0, 2.0], [0.0])


def test_accuracy_is_invariant_to_pair_order_and_monotone_transforms():
    rng = np.random.default_rng(0)
    chosen, rejected = rng.normal(size=50), rng.normal(size=50)
    perm = rng.permutation(50)
    base = pairwise_accuracy(chosen, rejected)
    assert pairwise_accuracy(chosen[perm], rejected[perm]) == base
    assert pairwise_accuracy(np.exp(chosen), np.exp(rejected)) == base
    assert pairwise_accuracy(rejected, chosen) == pytest.approx(1 - base)
