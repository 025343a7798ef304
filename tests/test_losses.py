import math

import pytest
import torch

from rewardlab.losses import bradley_terry_loss, reward_centering_penalty


@pytest.mark.parametrize("diff, expected", [(0.0, math.log(2)), (4.0, 0.01815), (-4.0, 4.01815)])
def test_bradley_terry_anchor_values(diff, expected):
    loss = bradley_terry_loss(torch.tensor([diff]), torch.tensor([0.0]))
    assert loss.item() == pytest.approx(expected, abs=1e-4)


def test_bradley_terry_matches_definition_and_is_stable():
    torch.manual_seed(0)
    chosen, rejected = torch.randn(64) * 3, torch.randn(64) * 3
    reference = -torch.log(torch.sigmoid(chosen - rejected))
    assert torch.allclose(bradley_terry_loss(chosen, rejected), reference, atol=1e-5)
    extreme = bradley_terry_loss(torch.tensor([1e4, -1e4]), torch.zeros(2))
    assert torch.isfinite(extreme).all() and extreme[1].item() == pytest.approx(1e4)


def test_bradley_terry_swap_property():
    # loss(a, b) - loss(b, a) = b - a for every pair: logistic symmetry.
    a, b = torch.randn(32), torch.randn(32)
    assert torch.allclose(bradley_terry_loss(a, b) - bradley_terry_loss(b, a), b - a, atol=1e-5)


def test_margin_shifts_the_decision_boundary():
    chosen, rejected, margins = torch.tensor([3.0]), torch.tensor([1.0]), torch.tensor([2.0])
    assert bradley_terry_loss(chosen, rejected, margins).item() == pytest.approx(math.log(2), abs=1e-6)
    assert bradley_terry_loss(chosen, rejected, margins) > bradley_terry_loss(chosen, rejected)


def test_margin_gradient_flows_only_through_rewards():
    chosen = torch.tensor([0.5], requires_grad=True)
    bradley_terry_loss(chosen, torch.zeros(1), torch.tensor([1.0])).sum().backward()
    assert chosen.grad.item() == pytest.approx(-torch.sigmoid(torch.tensor(0.5)).item(), abs=1e-6)


def test_reward_centering_penalty_is_zero_for_centred_pairs_and_scales():
    assert reward_centering_penalty(torch.tensor([2.0]), torch.tensor([-2.0]), 1.0).item() == 0.0
    assert reward_centering_penalty(torch.tensor([1.0]), torch.tensor([2.0]), 0.5).item() == pytest.approx(4.5)
