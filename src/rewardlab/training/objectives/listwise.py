"""The listwise objective: Plackett-Luce over ranked responses (optionally top-k), and the rule that derives pairs
from scores."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from ... import losses
from ...data.collate import Example, collate_examples
from ...data.readers import DropReport, to_ranked_responses
from ...data.records import RankedResponses
from ...errors import ConfigError
from .base import ObjectiveDefaults, iter_converted, read_converted, split_groups, tokenize_one
from ...metrics import TiePolicy

__all__ = ["ListwiseObjective", "derive_pairs"]


@dataclass(frozen=True)
class ListwiseObjective(ObjectiveDefaults):
    """Plackett-Luce over K >= 2 ranked responses per prompt (``top_k`` truncates)."""

    top_k: int | None = None
    heads: tuple[str, ...] = ("score",)
    record_kind: str = "ranked lists"
    streams: ClassVar[bool] = True

    def read(self, source: str, split: str, limit: int | None) -> tuple[list[RankedResponses], DropReport]:
        return read_converted(source, split, limit, to_ranked_responses)

    def iter_read(self, source: str, split: str, limit: int | None, report: DropReport) -> Iterator[RankedResponses]:
        """Stream the ranked lists (what the token cache builds from); every record read is counted in ``report``."""
        return iter_converted(source, split, limit, to_ranked_responses, report)

    def fit(self, records: Sequence[Any]) -> ListwiseObjective:
        return self

    def tokenize(self, records: Sequence[RankedResponses], tokenizer: Any, max_length: int, report: DropReport) -> list[Example]:
        out = []
        for r in records:
            ids = [tokenize_one(tokenizer, r.prompt, resp, max_length, report, r.source) for resp in r.responses]
            if any(i is None for i in ids):
                report.add(f"with a response longer than {max_length} tokens without the prompt", location=r.source)
                continue
            out.append(Example(tuple(i for i in ids if i is not None), tuple(float(x) for x in r.ranks)))
        return out

    def loss(self, rewards: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        grouped, mask = split_groups(rewards, batch["group_sizes"])
        ranks = batch["targets"][:, : grouped.shape[1]].to(rewards.device)
        return losses.plackett_luce_loss(grouped, ranks, mask, self.top_k)

    def metrics(self, rewards: list[torch.Tensor], examples: Sequence[Example], tie_policy: TiePolicy) -> dict[str, float]:
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
