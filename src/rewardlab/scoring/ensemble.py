"""Reward ensembles as one :class:`Scorer`: conservative aggregation against reward hacking, spread as an OOD signal.

Aggregations over the K members' (scaled) rewards ``r_1..r_K`` of one item (Coste et al. arXiv:2310.02743):

* ``mean``: ``mean_k r_k``;
* ``min``: ``min_k r_k`` (worst-case optimization, WCO);
* ``mean_minus_std``: ``mean - lambda * std`` (a lower confidence bound);
* ``uncertainty_weighted``: ``mean - lambda * var`` (UWO: items the members disagree on are penalized
  quadratically in the disagreement).

``std``/``var`` are across members (population, ddof=0). Members trained separately put rewards on different
scales (BT rewards are shift-invariant), so they are put on one scale first: ``scale="saved"`` expects
members that already z-normalize with the reward mean/std saved at training (``RewardModelConfig(normalize=True)``,
what an ``EnsembleConfig`` with scale 'saved' does for its members); ``scale="reference"`` z-scores each member
on a reference set (:meth:`EnsembleScorer.fit_scale`); ``scale="none"`` takes rewards as they are.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..data.templating import Prompt
from ..errors import ConfigError
from .config import EnsembleAggregate, EnsembleRule, RewardModelConfig
from .protocol import HeadScorer, LengthChecked, Scorer

__all__ = ["EnsembleAggregate", "EnsembleRewards", "EnsembleScorer", "LoraMember", "aggregate_members", "load_lora_ensemble"]


def aggregate_members(rewards: np.ndarray, how: EnsembleAggregate = "mean", lam: float = 1.0) -> np.ndarray:
    """One reward per item from ``(K, N)`` member rewards -> ``(N,)``.

    >>> r = np.array([[1.0, 0.0], [3.0, 0.0]])
    >>> [aggregate_members(r, h, lam=0.5).tolist() for h in ("mean", "min", "mean_minus_std", "uncertainty_weighted")]
    [[2.0, 0.0], [1.0, 0.0], [1.5, 0.0], [1.5, 0.0]]
    """
    if rewards.ndim != 2 or rewards.shape[0] < 1:
        raise ValueError(f"expected (members, items) rewards, got shape {rewards.shape}")
    mean = rewards.mean(0)
    if how == "mean":
        return mean
    if how == "min":
        return rewards.min(0)
    if how == "mean_minus_std":
        return mean - lam * rewards.std(0)
    if how == "uncertainty_weighted":
        return mean - lam * rewards.var(0)
    raise ConfigError(f"ensemble aggregation must be mean, min, mean_minus_std or uncertainty_weighted, got {how!r}")


@dataclass(frozen=True)
class EnsembleRewards:
    """What an ensemble says about N items: the aggregate ``(N,)``, every member's scaled rewards ``(K, N)``,
    and their spread ``std`` ``(N,)`` (an out-of-distribution signal)."""

    rewards: np.ndarray
    members: np.ndarray
    std: np.ndarray


class EnsembleScorer:
    """K scorers (or the K heads of one multi-head model) as one :class:`Scorer`; a :class:`HeadScorer` too, whose
    "heads" are the members plus ``std``, so ``score_file`` and the server report every member and the spread.

    >>> from rewardlab.scoring.protocol import FunctionScorer
    >>> members = [FunctionScorer(lambda p, r: float(len(r))), FunctionScorer(lambda p, r: 0.0)]
    >>> ensemble = EnsembleScorer(members, EnsembleRule(aggregate="min", scale="none"))
    >>> ensemble.score(["q", "q"], ["ab", "abcd"]), ensemble.score_detailed(["q"], ["ab"]).std.tolist()
    ([0.0, 0.0], [1.0])
    """

    def __init__(self, members: Sequence[Scorer] | None = None, rule: EnsembleRule = EnsembleRule(),
                 heads_of: HeadScorer | None = None, names: Sequence[str] | None = None):
        """``rule``'s scale 'saved' takes the members as they are (they normalize themselves) and 'reference' waits
        for :meth:`fit_scale`."""
        if (members is None) == (heads_of is None):
            raise ConfigError("give the ensemble either members (scorers) or heads_of (one multi-head scorer)")
        self.members = list(members or [])
        self.heads_of = heads_of
        count = len(heads_of.heads) if heads_of is not None else len(self.members)
        if count < 2:
            raise ConfigError(f"an ensemble needs at least 2 members, got {count}")
        self.rule = rule
        self.aggregate, self.lam, self.scale = rule.aggregate, rule.lam, rule.scale
        self.member_names = list(names) if names else (list(heads_of.heads) if heads_of is not None else [f"member_{k}" for k in range(count)])
        self.offsets = np.zeros(count)
        self.scales = np.ones(count)
        self.fitted = rule.scale != "reference"
        self.heads = [*self.member_names, "std"]

    @property
    def max_length(self) -> int:  # for LengthChecked: the tightest member limit
        limits = [m.max_length for m in self._checked()] or [0]
        return min(limits)

    def _checked(self) -> list[Any]:
        sources = self.members if self.heads_of is None else [self.heads_of]
        return [m for m in sources if isinstance(m, LengthChecked)]

    def too_long(self, prompts: Sequence[Prompt], responses: Sequence[str]) -> list[int]:
        return sorted({i for m in self._checked() for i in m.too_long(prompts, responses)})

    def raw_members(self, prompts: Sequence[Prompt], responses: Sequence[str]) -> np.ndarray:
        """Unscaled member rewards ``(K, N)``; one forward pass for all heads of a multi-head ensemble."""
        if self.heads_of is not None:
            rows = self.heads_of.score_named(prompts, responses)
            return np.array([[row[h] for row in rows] for h in self.heads_of.heads], dtype=float).reshape(len(self.member_names), -1)
        return np.array([m.score(prompts, responses) for m in self.members], dtype=float).reshape(len(self.members), -1)

    def fit_scale(self, prompts: Sequence[Prompt], responses: Sequence[str]) -> EnsembleScorer:
        """z-score each member on a reference set (``scale="reference"``): ``(r - mean_k) / std_k``."""
        raw = self.raw_members(prompts, responses)
        if raw.shape[1] < 2:
            raise ConfigError("the reference set for ensemble scaling needs at least 2 items")
        self.offsets, self.scales = raw.mean(1), np.where(raw.std(1) > 0, raw.std(1), 1.0)
        self.fitted = True
        return self

    def score_detailed(self, prompts: Sequence[Prompt], responses: Sequence[str]) -> EnsembleRewards:
        if not self.fitted:
            raise ConfigError("scale='reference' needs fit_scale(prompts, responses) on a reference set first")
        members = (self.raw_members(prompts, responses) - self.offsets[:, None]) / self.scales[:, None]
        return EnsembleRewards(aggregate_members(members, self.aggregate, self.lam), members, members.std(0))

    def score(self, prompts: Sequence[Prompt], responses: Sequence[str]) -> list[float]:
        return self.score_detailed(prompts, responses).rewards.tolist()

    def score_named(self, prompts: Sequence[Prompt], responses: Sequence[str]) -> list[dict[str, float]]:
        detail = self.score_detailed(prompts, responses)
        return [{**{n: float(detail.members[k, i]) for k, n in enumerate(self.member_names)}, "std": float(detail.std[i])}
                for i in range(detail.members.shape[1])]

    def combined(self, row: dict[str, float]) -> float | None:
        return float(aggregate_members(np.array([[row[n]] for n in self.member_names]), self.aggregate, self.lam)[0])

    def describe(self) -> dict[str, Any]:
        sources = [m.describe() for m in self.members] if self.heads_of is None else [self.heads_of.describe()]
        return {"kind": "ensemble", "model": [s.get("model") for s in sources], "record": {"ensemble_aggregate": self.aggregate},
                "settings": {"aggregate": self.aggregate, "lambda": self.lam, "scale": self.scale,
                             "offsets": self.offsets.tolist(), "scales": self.scales.tolist(), "members": sources,
                             "heads_of": self.heads_of is not None}}


class LoraMember:
    """One LoRA adapter of a shared base model as a :class:`Scorer`: scoring switches the base to this adapter and
    its head first, so K members cost one model in memory (members must be called one at a time)."""

    def __init__(self, base: Any, adapter: str, head: dict[str, Any], source: str):
        self.base, self.adapter, self.head, self.source = base, adapter, head, source

    @property
    def max_length(self) -> int:
        return self.base.max_length

    def too_long(self, prompts: Sequence[Prompt], responses: Sequence[str]) -> list[int]:
        return self.base.too_long(prompts, responses)

    def _activate(self) -> None:
        import torch

        from ..models.lora import set_adapter

        set_adapter(self.base.model.hf_model, self.adapter)
        params = dict(self.base.model.hf_model.named_parameters())
        with torch.no_grad():
            for name, value in self.head.items():
                params[name].copy_(value)

    def score(self, prompts: Sequence[Prompt], responses: Sequence[str]) -> list[float]:
        self._activate()
        return self.base.score(prompts, responses)

    def describe(self) -> dict[str, Any]:
        from .local import model_fingerprint

        inner = self.base.describe()
        return {**inner, "kind": "lora_member", "model": self.source,
                "settings": {**inner["settings"], "adapter": model_fingerprint(self.source)}}


def load_lora_ensemble(config: RewardModelConfig, listing: dict[str, Any]) -> list[LoraMember]:
    """The members of the LoRA ensemble folder ``config.model`` (``rewardlab train --ensemble K --ensemble-kind lora``)
    over one base model: the base backbone is built once (in ``config.precision``, with the members' heads), every
    member's adapter is injected into it, its tokenizer and metadata are the first member's. Members are z-scored
    with their saved reward statistics."""
    from dataclasses import replace
    from pathlib import Path

    from ..models.io import RewardModelMetadata, build_reward_model
    from ..models.lora import load_adapter
    from .local import LocalScorer

    root = Path(config.model)
    first = RewardModelMetadata.from_file(root / listing["members"][0] / "rewardlab.json")
    model, tokenizer = build_reward_model(listing["base_model"], heads=first.heads, precision=config.precision,
                                          trust_remote_code=config.trust_remote_code)
    heads = {name: load_adapter(model.hf_model, root / name, name) for name in listing["members"]}
    members = []
    for name in listing["members"]:
        meta = RewardModelMetadata.from_file(root / name / "rewardlab.json")
        member = replace(config, model=str(root / name), max_length=config.max_length or first.max_length,
                         normalize=meta.reward_mean is not None and bool(meta.reward_std))
        members.append(LoraMember(LocalScorer(model, tokenizer, member, meta), name, heads[name], str(root / name)))
    return members
