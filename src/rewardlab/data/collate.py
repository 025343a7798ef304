"""Batch layout, written once here: groups of token sequences flattened into one forward pass."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch

__all__ = ["Example", "collate_examples", "length_sorted_batches", "pad_sequences"]


def length_sorted_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Index batches, longest first, so each batch pads little; callers put results back by index.

    >>> length_sorted_batches([3, 9, 1, 5], batch_size=2)
    [[1, 3], [0, 2]]
    """
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    return [order[start : start + batch_size] for start in range(0, len(order), batch_size)]


def pad_sequences(
    sequences: Sequence[Sequence[int]], pad_token_id: int, padding_side: Literal["left", "right"] = "right"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad to the longest sequence: returns ``input_ids`` and ``attention_mask``, both ``(N, T)`` long.

    >>> ids, mask = pad_sequences([[5, 6, 7], [8]], pad_token_id=0, padding_side="left")
    >>> ids.tolist(), mask.tolist()
    ([[5, 6, 7], [0, 0, 8]], [[1, 1, 1], [0, 0, 1]])
    """
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        span = slice(width - len(seq), width) if padding_side == "left" else slice(0, len(seq))
        ids[row, span] = torch.as_tensor(seq, dtype=torch.long)
        mask[row, span] = 1
    return ids, mask


@dataclass(frozen=True)
class Example:
    """A group of token sequences scored together, with the objective's numeric targets.

    Pairs: ``sequences = (chosen, rejected)``, ``targets = (margin, weight, is_tie, head)``.
    Scored: ``(response,)``, targets = one (normalized) score per head. Ranked: K sequences,
    targets = their ranks. Hybrid: all scored responses to one prompt, targets = their scores.
    """

    sequences: tuple[tuple[int, ...], ...]
    targets: tuple[float, ...] = ()

    @property
    def length(self) -> int:
        return max(len(s) for s in self.sequences)


def collate_examples(examples: Sequence[Example], pad_token_id: int) -> dict[str, torch.Tensor]:
    """Flatten the groups of a batch into one padded forward pass.

    Layout: the sequences of example 0, then of example 1, ...; ``group_sizes`` ``(G,)`` says how
    many rows each example has; ``targets`` ``(G, T)`` holds each example's targets (zero-padded).

    >>> batch = collate_examples([Example(((1, 2), (3,)), (0.0, 1.0, 0.0, 0.0)),
    ...                           Example(((4,), (5, 6, 7)), (2.0, 1.0, 0.0, 0.0))], pad_token_id=0)
    >>> batch["input_ids"].tolist()
    [[1, 2, 0], [3, 0, 0], [4, 0, 0], [5, 6, 7]]
    >>> batch["group_sizes"].tolist(), batch["targets"][:, 0].tolist()
    ([2, 2], [0.0, 2.0])
    """
    rows = [s for e in examples for s in e.sequences]
    input_ids, attention_mask = pad_sequences(rows, pad_token_id)
    width = max((len(e.targets) for e in examples), default=0)
    targets = torch.zeros((len(examples), width), dtype=torch.float32)
    for i, e in enumerate(examples):
        targets[i, : len(e.targets)] = torch.tensor(e.targets, dtype=torch.float32)
    sizes = torch.tensor([len(e.sequences) for e in examples], dtype=torch.long)
    return {"input_ids": input_ids, "attention_mask": attention_mask, "targets": targets, "group_sizes": sizes}
