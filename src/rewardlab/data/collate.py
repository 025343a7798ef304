"""Batch layout for pairwise training, written once here."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch

__all__ = ["PairCollator", "TokenizedPair", "pad_sequences"]


@dataclass(frozen=True)
class TokenizedPair:
    """Token ids of one preference pair (prompt included in both sides)."""

    chosen_ids: tuple[int, ...]
    rejected_ids: tuple[int, ...]
    margin: float | None = None

    @property
    def length(self) -> int:
        return max(len(self.chosen_ids), len(self.rejected_ids))


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
class PairCollator:
    """Stack ``n`` pairs into one ``2n``-row batch so chosen and rejected share one forward pass.

    Layout: rows ``0..n-1`` are the chosen sequences, rows ``n..2n-1`` the rejected ones, in
    pair order; padding is dynamic (to the longest row of this batch). ``margins`` is ``(n,)``
    with 0.0 where a pair has no margin.

    >>> collate = PairCollator(pad_token_id=0)
    >>> batch = collate([TokenizedPair((1, 2, 3), (1, 4)), TokenizedPair((1, 5), (1, 6, 7, 8), 2.0)])
    >>> batch["input_ids"].tolist()
    [[1, 2, 3, 0], [1, 5, 0, 0], [1, 4, 0, 0], [1, 6, 7, 8]]
    >>> batch["attention_mask"].tolist()
    [[1, 1, 1, 0], [1, 1, 0, 0], [1, 1, 0, 0], [1, 1, 1, 1]]
    >>> batch["margins"].tolist()
    [0.0, 2.0]
    """

    pad_token_id: int
    padding_side: Literal["left", "right"] = "right"

    def __call__(self, pairs: Sequence[TokenizedPair]) -> dict[str, torch.Tensor]:
        rows = [p.chosen_ids for p in pairs] + [p.rejected_ids for p in pairs]
        input_ids, attention_mask = pad_sequences(rows, self.pad_token_id, self.padding_side)
        margins = torch.tensor([p.margin or 0.0 for p in pairs], dtype=torch.float32)
        return {"input_ids": input_ids, "attention_mask": attention_mask, "margins": margins}
