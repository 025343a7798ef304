import numpy as np
import pytest

from rewardlab.evaluation.calibration import brier_loss, expected_calibration_error, fit_temperature, reliability_curve


def _calibrated_pairs(n=40000, scale=2.0, seed=0):
    """Margins whose sigmoid is the true probability that the labelled 'chosen' really won."""
    rng = np.random.default_rng(seed)
    true = rng.normal(0, scale, n)
    won = rng.random(n) < 1 / (1 + np.exp(-true))
    return np.where(won, true, -true)  # margin seen from the side that won


def test_perfectly_calibrated_scorer_has_near_zero_ece():
    margins = _calibrated_pairs()
    assert expected_calibration_error(margins, binning="width") < 0.01
    assert expected_calibration_error(margins, binning="mass") < 0.01
    p, f, counts = reliability_curve(margins)
    assert np.allclose(p, f, atol=0.03) and counts.sum() == 2 * margins.size


def test_temperature_scaling_fixes_a_mis_scaled_scorer():
    margins = _calibrated_pairs(seed=1)
    over, under = margins * 4, margins / 4
    for scaled, true_t in ((over, 4.0), (under, 0.25)):
        before = expected_calibration_error(scaled)
        t = fit_temperature(scaled[:20000])
        after = expected_calibration_error(scaled[20000:], temperature=t)
        assert t == pytest.approx(true_t, rel=0.1)
        assert before > 0.05 and after < 0.015
        assert brier_loss(scaled[20000:], t) <= brier_loss(scaled[20000:]) + 1e-9


def test_edge_cases():
    assert np.isnan(expected_calibration_error(np.array([])))
    assert np.isnan(brier_loss(np.array([])))
    with pytest.raises(ValueError, match="no pairs"):
        fit_temperature(np.array([]))
    with pytest.raises(ValueError, match="binning"):
        reliability_curve(np.array([1.0]), binning="log")
