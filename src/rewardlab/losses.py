"""Training objectives as pure functions of reward tensors, returning per-example values.

The caller reduces (usually ``.mean()``). Leaf module: imports nothing from rewardlab.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["bradley_terry_loss", "reward_centering_penalty"]


def bradley_terry_loss(
    chosen_rewards: torch.Tensor, rejected_rewards: torch.Tensor, margins: torch.Tensor | None = None
) -> torch.Tensor:
    """Bradley-Terry negative log-likelihood, optionally with a per-pair margin.

    ``loss = -log sigmoid(r_c - r_r - m)`` (Ouyang et al., arXiv:2203.02155 eq. 1; the margin
    ``m`` from Llama 2, arXiv:2307.09288 eq. 2), computed as ``softplus(-(r_c - r_r - m))``.

    Shapes: ``(N,)``, ``(N,)``, optional ``(N,)`` -> ``(N,)``.

    >>> rewards = torch.tensor([0.0, 4.0, -4.0], dtype=torch.float64)
    >>> [round(x, 4) for x in bradley_terry_loss(rewards, torch.zeros(3, dtype=torch.float64)).tolist()]
    [0.6931, 0.0181, 4.0181]
    >>> round(bradley_terry_loss(torch.tensor([1.0]), torch.zeros(1), margins=torch.tensor([1.0])).item(), 4)
    0.6931
    """
    logits = chosen_rewards - rejected_rewards
    if margins is not None:
        logits = logits - margins
    return F.softplus(-logits)


def reward_centering_penalty(
    chosen_rewards: torch.Tensor, rejected_rewards: torch.Tensor, coefficient: float
) -> torch.Tensor:
    """Auxiliary loss that keeps rewards centred at zero: ``c * (r_c + r_r)^2`` per pair.

    Eisenstein et al., arXiv:2312.09244 (as TRL's ``center_rewards_coefficient``); its mean
    over the batch is the ``c * mean((r_c + r_r)^2)`` term. Shapes: ``(N,)``, ``(N,)`` -> ``(N,)``.

    >>> reward_centering_penalty(torch.tensor([1.0, 2.0]), torch.tensor([1.0, -2.0]), 0.01).tolist()
    [0.03999999910593033, 0.0]
    """
    return coefficient * (chosen_rewards + rejected_rewards) ** 2
