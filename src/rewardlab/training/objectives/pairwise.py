"""Pairwise objectives: Bradley-Terry and Davidson (ties) on preference pairs, with margins, strength weights,
reward centering and bootstrap heads (one model, K reward heads as an ensemble)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from ... import losses
from ...data.collate import Example
from ...data.readers import DropReport, iter_preference_pairs
from ...data.records import PreferencePair
from ...errors import ConfigError, DataFormatError
from ...metrics import TiePolicy, mean_margin, pairwise_accuracy
from .base import PAIR_TARGETS, ObjectiveDefaults, named_targets, tokenize_one

__all__ = ["PairwiseObjective", "bootstrap_heads", "bootstrap_weights"]


@dataclass(frozen=True)
class PairwiseObjective(ObjectiveDefaults):
    """Bradley-Terry (``davidson=False``) or Davidson ties on preference pairs.

    ``ensemble=K > 1`` trains K heads ``boot_0..boot_{K-1}`` on one trunk, each on its own bootstrap
    resample of the pairs: pair i counts ``w_ik ~ Poisson(1)`` times in head k's loss (the Poisson
    bootstrap, Oza & Russell 2001), drawn from a hash of the pair, so every epoch and every rerun sees the
    same resample. The loss is ``sum_k w_ik * l_ik / K``; one forward pass serves all heads.
    """

    heads: tuple[str, ...] = ("score",)
    davidson: bool = False
    use_margins: bool = True
    center_rewards_coef: float = 0.0
    tie_strength: float = 1.0
    strength_margins: dict[str, float] | None = None
    strength_weights: dict[str, float] | None = None
    ensemble: int = 1
    augment: dict[str, float] | None = None
    length_balance: str = "none"
    record_kind: str = "preference pairs"

    @property
    def streams(self) -> bool:  # type: ignore[override]  # the protocol's attribute, computed from the options here
        return not self.augment and self.length_balance == "none"  # both apply to the training split, in memory

    def augment_training(self, records: Sequence[Any]) -> list[Any]:
        """Augmented copies first, then length balancing over the result (so the length augmentation, whose copies
        are chosen-shorter pairs, counts); the held-out split is never touched."""
        from ...data.augment import augment_pairs
        from ...data.quality import length_balance, length_reweight

        out = augment_pairs(records, self.augment) if self.augment else list(records)
        if self.length_balance == "drop":
            out = length_balance(out)[0]
        elif self.length_balance == "reweight":
            out = length_reweight(out)[0]
        return out

    def __post_init__(self) -> None:
        if self.ensemble > 1 and self.heads != bootstrap_heads(self.ensemble):
            raise ConfigError("option 'ensemble' names its own heads (boot_0, ...): leave 'heads' unset")

    def metadata(self) -> dict[str, Any]:
        return {"ensemble": "heads"} if self.ensemble > 1 else {}

    def read(self, source: str, split: str, limit: int | None) -> tuple[list[PreferencePair], DropReport]:
        report = DropReport()
        return list(self.iter_read(source, split, limit, report)), report

    def iter_read(self, source: str, split: str, limit: int | None, report: DropReport) -> Iterator[PreferencePair]:
        """Stream the pairs this objective learns from (ties only for Davidson); drops go to ``report``."""
        for pair in iter_preference_pairs(source, split, limit, report):
            if pair.tie and not self.davidson:
                report.add("labelled as ties (use --objective davidson to learn from them)", location=pair.source)
            else:
                yield pair

    def fit(self, records: Sequence[Any]) -> PairwiseObjective:
        return self

    def _pair_targets(self, pair: PreferencePair) -> tuple[float, ...]:
        margin = pair.margin or 0.0
        weight = 1.0
        if pair.strength is not None:
            known = {**(self.strength_margins or {}), **(self.strength_weights or {})}
            if known and pair.strength not in known:
                raise DataFormatError(pair.source, f"unknown label {pair.strength!r}; the tables know {sorted(known)}", "strength")
            margin = (self.strength_margins or {}).get(pair.strength, margin)
            weight = (self.strength_weights or {}).get(pair.strength, 1.0)
        if pair.weight is not None:
            weight *= pair.weight
        head = 0
        if len(self.heads) > 1 and self.ensemble == 1:
            if pair.attribute not in self.heads:
                raise DataFormatError(pair.source, f"expected one of the heads {list(self.heads)}, got {pair.attribute!r}", "attribute")
            head = self.heads.index(pair.attribute)
        return (margin, weight, float(pair.tie), float(head), *bootstrap_weights(pair, self.ensemble))

    def tokenize(self, pairs: Sequence[PreferencePair], tokenizer: Any, max_length: int, report: DropReport) -> list[Example]:
        out = []
        for pair in pairs:
            chosen = tokenize_one(tokenizer, pair.prompt, pair.chosen, max_length, report, pair.source)
            rejected = tokenize_one(tokenizer, pair.prompt, pair.rejected, max_length, report, pair.source)
            if chosen is None or rejected is None:
                report.add(f"longer than {max_length} tokens without their prompt", location=pair.source)
                continue
            out.append(Example((chosen, rejected), self._pair_targets(pair)))
        return out

    def _chosen_rejected(self, rewards: torch.Tensor, targets: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        pairs = rewards.view(-1, 2, *rewards.shape[1:])
        if pairs.dim() == 3 and self.ensemble > 1:  # (G, 2, K): every bootstrap head scores every pair
            return pairs[:, 0], pairs[:, 1]
        if pairs.dim() == 3:  # (G, 2, K): the head each pair is about
            head = targets["head"].long().to(rewards.device)
            pairs = pairs.gather(2, head.view(-1, 1, 1).expand(-1, 2, 1)).squeeze(-1)
        return pairs[:, 0], pairs[:, 1]

    def loss(self, rewards: torch.Tensor, batch: dict[str, torch.Tensor], bootstrap: bool = True) -> torch.Tensor:
        """Per-pair loss (G,). Ensembles: the mean over heads of each head's loss weighted by its bootstrap counts
        (training), or unweighted (``bootstrap=False``: the held-out loss, comparable with a single model's)."""
        targets = named_targets(batch["targets"], PAIR_TARGETS)
        chosen, rejected = self._chosen_rejected(rewards, targets)
        if self.ensemble > 1:  # (G, K): each head's loss, weighted by its bootstrap counts
            counts = batch["targets"][:, len(PAIR_TARGETS) : len(PAIR_TARGETS) + self.ensemble].to(rewards.device)
            if not bootstrap:
                counts = torch.ones_like(counts)
            margin = targets["margin"][:, None] if self.use_margins else None
            if self.davidson:
                per_head = losses.davidson_tie_loss(chosen, rejected, (targets["tie"] > 0.5)[:, None].expand_as(chosen), self.tie_strength)
            else:
                per_head = losses.bradley_terry_loss(chosen, rejected, margin)
            per = (per_head * counts).sum(-1) / self.ensemble * targets["weight"]
            if self.center_rewards_coef:
                per = per + losses.reward_centering_penalty(chosen, rejected, self.center_rewards_coef).mean(-1)
            return per
        if self.davidson:
            per = losses.davidson_tie_loss(chosen, rejected, targets["tie"] > 0.5, self.tie_strength)
        else:
            per = losses.bradley_terry_loss(chosen, rejected, targets["margin"] if self.use_margins else None)
        per = per * targets["weight"]
        if self.center_rewards_coef:
            per = per + losses.reward_centering_penalty(chosen, rejected, self.center_rewards_coef)
        return per

    def metrics(self, rewards: list[torch.Tensor], examples: Sequence[Example], tie_policy: TiePolicy) -> dict[str, float]:
        flat = torch.cat(rewards) if rewards else torch.empty(0)
        targets = torch.tensor([e.targets for e in examples]) if examples else torch.empty(0, len(PAIR_TARGETS))
        named = named_targets(targets, PAIR_TARGETS)
        chosen, rejected = self._chosen_rejected(flat, named) if examples else (flat, flat)
        head_stats: dict[str, float] = {}
        if self.ensemble > 1 and examples:  # accuracy of the ensemble mean; each head's reward scale for scoring
            both = torch.cat([chosen, rejected])
            for k, head in enumerate(self.heads):
                head_stats[f"reward_mean_{head}"], head_stats[f"reward_std_{head}"] = float(both[:, k].mean()), float(both[:, k].std())
            chosen, rejected = chosen.mean(-1), rejected.mean(-1)
        strict = named["tie"] < 0.5
        batch = {"targets": targets}
        return {
            # held out: every head's loss on every pair (the bootstrap counts are a training device, not a metric)
            "loss": float(self.loss(flat, batch, bootstrap=False).mean()) if examples else float("nan"),
            "accuracy": pairwise_accuracy(chosen[strict].numpy(), rejected[strict].numpy(), tie_policy),
            "mean_margin": mean_margin(chosen[strict].numpy(), rejected[strict].numpy()),
            "reward_mean": float(torch.cat([chosen, rejected]).mean()) if examples else float("nan"),
            "reward_std": float(torch.cat([chosen, rejected]).std()) if len(examples) > 0 else float("nan"),
            "pairs": float(len(examples)),
            **head_stats,
        }


def bootstrap_heads(k: int) -> tuple[str, ...]:
    """Head names of a K-head bootstrap ensemble.

    >>> bootstrap_heads(3)
    ('boot_0', 'boot_1', 'boot_2')
    """
    return tuple(f"boot_{i}" for i in range(k))


def bootstrap_weights(pair: PreferencePair, k: int) -> tuple[float, ...]:
    """How many times ``pair`` counts in each of ``k`` bootstrap heads: Poisson(1) draws seeded by a hash of the
    pair's texts, so the resample is the same in every epoch, process and rerun (``()`` for ``k = 1``).

    >>> from rewardlab.data.records import Message, PreferencePair
    >>> pair = PreferencePair((Message("user", "q"),), "good", "bad")
    >>> bootstrap_weights(pair, 4) == bootstrap_weights(pair, 4), len(bootstrap_weights(pair, 4)), bootstrap_weights(pair, 1)
    (True, 4, ())
    """
    if k <= 1:
        return ()
    import zlib

    import numpy as np

    key = zlib.crc32(repr((pair.prompt, pair.chosen, pair.rejected)).encode())
    return tuple(float(w) for w in np.random.default_rng(key).poisson(1.0, size=k))
