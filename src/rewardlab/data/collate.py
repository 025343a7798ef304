"""Batch layout, written once here: groups of token sequences flattened into one forward pass."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch

__all__ = ["Example", "PackedLayout", "Segment", "collate_examples", "collate_targets", "common_prefix_length",
           "length_sorted_batches", "pack_examples", "pad_sequences"]


def length_sorted_batches(
    lengths: Sequence[int], batch_size: int, max_tokens: int | None = None,
    counts: Sequence[int] | None = None, tokens: Sequence[int] | None = None,
) -> list[list[int]]:
    """Index batches, longest first, so each batch pads little; callers put results back by index.

    A batch holds at most ``batch_size`` items and, when ``max_tokens`` is given, at most that many
    tokens in all (a longer single entry still gets a batch of its own). An entry may stand for a
    group of sequences: ``counts`` says how many items each holds and ``tokens`` how many tokens
    (defaults: 1 item, ``lengths[i]`` tokens).

    >>> length_sorted_batches([3, 9, 1, 5], batch_size=2)
    [[1, 3], [0, 2]]
    >>> length_sorted_batches([3, 9, 1, 5], batch_size=4, max_tokens=8)
    [[1], [3, 0], [2]]
    >>> length_sorted_batches([3, 9, 1], batch_size=3, counts=[2, 2, 1])
    [[1], [0, 2]]
    """
    counts = counts if counts is not None else [1] * len(lengths)
    tokens = tokens if tokens is not None else lengths
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    items = used = 0
    for i in order:
        if not batches or items + counts[i] > batch_size or (max_tokens is not None and used + tokens[i] > max_tokens):
            batches.append([])
            items = used = 0
        batches[-1].append(i)
        items += counts[i]
        used += tokens[i]
    return batches


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
    input_ids, attention_mask = pad_sequences([s for e in examples for s in e.sequences], pad_token_id)
    return {"input_ids": input_ids, "attention_mask": attention_mask, **collate_targets(examples)}


def collate_targets(examples: Sequence[Example]) -> dict[str, torch.Tensor]:
    """``targets`` ``(G, T)`` (zero-padded) and ``group_sizes`` ``(G,)``: the non-token half of a batch."""
    width = max((len(e.targets) for e in examples), default=0)
    targets = torch.zeros((len(examples), width), dtype=torch.float32)
    for i, e in enumerate(examples):
        targets[i, : len(e.targets)] = torch.tensor(e.targets, dtype=torch.float32)
    sizes = torch.tensor([len(e.sequences) for e in examples], dtype=torch.long)
    return {"targets": targets, "group_sizes": sizes}


@dataclass(frozen=True)
class Segment:
    """Queries at packed positions ``[start, end)`` attend to the keys of ``keys`` (ranges, concatenated).

    ``causal``: query ``i`` (0-based inside the segment) sees concatenated key ``j`` iff
    ``j <= n_keys - n_queries + i``, i.e. the queries are the tail of the key list.
    """

    start: int
    end: int
    keys: tuple[tuple[int, int], ...]
    causal: bool


@dataclass(frozen=True)
class PackedLayout:
    """Where each sequence of a packed row lives: positions, attention segments, reward positions.

    Shapes: ``position_ids`` ``(1, T)``; ``readout`` ``(N,)``, the packed index of each
    sequence's reward token, in the same order as :func:`collate_examples` rows.
    """

    position_ids: torch.Tensor
    segments: tuple[Segment, ...]
    readout: torch.Tensor

    def to(self, device: torch.device | str) -> PackedLayout:
        return PackedLayout(self.position_ids.to(device), self.segments, self.readout.to(device))


def common_prefix_length(sequences: Sequence[Sequence[int]]) -> int:
    """Tokens every sequence starts with, leaving each at least one of its own (where its reward is read).

    >>> common_prefix_length([[1, 2, 3], [1, 2, 4, 5]]), common_prefix_length([[1, 2], [1, 2, 3]])
    (2, 1)
    """
    n = min(len(s) for s in sequences) - 1  # every sequence keeps >= 1 own token to read its reward at
    first = sequences[0]
    for k in range(max(n, 0)):
        if any(s[k] != first[k] for s in sequences[1:]):
            return k
    return max(n, 0)


def pack_examples(
    examples: Sequence[Example], *, causal: bool, share_prefix: bool, readout: Literal["first", "last"]
) -> tuple[torch.Tensor, PackedLayout]:
    """Pack every sequence of a batch into one padding-free row with per-sequence attention.

    Each sequence becomes a segment that attends only to itself (``causal`` for decoders). With
    ``share_prefix`` (decoders only: the exactness argument needs causal attention), the tokens
    that all sequences of an example start with, e.g. the prompt of a chosen/rejected pair, are
    stored once: each reply segment attends to that prefix and to itself, with position ids
    continuing after the prefix, so every reward equals the plain forward pass of the full
    sequence. ``readout`` says which token carries the reward: ``last`` (decoders) or ``first``
    (encoders' ``[CLS]``). Returns ``input_ids`` ``(1, T)`` and the :class:`PackedLayout`.

    >>> ids, layout = pack_examples([Example(((1, 2, 3), (1, 2, 4, 5)))], causal=True, share_prefix=True, readout="last")
    >>> ids.tolist(), layout.position_ids.tolist(), layout.readout.tolist()
    ([[1, 2, 3, 4, 5]], [[0, 1, 2, 2, 3]], [2, 4])
    >>> [(s.start, s.end, s.keys) for s in layout.segments]
    [(0, 2, ((0, 2),)), (2, 3, ((0, 2), (2, 3))), (3, 5, ((0, 2), (3, 5)))]
    """
    if share_prefix and not causal:
        raise ValueError("prefix sharing is exact only with causal attention")
    tokens: list[int] = []
    positions: list[int] = []
    segments: list[Segment] = []
    reads: list[int] = []

    def add(seq: Sequence[int], first_position: int, prefix: tuple[tuple[int, int], ...]) -> tuple[int, int]:
        start = len(tokens)
        tokens.extend(seq)
        positions.extend(range(first_position, first_position + len(seq)))
        segments.append(Segment(start, len(tokens), prefix + ((start, len(tokens)),), causal))
        return start, len(tokens)

    for example in examples:
        seqs = example.sequences
        shared = common_prefix_length(seqs) if share_prefix and len(seqs) > 1 else 0
        prefix: tuple[tuple[int, int], ...] = (add(seqs[0][:shared], 0, ()),) if shared else ()
        for seq in seqs:
            start, end = add(seq[shared:], shared, prefix)
            reads.append(end - 1 if readout == "last" else (prefix[0][0] if shared else start))
    layout = PackedLayout(torch.tensor([positions]), tuple(segments), torch.tensor(reads))
    return torch.tensor([tokens], dtype=torch.long), layout
