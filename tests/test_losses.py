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


# ---- objectives beyond pairwise -------------------------------------------------------------
import itertools

from rewardlab.losses import davidson_tie_loss, dpo_implicit_reward, dpo_loss, plackett_luce_loss, regression_loss


def _pl_by_enumeration(rewards, order):
    """-log P(order) written out term by term from the Plackett-Luce formula."""
    weights = [math.exp(r) for r in rewards]
    remaining, logp = list(order), 0.0
    for item in order:
        logp += math.log(weights[item] / sum(weights[j] for j in remaining))
        remaining.remove(item)
    return -logp


@pytest.mark.parametrize("k", [2, 3, 4])
def test_plackett_luce_equals_explicit_enumeration_and_is_a_distribution(k):
    torch.manual_seed(k)
    rewards = torch.randn(k, dtype=torch.float64) * 2
    total = 0.0
    for order in itertools.permutations(range(k)):
        ranks = torch.empty(k, dtype=torch.float64)
        ranks[list(order)] = torch.arange(1, k + 1, dtype=torch.float64)
        ours = plackett_luce_loss(rewards[None], ranks[None]).item()
        assert ours == pytest.approx(_pl_by_enumeration(rewards.tolist(), order), abs=1e-9)
        total += math.exp(-ours)
    assert total == pytest.approx(1.0, abs=1e-9)  # probabilities of all K! rankings sum to one


def test_plackett_luce_k2_is_bradley_terry_and_padding_is_ignored():
    torch.manual_seed(0)
    r = torch.randn(16, 2)
    assert torch.allclose(plackett_luce_loss(r, torch.tensor([[1, 2]] * 16)), bradley_terry_loss(r[:, 0], r[:, 1]), atol=1e-6)
    padded = torch.cat([r, torch.full((16, 2), 123.0)], dim=1)
    mask = torch.tensor([[1, 1, 0, 0]] * 16)
    ranks = torch.tensor([[1, 2, 0, 0]] * 16)
    assert torch.allclose(plackett_luce_loss(padded, ranks, mask), bradley_terry_loss(r[:, 0], r[:, 1]), atol=1e-6)


def test_plackett_luce_top_k_truncation():
    r = torch.tensor([[1.0, 0.5, -1.0, 2.0]])
    ranks = torch.tensor([[1, 2, 3, 4]])
    top1 = plackett_luce_loss(r, ranks, top_k=1)
    assert top1.item() == pytest.approx(-torch.log_softmax(r, -1)[0, 0].item(), abs=1e-6)
    assert plackett_luce_loss(r, ranks, top_k=3).item() == pytest.approx(plackett_luce_loss(r, ranks).item(), abs=1e-6)


def test_davidson_reduces_to_bt_and_its_outcomes_sum_to_one():
    torch.manual_seed(0)
    c, r = torch.randn(32, dtype=torch.float64), torch.randn(32, dtype=torch.float64)
    no_tie = torch.zeros(32, dtype=torch.bool)
    assert torch.allclose(davidson_tie_loss(c, r, no_tie, 1e-12), bradley_terry_loss(c, r), atol=1e-9)
    for nu in (0.3, 1.0, 4.0):
        win = torch.exp(-davidson_tie_loss(c, r, no_tie, nu))
        loss = torch.exp(-davidson_tie_loss(r, c, no_tie, nu))
        tie = torch.exp(-davidson_tie_loss(c, r, ~no_tie, nu))
        assert torch.allclose(win + loss + tie, torch.ones(32, dtype=torch.float64), atol=1e-9)
    # a tie is most likely when the rewards are equal
    grid = torch.linspace(-3, 3, 61, dtype=torch.float64)
    tie_nll = davidson_tie_loss(grid, torch.zeros_like(grid), torch.ones_like(grid, dtype=torch.bool), 1.0)
    assert grid[tie_nll.argmin()].item() == pytest.approx(0.0)


def test_regression_losses_and_multi_head_mask():
    assert regression_loss(torch.tensor([0.0, 2.0]), torch.tensor([1.0, 2.0])).tolist() == [1.0, 0.0]
    huber = regression_loss(torch.tensor([0.0, 0.0]), torch.tensor([0.5, 3.0]), kind="huber", huber_delta=1.0)
    assert huber.tolist() == pytest.approx([0.125, 2.5])
    pred, target = torch.tensor([[1.0, 5.0]]), torch.tensor([[0.0, 0.0]])
    assert regression_loss(pred, target, mask=torch.tensor([[1, 0]])).tolist() == [1.0]
    with pytest.raises(ValueError, match="kind"):
        regression_loss(pred, target, kind="l1")


def test_dpo_partition_term_cancels():
    torch.manual_seed(0)
    pc, pr, rc, rr = (torch.randn(8) * 5 for _ in range(4))
    beta = 0.3
    direct = -torch.nn.functional.logsigmoid(beta * ((pc - rc) - (pr - rr)))
    assert torch.allclose(dpo_loss(pc, pr, rc, rr, beta), direct, atol=1e-5)
    # adding any per-prompt constant (log Z(x)) to both implicit rewards changes nothing
    shift = torch.randn(8) * 10
    shifted = bradley_terry_loss(dpo_implicit_reward(pc, rc, beta) + shift, dpo_implicit_reward(pr, rr, beta) + shift)
    assert torch.allclose(shifted, direct, atol=1e-4)
    assert torch.equal(dpo_implicit_reward(pc, pc, beta), torch.zeros(8))
