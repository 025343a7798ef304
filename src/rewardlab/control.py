"""KL estimators, the KL-penalized reward, and KL controllers: the optimization-side defences against reward hacking.

Conventions (Schulman, "Approximating KL divergence", 2020): tokens ``y_t`` are sampled from the policy
``pi``; per token ``log r_t = log pi_ref(y_t | .) - log pi(y_t | .)``, and ``KL(pi || pi_ref) = E_pi[-log r]``.

=========  =====================  ================================================
estimator  per token              properties (tokens sampled from pi)
=========  =====================  ================================================
``k1``     ``-log r``             unbiased; high variance; negative on some tokens
``k2``     ``(log r)^2 / 2``      biased (exact to second order); low variance; >= 0
``k3``     ``(r - 1) - log r``    unbiased; low variance; >= 0 on every token
=========  =====================  ================================================

(Issue 17 wrote ``k1 = log r``; with ``r = pi_ref / pi`` that is minus the KL, so the sign here is ``-log r``.)
A sequence's KL is the sum over its response tokens (mask 1). In the loss, the gradient of ``k3`` with
respect to the policy's log-probs is ``1 - r`` per token (used by GRPO's KL term); in the reward,
``r_total = r - beta * KL`` per sequence, or ``-beta * k_t`` per token with ``r`` added at the last token
(Ziegler et al. arXiv:1909.08593; Ouyang et al. arXiv:2203.02155).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Literal

import torch

__all__ = [
    "AdaptiveKLController", "FixedKLController", "KLEstimator", "kl_controller_from_state", "kl_penalized_rewards",
    "sequence_kl", "token_kl",
]

KLEstimator = Literal["k1", "k2", "k3"]


def token_kl(policy_logprobs: torch.Tensor, reference_logprobs: torch.Tensor, estimator: KLEstimator = "k3",
             mask: torch.Tensor | None = None) -> torch.Tensor:
    """Per-token KL estimates ``(B, T)`` (0 where ``mask`` is 0), from per-token log-probs ``(B, T)`` of the sampled tokens.

    >>> logp, ref = torch.log(torch.tensor([[0.5, 0.25]])), torch.log(torch.tensor([[0.25, 0.125]]))
    >>> [round(v, 4) for v in token_kl(logp, ref, "k1").tolist()[0]], [round(v, 4) for v in token_kl(logp, ref, "k3").tolist()[0]]
    ([0.6931, 0.6931], [0.1931, 0.1931])
    """
    log_r = reference_logprobs.float() - policy_logprobs.float()
    if estimator == "k1":
        kl = -log_r
    elif estimator == "k2":
        kl = log_r.pow(2) / 2
    elif estimator == "k3":
        kl = torch.expm1(log_r) - log_r  # (r - 1) - log r, exact near r = 1
    else:
        raise ValueError(f"estimator must be 'k1', 'k2' or 'k3', got {estimator!r}")
    return kl if mask is None else kl * mask.to(kl.dtype)


def sequence_kl(policy_logprobs: torch.Tensor, reference_logprobs: torch.Tensor, estimator: KLEstimator = "k3",
                mask: torch.Tensor | None = None) -> torch.Tensor:
    """Per-sequence KL ``(B,)``: the sum of :func:`token_kl` over the masked response tokens.

    >>> logp = torch.log(torch.tensor([[0.5, 0.5, 0.9]])); ref = torch.log(torch.tensor([[0.25, 0.5, 0.1]]))
    >>> round(sequence_kl(logp, ref, "k1", mask=torch.tensor([[1, 1, 0]])).item(), 4)
    0.6931
    """
    return token_kl(policy_logprobs, reference_logprobs, estimator, mask).sum(-1)


def kl_penalized_rewards(rewards: torch.Tensor, policy_logprobs: torch.Tensor, reference_logprobs: torch.Tensor,
                         beta: float, estimator: KLEstimator = "k1", mask: torch.Tensor | None = None,
                         per_token: bool = False) -> torch.Tensor:
    """The reward an RL step optimizes with the KL "in the reward".

    * ``per_token=False``: ``(B,)`` = ``rewards - beta * sequence_kl`` (InstructGPT's objective).
    * ``per_token=True``: ``(B, T)`` = ``-beta * k_t`` on every response token, plus ``rewards`` at each
      sequence's last masked token (the per-token reward PPO implementations feed to GAE).

    >>> logp, ref = torch.zeros(1, 3), torch.full((1, 3), -0.1)
    >>> round(kl_penalized_rewards(torch.tensor([1.0]), logp, ref, beta=0.5).item(), 4)
    0.85
    >>> [round(v, 3) for v in kl_penalized_rewards(torch.tensor([1.0]), logp, ref, 0.5, per_token=True)[0].tolist()]
    [-0.05, -0.05, 0.95]
    """
    if beta < 0:
        raise ValueError(f"beta must be >= 0, got {beta}")
    kl = token_kl(policy_logprobs, reference_logprobs, estimator, mask)
    if not per_token:
        return rewards.float() - beta * kl.sum(-1)
    out = -beta * kl
    m = torch.ones_like(kl) if mask is None else mask.to(kl.dtype)
    last = (m.shape[-1] - 1 - torch.flip(m, [-1]).argmax(-1)).long()  # index of each row's last response token
    out[torch.arange(out.shape[0]), last] += rewards.float()
    return out


@dataclass
class FixedKLController:
    """A constant KL coefficient; ``update`` does nothing (same interface as the adaptive controller)."""

    value: float

    def update(self, observed_kl: float, n_steps: int) -> float:
        return self.value

    def state_dict(self) -> dict[str, Any]:
        return {"kind": "fixed", **asdict(self)}


@dataclass
class AdaptiveKLController:
    """Ziegler et al. (arXiv:1909.08593, section 2.2): steer the observed KL to ``target``.

    ``e = clip(KL_observed / target - 1, -0.2, 0.2)``; ``beta <- beta * (1 + e * n_steps / horizon)``, where
    ``n_steps`` is how many samples (or steps) the observation covers.

    >>> c = AdaptiveKLController(value=0.1, target=6.0, horizon=10000)
    >>> round(c.update(12.0, n_steps=256), 5)   # KL twice the target: the error clips at +0.2
    0.10051
    """

    value: float
    target: float
    horizon: float
    clip: float = 0.2

    def __post_init__(self) -> None:
        if self.value < 0 or self.target <= 0 or self.horizon <= 0 or self.clip <= 0:
            raise ValueError("need value >= 0 and target, horizon, clip > 0")

    def update(self, observed_kl: float, n_steps: int) -> float:
        if not math.isfinite(observed_kl):
            raise ValueError(f"observed KL must be finite, got {observed_kl}")
        error = min(max(observed_kl / self.target - 1.0, -self.clip), self.clip)
        self.value *= 1.0 + error * n_steps / self.horizon
        return self.value

    def state_dict(self) -> dict[str, Any]:
        return {"kind": "adaptive", **asdict(self)}


def kl_controller_from_state(state: dict[str, Any]) -> FixedKLController | AdaptiveKLController:
    """Rebuild a controller from its ``state_dict()`` (e.g. JSON saved with a checkpoint).

    >>> kl_controller_from_state(AdaptiveKLController(0.2, 6.0, 1e4).state_dict())
    AdaptiveKLController(value=0.2, target=6.0, horizon=10000.0, clip=0.2)
    """
    fields = {k: v for k, v in state.items() if k != "kind"}
    if state.get("kind") == "fixed":
        return FixedKLController(**fields)
    if state.get("kind") == "adaptive":
        return AdaptiveKLController(**fields)
    raise ValueError(f"unknown KL controller state {state!r}")
