"""Training objectives as pure functions of reward tensors, returning per-example values.

The caller reduces (usually ``.mean()``). Leaf module: imports nothing from rewardlab.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = [
    "l2_anchor_penalty",
    "bradley_terry_loss",
    "davidson_tie_loss",
    "dpo_implicit_reward",
    "dpo_loss",
    "step_bce_loss",
    "step_cross_entropy_loss",
    "plackett_luce_loss",
    "regression_loss",
    "reward_centering_penalty",
]


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


def l2_anchor_penalty(params: list[torch.Tensor], anchors: list[torch.Tensor], coef: float) -> torch.Tensor:
    """Pre-training anchor: ``coef * sum_i ||theta_i - theta0_i||^2`` over the trained weights (a scalar).

    Keeps the reward model near the backbone it started from, so fine-tuning cannot drift far into
    spurious features (L2-SP, Li et al. arXiv:1802.01483). Zero at initialization.

    >>> w = torch.tensor([1.0, 2.0])
    >>> l2_anchor_penalty([w], [w.clone()], 0.5).item(), l2_anchor_penalty([w + 1], [w], 0.5).item()
    (0.0, 1.0)
    """
    if len(params) != len(anchors):
        raise ValueError(f"got {len(params)} parameters but {len(anchors)} anchors")
    total = sum(((p.float() - a.to(p.device, torch.float32)) ** 2).sum() for p, a in zip(params, anchors))
    return coef * total if isinstance(total, torch.Tensor) else torch.zeros(())


def regression_loss(
    predicted: torch.Tensor, target: torch.Tensor, kind: str = "mse", huber_delta: float = 1.0,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Pointwise regression to absolute scores: squared error or Huber, per example.

    For ``K`` objectives, ``(N, K)`` inputs give the mean over the attributes each example has
    (``mask`` ``(N, K)``, 1 where a target exists). Shapes: ``(N,)`` or ``(N, K)`` -> ``(N,)``.

    >>> regression_loss(torch.tensor([1.0, 3.0]), torch.tensor([2.0, 3.0])).tolist()
    [1.0, 0.0]
    >>> regression_loss(torch.tensor([0.0]), torch.tensor([3.0]), kind="huber").tolist()
    [2.5]
    """
    if kind == "mse":
        per = (predicted - target) ** 2
    elif kind == "huber":
        per = F.huber_loss(predicted, target, reduction="none", delta=huber_delta)
    else:
        raise ValueError(f"kind must be 'mse' or 'huber', got {kind!r}")
    if per.dim() == 1:
        return per
    mask = torch.ones_like(per) if mask is None else mask.to(per.dtype)
    return (per * mask).sum(-1) / mask.sum(-1).clamp(min=1)


def plackett_luce_loss(rewards: torch.Tensor, ranks: torch.Tensor, mask: torch.Tensor | None = None, top_k: int | None = None) -> torch.Tensor:
    """Listwise Plackett-Luce negative log-likelihood of the observed ranking, per list.

    ``-log P(pi) = sum_{i=1}^{k} [log sum_{j >= i} exp(r_{pi(j)}) - r_{pi(i)}]`` where ``pi``
    sorts responses best first (Plackett 1975; Luce 1959; used for RMs in Zhu et al.,
    arXiv:2301.11270). ``top_k`` keeps only the first k terms (top-k truncated PL); for K = 2
    this is exactly Bradley-Terry. Padding slots have ``mask == 0``. Ties in ``ranks`` are
    broken by position (stable sort).

    Shapes: ``rewards`` ``(N, K)``, ``ranks`` ``(N, K)`` (1 = best), ``mask`` ``(N, K)`` -> ``(N,)``.

    >>> r = torch.tensor([[2.0, 0.0]])
    >>> torch.allclose(plackett_luce_loss(r, torch.tensor([[1, 2]])), bradley_terry_loss(r[:, 0], r[:, 1]))
    True
    """
    mask = torch.ones_like(rewards, dtype=torch.bool) if mask is None else mask.bool()
    big = torch.finfo(rewards.dtype).max
    order = torch.argsort(torch.where(mask, ranks.to(rewards.dtype), big), dim=-1, stable=True)
    sorted_rewards = rewards.gather(-1, order)
    sorted_mask = mask.gather(-1, order)
    masked = torch.where(sorted_mask, sorted_rewards, torch.full_like(sorted_rewards, -float("inf")))
    # log sum_{j >= i} exp(r_j): a reversed cumulative logsumexp.
    tail_lse = torch.logcumsumexp(masked.flip(-1), dim=-1).flip(-1)
    terms = tail_lse - sorted_rewards
    positions = torch.arange(rewards.shape[-1], device=rewards.device)
    n_valid = sorted_mask.sum(-1, keepdim=True)
    keep = positions < n_valid - 1  # the last term is always 0
    if top_k is not None:
        keep = keep & (positions < top_k)
    return torch.where(keep, terms, torch.zeros_like(terms)).sum(-1)


def davidson_tie_loss(
    chosen_rewards: torch.Tensor, rejected_rewards: torch.Tensor, is_tie: torch.Tensor, tie_strength: float = 1.0
) -> torch.Tensor:
    """Davidson (1970) pairwise likelihood with ties, per pair.

    With ``nu = tie_strength``: ``P(c > r) = e^{r_c} / Z``, ``P(tie) = nu e^{(r_c + r_r)/2} / Z``,
    ``Z = e^{r_c} + e^{r_r} + nu e^{(r_c + r_r)/2}``. Chosen over Rao-Kupper because the tie
    probability peaks at equal rewards and it stays a smooth function of ``r_c - r_r`` with no
    threshold; as ``nu -> 0`` it is Bradley-Terry. Shapes: ``(N,)`` x 3 -> ``(N,)``.

    >>> c, r = torch.tensor([1.0]), torch.tensor([0.0])
    >>> torch.allclose(davidson_tie_loss(c, r, torch.tensor([False]), 1e-9), bradley_terry_loss(c, r))
    True
    """
    log_nu = torch.log(torch.as_tensor(tie_strength, dtype=chosen_rewards.dtype))
    tie_logit = log_nu + (chosen_rewards + rejected_rewards) / 2
    log_z = torch.logsumexp(torch.stack([chosen_rewards, rejected_rewards, tie_logit.expand_as(chosen_rewards)]), dim=0)
    return log_z - torch.where(is_tie.bool(), tie_logit, chosen_rewards)


def dpo_implicit_reward(policy_logps: torch.Tensor, reference_logps: torch.Tensor, beta: float) -> torch.Tensor:
    """``r(x, y) = beta * (log pi_theta(y|x) - log pi_ref(y|x))`` (Rafailov et al., arXiv:2305.18290 eq. 5).

    Shapes: ``(N,)``, ``(N,)`` -> ``(N,)``.

    >>> dpo_implicit_reward(torch.tensor([-3.0]), torch.tensor([-3.0]), beta=0.1).tolist()
    [0.0]
    """
    return beta * (policy_logps - reference_logps)


def dpo_loss(
    policy_chosen_logps: torch.Tensor, policy_rejected_logps: torch.Tensor,
    reference_chosen_logps: torch.Tensor, reference_rejected_logps: torch.Tensor, beta: float,
) -> torch.Tensor:
    """DPO loss (arXiv:2305.18290 eq. 7): Bradley-Terry on implicit rewards, per pair.

    ``-log sigmoid(beta * [(log pi(y_c) - log ref(y_c)) - (log pi(y_r) - log ref(y_r))])``; the
    partition function ``Z(x)`` cancels in the difference. Shapes: ``(N,)`` x 4 -> ``(N,)``.

    >>> z = torch.zeros(1)
    >>> round(dpo_loss(z, z, z, z, beta=0.1).item(), 4)
    0.6931
    """
    return bradley_terry_loss(
        dpo_implicit_reward(policy_chosen_logps, reference_chosen_logps, beta),
        dpo_implicit_reward(policy_rejected_logps, reference_rejected_logps, beta),
    )


def step_bce_loss(step_logits: torch.Tensor, step_targets: torch.Tensor, step_mask: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy per solution, averaged over its labelled steps; targets may be soft.

    Hard labels (0/1) or soft ones (Math-Shepherd's fraction of correct completions, arXiv:2312.08935);
    unlabelled steps have ``step_mask == 0``. Shapes: ``(N, S)`` x 3 -> ``(N,)``.

    >>> round(step_bce_loss(torch.zeros(1, 2), torch.tensor([[1.0, 0.3]]), torch.tensor([[1, 0]])).item(), 4)
    0.6931
    """
    per = F.binary_cross_entropy_with_logits(step_logits, step_targets.to(step_logits.dtype), reduction="none")
    mask = step_mask.to(per.dtype)
    return (per * mask).sum(-1) / mask.sum(-1).clamp(min=1)


def step_cross_entropy_loss(step_logits: torch.Tensor, step_classes: torch.Tensor, step_mask: torch.Tensor) -> torch.Tensor:
    """3-class (-1 / 0 / +1 as classes 0 / 1 / 2) cross-entropy per solution over labelled steps.

    Shapes: ``(N, S, 3)``, ``(N, S)`` long, ``(N, S)`` -> ``(N,)``.
    """
    per = F.cross_entropy(step_logits.transpose(1, 2), step_classes.clamp(min=0), reduction="none")
    mask = step_mask.to(per.dtype)
    return (per * mask).sum(-1) / mask.sum(-1).clamp(min=1)
