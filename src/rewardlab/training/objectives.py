"""Training objectives: how records become token groups (``Example``), and groups a loss.

Every objective reads its record type, turns each record into an :class:`Example` (a group of
token sequences plus numeric targets), and maps the rewards of a collated batch to a
per-example loss with a pure function from :mod:`rewardlab.losses`. The training loop only
sees this interface, so it is the same loop for every objective.

=================  ====================  =============================================
objective          records               loss
=================  ====================  =============================================
``bradley_terry``  PreferencePair        BT (+ margins, strength weights, centering)
``davidson``       PreferencePair + ties Davidson tie likelihood (BT when nu -> 0)
``regression``     ScoredResponse        MSE / Huber on (normalized) scores, K heads
``plackett_luce``  RankedResponses       listwise PL, optionally top-k truncated
``hybrid``         ScoredResponse        alpha * regression + (1 - alpha) * BT on
                   (grouped by prompt)   pairs derived from scores within a prompt
=================  ====================  =============================================
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any, ClassVar, Literal, Protocol, runtime_checkable

import torch

from .. import losses
from ..data.collate import Example, collate_examples
from ..data.normalization import TargetNormalizer
from ..data.readers import DropReport, iter_preference_pairs, iter_records, to_ranked_responses, to_scored_response
from ..data.records import PreferencePair, RankedResponses, ScoredResponse
from ..data.templating import tokenize_counting_cut
from ..errors import ConfigError, DataFormatError
from ..metrics import mean_margin, pairwise_accuracy
from .config import (BradleyTerryConfig, DavidsonConfig, HybridConfig, ObjectiveConfig, PlackettLuceConfig, ProcessConfig,
                     RegressionConfig)

__all__ = [
    "HybridObjective", "ListwiseObjective", "Objective", "ObjectiveName", "PAIR_TARGETS", "PairwiseObjective",
    "ProcessObjective", "RegressionObjective", "bootstrap_heads", "bootstrap_weights", "derive_pairs", "make_objective",
    "named_targets",
]

ObjectiveName = Literal["bradley_terry", "davidson", "regression", "plackett_luce", "hybrid", "prm", "prm_3class"]


@runtime_checkable
class Objective(Protocol):
    """What the training loop needs of an objective; every objective below implements all of it.

    ``read``/``fit``/``tokenize`` turn a data source into :class:`Example` s, ``loss`` maps a collated
    batch's rewards to a per-example loss ``(G,)``, ``metrics`` summarizes held-out rewards.
    ``streams``: records can be read one at a time (``iter_read``), so the token cache can build from them.
    """

    heads: tuple[str, ...]
    record_kind: str
    streams: ClassVar[bool]

    @property
    def read_kind(self) -> str:
        """What one record of the data file is (``record_kind`` says what one training example is)."""
        ...

    def read(self, source: str, split: str, limit: int | None) -> tuple[list[Any], DropReport]: ...

    def iter_read(self, source: str, split: str, limit: int | None, report: DropReport) -> Iterator[Any]: ...

    def fit(self, records: Sequence[Any]) -> Objective: ...

    def tokenize(self, records: Sequence[Any], tokenizer: Any, max_length: int, report: DropReport) -> list[Example]: ...

    def build_model(self, name: str, trust_remote_code: bool = False) -> tuple[Any, Any]: ...

    def loss(self, rewards: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor: ...

    def metrics(self, rewards: list[torch.Tensor], examples: Sequence[Example], tie_policy: str) -> dict[str, float]: ...

    def summary(self, examples: Sequence[Example]) -> str | None:
        """A line for the training log about what the objective made of the data, or None."""
        ...

    def augment_training(self, records: Sequence[Any]) -> list[Any]:
        """The training records plus any augmented copies (held-out records are never augmented)."""
        ...

    def metadata(self) -> dict[str, Any]:
        """What a saved model must record for scoring as trained (e.g. a step separator, target statistics)."""
        ...


class _Defaults:
    """What most objectives share: a scalar/multi-head reward model, nothing extra to log or record, no streaming."""

    heads: tuple[str, ...]
    record_kind: str
    streams: ClassVar[bool] = False

    @property
    def read_kind(self) -> str:
        return self.record_kind

    def iter_read(self, source: str, split: str, limit: int | None, report: DropReport) -> Iterator[Any]:
        raise ConfigError(f"{type(self).__name__} reads its records in memory (no token cache)")

    def build_model(self, name: str, trust_remote_code: bool = False) -> tuple[Any, Any]:
        from ..models.io import build_reward_model

        return build_reward_model(name, trust_remote_code=trust_remote_code, heads=self.heads)

    def summary(self, examples: Sequence[Example]) -> str | None:
        return None

    def augment_training(self, records: Sequence[Any]) -> list[Any]:
        return list(records)

    def metadata(self) -> dict[str, Any]:
        return {}


def _normalization_metadata(normalizer: TargetNormalizer | None) -> dict[str, Any]:
    """Fitted target statistics for the saved model (scoring maps rewards back with them)."""
    return {"target_normalization": normalizer.to_json()} if normalizer is not None and normalizer.mode != "none" else {}


PAIR_TARGETS = ("margin", "weight", "tie", "head")
"""The targets of a preference-pair example, in the order :class:`PairwiseObjective` stores them."""


def named_targets(targets: torch.Tensor, names: Sequence[str]) -> dict[str, torch.Tensor]:
    """``(G, T)`` target columns as named ``(G,)`` tensors.

    >>> named_targets(torch.tensor([[0.5, 1.0, 0.0, 2.0]]), PAIR_TARGETS)["head"].tolist()
    [2.0]
    """
    return {name: targets[:, i] for i, name in enumerate(names)}


def _split_groups(rewards: torch.Tensor, sizes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(N[, K])`` flat rewards -> ``(G, Kmax[, K])`` padded per group and a ``(G, Kmax)`` mask."""
    g, kmax = sizes.shape[0], int(sizes.max())
    mask = torch.arange(kmax, device=rewards.device)[None, :] < sizes[:, None].to(rewards.device)
    out = rewards.new_zeros((g, kmax) + tuple(rewards.shape[1:]))
    out[mask] = rewards
    return out, mask


def _iter_read(source: str, split: str, limit: int | None, convert: Any, report: DropReport) -> Iterator[Any]:
    """``convert(record, location)`` for each record (at most ``limit``), counted in ``report``."""
    for location, record in iter_records(source, split):
        if limit is not None and report.total >= limit:
            break
        report.total += 1
        yield convert(record, location)
    if report.total == 0:
        raise DataFormatError(str(source), "contains no records")


def _read(source: str, split: str, limit: int | None, convert: Any) -> tuple[list[Any], DropReport]:
    report = DropReport()
    return list(_iter_read(source, split, limit, convert, report)), report


def _tokenize_one(tokenizer: Any, prompt: Any, response: str, max_length: int, report: DropReport | None = None,
                  location: str = "") -> tuple[int, ...] | None:
    """Token ids (prompt cut from the left to fit, counted in ``report``), or None when the reply alone cannot fit."""
    encoded = tokenize_counting_cut(tokenizer, prompt, response, max_length)
    if encoded is None:
        return None
    if encoded[1] and report is not None:
        report.note_cut(location)
    return tuple(encoded[0])


@dataclass(frozen=True)
class PairwiseObjective(_Defaults):
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
    def streams(self) -> bool:  # type: ignore[override]
        return not self.augment and self.length_balance == "none"  # both apply to the training split, in memory

    def augment_training(self, records: Sequence[Any]) -> list[Any]:
        """Augmented copies first, then length balancing over the result (so the length augmentation, whose copies
        are chosen-shorter pairs, counts); the held-out split is never touched."""
        from ..data.augment import augment_pairs
        from ..data.quality import length_balance, length_reweight

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
            chosen = _tokenize_one(tokenizer, pair.prompt, pair.chosen, max_length, report, pair.source)
            rejected = _tokenize_one(tokenizer, pair.prompt, pair.rejected, max_length, report, pair.source)
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

    def metrics(self, rewards: list[torch.Tensor], examples: Sequence[Example], tie_policy: str) -> dict[str, float]:
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


def _pearson(x: torch.Tensor, y: torch.Tensor) -> float:
    if x.numel() < 2 or x.std() == 0 or y.std() == 0:
        return float("nan")
    return float(torch.corrcoef(torch.stack([x, y]))[0, 1])


@dataclass(frozen=True)
class RegressionObjective(_Defaults):
    """Pointwise regression to absolute scores (one head per name in ``heads``)."""

    heads: tuple[str, ...] = ("score",)
    kind: Literal["mse", "huber"] = "mse"
    huber_delta: float = 1.0
    normalize: Literal["none", "global", "annotator"] = "none"
    normalizer: TargetNormalizer | None = None
    record_kind: str = "scored responses"

    def read(self, source: str, split: str, limit: int | None) -> tuple[list[ScoredResponse], DropReport]:
        records, report = _read(source, split, limit, lambda r, loc: to_scored_response(r, loc, self.heads))
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
        return _normalization_metadata(self.normalizer)

    def tokenize(self, records: Sequence[ScoredResponse], tokenizer: Any, max_length: int, report: DropReport) -> list[Example]:
        assert self.normalizer is not None, "call fit() first"
        out = []
        for r in records:
            ids = _tokenize_one(tokenizer, r.prompt, r.response, max_length, report, r.source)
            if ids is None:
                report.add(f"longer than {max_length} tokens without their prompt", location=r.source)
                continue
            out.append(Example((ids,), self.normalizer.normalize(r.scores, r.annotator)))
        return out

    def loss(self, rewards: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        predicted = rewards.view(rewards.shape[0], -1)
        per = losses.regression_loss(predicted, batch["targets"].to(predicted.device)[:, : predicted.shape[1]], self.kind, self.huber_delta)
        return per.mean(-1) if per.dim() > 1 else per

    def metrics(self, rewards: list[torch.Tensor], examples: Sequence[Example], tie_policy: str) -> dict[str, float]:
        predicted = torch.cat(rewards).view(len(examples), -1) if rewards else torch.empty(0, len(self.heads))
        targets = torch.tensor([e.targets for e in examples], dtype=torch.float32).view(len(examples), -1)
        out = {"loss": float(self.loss(predicted, {"targets": targets}).mean()) if examples else float("nan")}
        for k, head in enumerate(self.heads):
            out[f"pearson_{head}"] = _pearson(predicted[:, k], targets[:, k])
        out["reward_mean"], out["reward_std"] = float(predicted.mean()), float(predicted.std())
        out["responses"] = float(len(examples))
        return out


@dataclass(frozen=True)
class ListwiseObjective(_Defaults):
    """Plackett-Luce over K >= 2 ranked responses per prompt (``top_k`` truncates)."""

    top_k: int | None = None
    heads: tuple[str, ...] = ("score",)
    record_kind: str = "ranked lists"
    streams: ClassVar[bool] = True

    def read(self, source: str, split: str, limit: int | None) -> tuple[list[RankedResponses], DropReport]:
        return _read(source, split, limit, to_ranked_responses)

    def iter_read(self, source: str, split: str, limit: int | None, report: DropReport) -> Iterator[RankedResponses]:
        """Stream the ranked lists (what the token cache builds from); every record read is counted in ``report``."""
        return _iter_read(source, split, limit, to_ranked_responses, report)

    def fit(self, records: Sequence[Any]) -> ListwiseObjective:
        return self

    def tokenize(self, records: Sequence[RankedResponses], tokenizer: Any, max_length: int, report: DropReport) -> list[Example]:
        out = []
        for r in records:
            ids = [_tokenize_one(tokenizer, r.prompt, resp, max_length, report, r.source) for resp in r.responses]
            if any(i is None for i in ids):
                report.add(f"with a response longer than {max_length} tokens without the prompt", location=r.source)
                continue
            out.append(Example(tuple(ids), tuple(float(x) for x in r.ranks)))  # type: ignore[arg-type]
        return out

    def loss(self, rewards: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        grouped, mask = _split_groups(rewards, batch["group_sizes"])
        ranks = batch["targets"][:, : grouped.shape[1]].to(rewards.device)
        return losses.plackett_luce_loss(grouped, ranks, mask, self.top_k)

    def metrics(self, rewards: list[torch.Tensor], examples: Sequence[Example], tie_policy: str) -> dict[str, float]:
        if not examples:
            return {"loss": float("nan"), "top1_accuracy": float("nan"), "lists": 0.0}
        batch = collate_examples(examples, 0)
        flat = torch.cat(rewards)
        top1 = [float(min(e.targets) == e.targets[int(torch.argmax(r))]) for r, e in zip(rewards, examples)]
        return {"loss": float(self.loss(flat, batch).mean()), "top1_accuracy": sum(top1) / len(top1),
                "reward_mean": float(flat.mean()), "reward_std": float(flat.std()), "lists": float(len(examples))}


def derive_pairs(scores: Sequence[float], rule: str = "all", min_gap: float = 0.0) -> list[tuple[int, int]]:
    """(better, worse) index pairs from scores within one prompt.

    ``all``: every pair whose scores differ by more than ``min_gap``; ``best_worst``: the top
    against the bottom; ``adjacent``: neighbours in score order.

    >>> derive_pairs([1.0, 3.0, 2.0])
    [(1, 0), (2, 0), (1, 2)]
    >>> derive_pairs([1.0, 3.0, 2.0], "best_worst"), derive_pairs([1.0, 3.0, 2.0], "adjacent")
    ([(1, 0)], [(1, 2), (2, 0)])
    """
    n = len(scores)
    if rule == "all":
        return [(i, j) for j in range(n) for i in range(n) if scores[i] - scores[j] > min_gap]
    order = sorted(range(n), key=lambda i: -scores[i])
    if rule == "best_worst":
        best, worst = order[0], order[-1]
        return [(best, worst)] if scores[best] - scores[worst] > min_gap else []
    if rule == "adjacent":
        return [(a, b) for a, b in zip(order, order[1:]) if scores[a] - scores[b] > min_gap]
    raise ConfigError(f"pair rule must be 'all', 'best_worst' or 'adjacent', got {rule!r}")


@dataclass(frozen=True)
class HybridObjective(_Defaults):
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
        return _normalization_metadata(self.normalizer)

    def tokenize(self, groups: Sequence[list[ScoredResponse]], tokenizer: Any, max_length: int, report: DropReport) -> list[Example]:
        assert self.normalizer is not None, "call fit() first"
        out = []
        for group in groups:
            kept = [(r, _tokenize_one(tokenizer, r.prompt, r.response, max_length, report, r.source)) for r in group]
            for r, ids in kept:
                if ids is None:
                    report.add(f"longer than {max_length} tokens without their prompt", location=r.source)
            kept = [(r, ids) for r, ids in kept if ids is not None]
            if kept:
                targets = tuple(self.normalizer.normalize(r.scores, r.annotator)[0] for r, _ in kept)
                out.append(Example(tuple(ids for _, ids in kept), targets))  # type: ignore[misc]
        return out

    def pair_count(self, examples: Sequence[Example]) -> int:
        return sum(len(derive_pairs(e.targets, self.pair_rule, self.min_score_gap)) for e in examples)

    def summary(self, examples: Sequence[Example]) -> str | None:
        return f"hybrid: derived {self.pair_count(examples)} training pairs with rule '{self.pair_rule}' (score gap > {self.min_score_gap})"

    def loss(self, rewards: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        grouped, mask = _split_groups(rewards, batch["group_sizes"])
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

    def metrics(self, rewards: list[torch.Tensor], examples: Sequence[Example], tie_policy: str) -> dict[str, float]:
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


@dataclass(frozen=True)
class ProcessObjective(_Defaults):
    """Process reward model: a score per step, BCE on hard or soft labels, or 3-class cross-entropy.

    ``targets`` of an example alternate step positions and labels: ``(pos_1, y_1, pos_2, y_2, ...)``,
    only labelled steps included, labels kept as floats (soft labels stay soft end to end).
    3-class labels -1/0/+1 train the 3-class head as classes 0/1/2; with the binary head, +1 is 1,
    -1 is 0 and 0 (neutral) follows ``neutral``.
    """

    three_class: bool = False
    neutral: Literal["positive", "negative", "ignore"] = "positive"
    separator: str = "\n"
    threshold: float = 0.5
    heads: tuple[str, ...] = ("step",)
    record_kind: str = "step-labelled solutions"

    def build_model(self, name: str, trust_remote_code: bool = False) -> tuple[Any, Any]:
        from ..models.process_reward_model import build_process_reward_model

        return build_process_reward_model(name, 3 if self.three_class else 1, trust_remote_code)

    def metadata(self) -> dict[str, Any]:
        return {"step_separator": self.separator}

    def read(self, source: str, split: str, limit: int | None) -> tuple[list[Any], DropReport]:
        from ..data.steps import read_step_solutions

        return read_step_solutions(source, split, limit)

    def fit(self, records: Sequence[Any]) -> ProcessObjective:
        return self

    def _label(self, label: float | None) -> float | None:
        if label is None or self.three_class:
            return label
        if label < 0:
            return 0.0
        if label == 0 and self.neutral != "positive":
            return None if self.neutral == "ignore" else 0.0
        return label if label <= 1 else 1.0

    def tokenize(self, records: Sequence[Any], tokenizer: Any, max_length: int, report: DropReport) -> list[Example]:
        from ..data.templating import tokenize_steps

        out = []
        for r in records:
            encoded = tokenize_steps(tokenizer, r.prompt, r.steps, max_length, self.separator)
            if encoded is None:
                report.add(f"longer than {max_length} tokens without their prompt", location=r.source)
                continue
            ids, positions = encoded
            targets: list[float] = []
            for pos, raw in zip(positions, r.step_labels):
                label = self._label(raw)
                if label is not None:
                    targets += [float(pos), float(label)]
            if not targets:
                report.add("without a labelled step after label mapping", location=r.source)
                continue
            out.append(Example((tuple(ids),), tuple(targets)))
        return out

    @staticmethod
    def _unpack(targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        pairs = targets.view(targets.shape[0], -1, 2)
        positions, labels = pairs[..., 0].long(), pairs[..., 1]
        mask = torch.zeros_like(labels, dtype=torch.bool)
        # zero-padded tail: a real step never sits at position 0 (the prompt comes first)
        mask |= positions > 0
        return torch.where(mask, positions, torch.full_like(positions, -1)), labels, mask

    def loss(self, rewards: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        from ..models.process_reward_model import gather_step_scores

        positions, labels, mask = self._unpack(batch["targets"].to(rewards.device))
        steps = gather_step_scores(rewards, positions)
        if self.three_class:
            return losses.step_cross_entropy_loss(steps, (labels + 1).long(), mask)
        return losses.step_bce_loss(steps, labels, mask)

    def step_probabilities(self, rewards: torch.Tensor, example: Example) -> tuple[list[float], list[float]]:
        """P(step is good) at each labelled step of one example, and the labels."""
        targets = torch.tensor(example.targets).view(1, -1)
        positions, labels, _ = self._unpack(targets)
        row = rewards.view(1, *rewards.shape[-2:]) if self.three_class else rewards.view(1, -1)
        from ..models.process_reward_model import gather_step_scores

        steps = gather_step_scores(row, positions)[0]
        probs = torch.softmax(steps, -1)[:, 2] if self.three_class else torch.sigmoid(steps)
        return probs.tolist(), labels[0].tolist()

    def metrics(self, rewards: list[torch.Tensor], examples: Sequence[Example], tie_policy: str) -> dict[str, float]:
        from ..evaluation.process import first_error_index, first_error_metrics, gold_first_error

        if not examples:
            return {"loss": float("nan"), "solutions": 0.0}
        step_hits, predicted, gold, loss_sum = [], [], [], 0.0
        for r, e in zip(rewards, examples):
            probs, labels = self.step_probabilities(r, e)
            binary = [1.0 if (y > 0 if self.three_class else y >= 0.5) else 0.0 for y in labels]
            step_hits += [float((p >= self.threshold) == (b == 1.0)) for p, b in zip(probs, binary)]
            g = gold_first_error(binary)
            if g is not None:
                predicted.append(first_error_index(probs, self.threshold))
                gold.append(g)
            batch = collate_examples([e], 0)
            loss_sum += float(self.loss(r.view(1, *r.shape[-2:]) if self.three_class else r.view(1, -1), batch).mean())
        metrics = {"loss": loss_sum / len(examples), "step_accuracy": sum(step_hits) / len(step_hits), "solutions": float(len(examples))}
        metrics.update({f"first_error_{k}": float(v) for k, v in first_error_metrics(predicted, gold).items()})
        return metrics


def _heads(names: str | None) -> tuple[str, ...]:
    return tuple(h.strip() for h in (names or "score").split(",") if h.strip())


def _pair_heads(config: Any) -> tuple[str, ...]:
    if config.ensemble > 1 and config.ensemble_kind != "heads":  # each member is a plain model; train() runs K of them
        return _heads(config.heads)
    if config.ensemble > 1 and config.heads is not None:
        raise ConfigError("option 'ensemble' names its own heads (boot_0, ...): leave 'heads' unset")
    return bootstrap_heads(config.ensemble) if config.ensemble > 1 else _heads(config.heads)


def _head_count(config: Any) -> int:
    return config.ensemble if config.ensemble_kind == "heads" else 1


_BUILDERS: dict[type, Any] = {
    BradleyTerryConfig: lambda c: PairwiseObjective(_pair_heads(c), False, c.use_margins, c.center_rewards_coef, 1.0,
                                                    c.strength_margins, c.strength_weights, _head_count(c), c.augment,
                                                    c.length_balance),
    DavidsonConfig: lambda c: PairwiseObjective(_pair_heads(c), True, c.use_margins, c.center_rewards_coef, c.tie_strength,
                                                c.strength_margins, c.strength_weights, _head_count(c), c.augment,
                                                c.length_balance),
    RegressionConfig: lambda c: RegressionObjective(_heads(c.heads), c.regression_loss, c.huber_delta, c.normalize_targets),
    PlackettLuceConfig: lambda c: ListwiseObjective(c.top_k, _heads(c.heads)),
    HybridConfig: lambda c: HybridObjective(c.hybrid_alpha, c.regression_loss, c.huber_delta, c.pair_rule, c.min_score_gap,
                                            c.normalize_targets, heads=_heads(c.heads)),
    ProcessConfig: lambda c: ProcessObjective(c.name == "prm_3class", c.prm_neutral, c.step_separator),
}


def make_objective(config: ObjectiveConfig) -> Objective:
    """The objective an objective config (``TrainConfig.objective``) describes, with its options.

    >>> make_objective(PlackettLuceConfig(top_k=2)).top_k
    2
    """
    if type(config) not in _BUILDERS:
        raise ConfigError(f"option 'objective' must be an objective config, got {config!r}")
    return _BUILDERS[type(config)](config)
