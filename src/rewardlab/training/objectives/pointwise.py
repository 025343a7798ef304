"""Pointwise and hybrid objectives: regression on scored responses (MSE / Huber, K heads), and
``alpha * regression + (1 - alpha) * BT`` on pairs derived from the scores within a prompt."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

import torch

from ... import losses
from ...data.collate import Example, collate_examples
from ...data.normalization import TargetNormalizer
from ...data.readers import DropReport, to_scored_response
from ...data.records import ScoredResponse
from ...metrics import TiePolicy, pairwise_accuracy
from .base import ObjectiveDefaults, normalization_metadata, read_converted, split_groups, tokenize_one
from .listwise import derive_pairs

__all__ = ["HybridObjective", "RegressionObjective"]


def _pearson(x: torch.Tensor, y: torch.Tensor) -> float:
    if x.numel() < 2 or x.std() == 0 or y.std() == 0:
        return float("nan")
    return float(torch.corrcoef(torch.stack([x, y]))[0, 1])


@dataclass(frozen=True)
class RegressionObjective(ObjectiveDefaults):
    """Pointwise regression to absolute scores (one head per name in ``heads``)."""

    heads: tuple[str, ...] = ("score",)
    kind: Literal["mse", "huber"] = "mse"
    huber_delta: float = 1.0
    normalize: Literal["none", "global", "annotator"] = "none"
    normalizer: TargetNormalizer | None = None
    record_kind: str = "scored responses"

    def read(self, source: str, split: str, limit: int | None) -> tuple[list[ScoredResponse], DropReport]:
        records, report = read_converted(source, split, limit, lambda r, loc: to_scored_response(r, loc, self.heads))
        kept = [r for r in records if r.response.strip()]
        for r in records:
            if not r.response.strip():
                report.add("with an empty response", location=r.source)
        return kept, report

    def fit(self, records: Sequence[ScoredResponse]) -> RegressionObjective:
        if self.normalizer is not None:
            return self
        return replace(self, normalizer=TargetNormalizer.fit([r.scores for r in records], [r.annotator for r in records], self.normalize))

    def metadata(self) -> dict[str, Any]:
        return normalization_metadata(self.normalizer)

    def tokenize(self, records: Sequence[ScoredResponse], tokenizer: Any, max_length: int, report: DropReport) -> list[Example]:
        assert self.normalizer is not None, "call fit() first"
        out = []
        for r in records:
            ids = tokenize_one(tokenizer, r.prompt, r.response, max_length, report, r.source)
            if ids is None:
                report.add(f"longer than {max_length} tokens without their prompt", location=r.source)
                continue
            out.append(Example((ids,), self.normalizer.normalize(r.scores, r.annotator)))
        return out

    def loss(self, rewards: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        predicted = rewards.view(rewards.shape[0], -1)
        per = losses.regression_loss(predicted, batch["targets"].to(predicted.device)[:, : predicted.shape[1]], self.kind, self.huber_delta)
        return per.mean(-1) if per.dim() > 1 else per

    def metrics(self, rewards: list[torch.Tensor], examples: Sequence[Example], tie_policy: TiePolicy) -> dict[str, float]:
        predicted = torch.cat(rewards).view(len(examples), -1) if rewards else torch.empty(0, len(self.heads))
        targets = torch.tensor([e.targets for e in examples], dtype=torch.float32).view(len(examples), -1)
        out = {"loss": float(self.loss(predicted, {"targets": targets}).mean()) if examples else float("nan")}
        for k, head in enumerate(self.heads):
            out[f"pearson_{head}"] = _pearson(predicted[:, k], targets[:, k])
        out["reward_mean"], out["reward_std"] = float(predicted.mean()), float(predicted.std())
        out["responses"] = float(len(examples))
        return out


@dataclass(frozen=True)
class HybridObjective(ObjectiveDefaults):
    """``alpha * regression + (1 - alpha) * BT`` on responses grouped by prompt."""

    alpha: float = 0.5
    kind: Literal["mse", "huber"] = "mse"
    huber_delta: float = 1.0
    pair_rule: Literal["all", "best_worst", "adjacent"] = "all"
    min_score_gap: float = 0.0
    normalize: Literal["none", "global", "annotator"] = "none"
    normalizer: TargetNormalizer | None = None
    heads: tuple[str, ...] = ("score",)
    record_kind: str = "prompt groups of scored responses"

    @property
    def read_kind(self) -> str:  # records are responses; examples are their prompt groups
        return "scored responses"

    def read(self, source: str, split: str, limit: int | None) -> tuple[list[list[ScoredResponse]], DropReport]:
        records, report = RegressionObjective(self.heads).read(source, split, limit)
        groups: dict[Any, list[ScoredResponse]] = defaultdict(list)
        for r in records:
            groups[r.prompt].append(r)
        return list(groups.values()), report

    def fit(self, groups: Sequence[list[ScoredResponse]]) -> HybridObjective:
        if self.normalizer is not None:
            return self
        flat = [r for g in groups for r in g]
        return replace(self, normalizer=TargetNormalizer.fit([r.scores for r in flat], [r.annotator for r in flat], self.normalize))

    def metadata(self) -> dict[str, Any]:
        return normalization_metadata(self.normalizer)

    def tokenize(self, groups: Sequence[list[ScoredResponse]], tokenizer: Any, max_length: int, report: DropReport) -> list[Example]:
        assert self.normalizer is not None, "call fit() first"
        out = []
        for group in groups:
            kept = [(r, tokenize_one(tokenizer, r.prompt, r.response, max_length, report, r.source)) for r in group]
            for r, ids in kept:
                if ids is None:
                    report.add(f"longer than {max_length} tokens without their prompt", location=r.source)
            fitting = [(r, ids) for r, ids in kept if ids is not None]
            if fitting:
                targets = tuple(self.normalizer.normalize(r.scores, r.annotator)[0] for r, _ in fitting)
                out.append(Example(tuple(ids for _, ids in fitting), targets))
        return out

    def pair_count(self, examples: Sequence[Example]) -> int:
        return sum(len(derive_pairs(e.targets, self.pair_rule, self.min_score_gap)) for e in examples)

    def summary(self, examples: Sequence[Example]) -> str | None:
        return f"hybrid: derived {self.pair_count(examples)} training pairs with rule '{self.pair_rule}' (score gap > {self.min_score_gap})"

    def loss(self, rewards: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        grouped, mask = split_groups(rewards, batch["group_sizes"])
        targets = batch["targets"][:, : grouped.shape[1]].to(rewards.device)
        regression = losses.regression_loss(grouped.flatten(), targets.flatten(), self.kind, self.huber_delta).view_as(grouped)
        regression = (regression * mask).sum(-1) / mask.sum(-1)
        ranking = torch.zeros_like(regression)
        for g in range(grouped.shape[0]):
            n = int(mask[g].sum())
            pairs = derive_pairs(targets[g, :n].tolist(), self.pair_rule, self.min_score_gap)
            if pairs:
                better, worse = zip(*pairs)
                ranking[g] = losses.bradley_terry_loss(grouped[g, list(better)], grouped[g, list(worse)]).mean()
        return self.alpha * regression + (1 - self.alpha) * ranking

    def metrics(self, rewards: list[torch.Tensor], examples: Sequence[Example], tie_policy: TiePolicy) -> dict[str, float]:
        if not examples:
            return {"loss": float("nan"), "pair_accuracy": float("nan"), "groups": 0.0}
        flat = torch.cat(rewards)
        batch = collate_examples(examples, 0)
        better, worse = [], []
        for r, e in zip(rewards, examples):
            for i, j in derive_pairs(e.targets, self.pair_rule, self.min_score_gap):
                better.append(float(r[i]))
                worse.append(float(r[j]))
        targets = torch.tensor([t for e in examples for t in e.targets])
        return {"loss": float(self.loss(flat, batch).mean()), "pair_accuracy": pairwise_accuracy(better, worse, tie_policy),
                "pearson_score": _pearson(flat, targets), "reward_mean": float(flat.mean()), "reward_std": float(flat.std()),
                "groups": float(len(examples)), "derived_pairs": float(len(better))}
