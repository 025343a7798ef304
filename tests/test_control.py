"""KL estimators against exact KL of known categorical distributions; the penalized reward; KL controllers."""

import json

import numpy as np
import pytest
import torch

from rewardlab.control import (AdaptiveKLController, FixedKLController, kl_controller_from_state, kl_penalized_rewards,
                               sequence_kl, token_kl)


def _exact_kl(p, q):
    return float((p * (p / q).log()).sum())


@pytest.mark.parametrize("shift", [0.1, 0.5, 1.5])
def test_estimators_bias_and_variance_against_the_exact_kl(shift):
    torch.manual_seed(0)
    logits = torch.randn(20)
    policy = torch.softmax(logits, 0)
    reference = torch.softmax(logits + shift * torch.randn(20), 0)
    exact = _exact_kl(policy, reference)
    samples = torch.multinomial(policy, 200_000, replacement=True)  # tokens drawn from the policy
    logp, ref = policy.log()[samples][None], reference.log()[samples][None]
    est = {k: token_kl(logp, ref, k)[0] for k in ("k1", "k2", "k3")}
    stderr = {k: float(v.std() / np.sqrt(v.numel())) for k, v in est.items()}
    for k in ("k1", "k3"):  # unbiased: the Monte Carlo mean is within 4 standard errors of the exact KL
        assert abs(float(est[k].mean()) - exact) < 4 * stderr[k] + 1e-6, (k, float(est[k].mean()), exact)
    assert float(est["k3"].min()) >= 0 and float(est["k2"].min()) >= 0
    if shift <= 0.5:  # close distributions: k3 and k2 have lower variance than k1, k2's bias is small
        assert est["k3"].var() < est["k1"].var() and est["k2"].var() < est["k1"].var()
        assert abs(float(est["k2"].mean()) - exact) < 0.1 * exact + 1e-3
    else:  # far apart: k2's bias shows
        assert abs(float(est["k2"].mean()) - exact) > 4 * stderr["k2"]


def test_sequence_kl_masks_and_the_penalized_reward_arithmetic():
    logp = torch.log(torch.tensor([[0.5, 0.4, 0.9], [0.2, 0.2, 0.2]]))
    ref = torch.log(torch.tensor([[0.25, 0.4, 0.1], [0.1, 0.4, 0.2]]))
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    k1 = sequence_kl(logp, ref, "k1", mask)
    assert k1.tolist() == pytest.approx([np.log(2), np.log(2) + np.log(0.5)], abs=1e-6)
    rewards = torch.tensor([2.0, 1.0])
    assert kl_penalized_rewards(rewards, logp, ref, 0.1, "k1", mask).tolist() == pytest.approx((rewards - 0.1 * k1).tolist())
    per_token = kl_penalized_rewards(rewards, logp, ref, 0.1, "k1", mask, per_token=True)
    assert per_token[0, 2] == 0 and per_token[0, 1] == pytest.approx(2.0)  # the reward sits on the last response token
    assert per_token.sum(-1).tolist() == pytest.approx((rewards - 0.1 * k1).tolist(), abs=1e-6)
    with pytest.raises(ValueError, match="estimator"):
        token_kl(logp, ref, "k4")


def test_adaptive_controller_drives_a_simulated_kl_process_to_its_target():
    rng = np.random.default_rng(0)
    controller = AdaptiveKLController(value=0.01, target=6.0, horizon=10_000)
    observed = []
    for _ in range(3000):
        kl = 3.0 / controller.value ** 0.5 * (1 + 0.1 * rng.standard_normal())  # KL falls as beta rises, noisily
        observed.append(kl)
        controller.update(kl, n_steps=256)
    assert np.mean(observed[-200:]) == pytest.approx(6.0, rel=0.05)
    assert controller.value == pytest.approx(0.25, rel=0.1)  # 3 / sqrt(beta) = 6
    restored = kl_controller_from_state(json.loads(json.dumps(controller.state_dict())))
    assert restored == controller and restored.update(6.0, 256) == controller.value  # error 0: no change
    fixed = FixedKLController(0.05)
    assert fixed.update(100.0, 256) == 0.05 and kl_controller_from_state(fixed.state_dict()) == fixed
