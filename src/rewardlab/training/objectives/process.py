"""The process-reward objective: per-step labels (binary or 3-class) read at step positions of one sequence."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch

from ... import losses
from ...data.collate import Example, collate_examples
from ...data.readers import DropReport
from .base import ObjectiveDefaults
from ...metrics import TiePolicy

__all__ = ["ProcessObjective"]


@dataclass(frozen=True)
class ProcessObjective(ObjectiveDefaults):
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
        from ...models.process_reward_model import build_process_reward_model

        return build_process_reward_model(name, 3 if self.three_class else 1, trust_remote_code)

    def metadata(self) -> dict[str, Any]:
        return {"step_separator": self.separator}

    def read(self, source: str, split: str, limit: int | None) -> tuple[list[Any], DropReport]:
        from ...data.steps import read_step_solutions

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
        from ...data.templating import tokenize_steps

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
        from ...models.process_reward_model import gather_step_scores

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
        from ...models.process_reward_model import gather_step_scores

        steps = gather_step_scores(row, positions)[0]
        probs = torch.softmax(steps, -1)[:, 2] if self.three_class else torch.sigmoid(steps)
        return probs.tolist(), labels[0].tolist()

    def metrics(self, rewards: list[torch.Tensor], examples: Sequence[Example], tie_policy: TiePolicy) -> dict[str, float]:
        from ...evaluation.process import first_error_index, first_error_metrics, gold_first_error

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
