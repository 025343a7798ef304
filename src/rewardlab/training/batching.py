"""Deterministic batch order: which pairs each optimizer step sees, on every process."""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Sequence

__all__ = ["global_batches", "shard"]


def _epoch_order(lengths: Sequence[int], batch: int, seed: int, epoch: int, group_by_length: bool) -> list[int]:
    rng = random.Random(seed * 1_000_003 + epoch)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    if not group_by_length:
        return order
    # Sort within mega-chunks (as transformers' LengthGroupedSampler), then shuffle whole batches,
    # so batches are length-homogeneous but their order stays random.
    mega = batch * 32
    grouped: list[list[int]] = []
    for start in range(0, len(order), mega):
        chunk = sorted(order[start : start + mega], key=lambda i: -lengths[i])
        grouped += [chunk[i : i + batch] for i in range(0, len(chunk), batch)]
    rng.shuffle(grouped)
    if epoch == 0:  # the batch with the most tokens first (as LengthGroupedSampler): memory peaks, and any
        # out-of-memory error comes, at step 1, and later steps reuse memory instead of growing into it
        largest = max(range(len(grouped)), key=lambda g: sum(lengths[i] for i in grouped[g]))
        grouped.insert(0, grouped.pop(largest))
    return [i for group in grouped for i in group]


def global_batches(
    lengths: Sequence[int], batch: int, steps: int, seed: int, group_by_length: bool = True
) -> Iterator[list[int]]:
    """Yield ``steps`` batches of exactly ``batch`` pair indices.

    Epochs are concatenated, so a batch may span an epoch boundary (the second batch below
    ends epoch 0 and starts epoch 1) and no pair is skipped.

    >>> [b for b in global_batches([5, 1, 3], batch=2, steps=3, seed=0, group_by_length=False)]
    [[0, 2], [1, 1], [2, 0]]
    """
    if not lengths:
        raise ValueError("no training pairs")
    buffer: list[int] = []
    epoch = 0
    for _ in range(steps):
        while len(buffer) < batch:
            buffer += _epoch_order(lengths, batch, seed, epoch, group_by_length)
            epoch += 1
        yield buffer[:batch]
        buffer = buffer[batch:]


def shard(indices: Sequence[int], micro_steps: int, processes: int, rank: int) -> list[list[int]]:
    """Split one global batch into this process's micro-batches (equal sizes everywhere).

    >>> shard(list(range(8)), micro_steps=2, processes=2, rank=1)
    [[2, 3], [6, 7]]
    """
    size = len(indices) // (micro_steps * processes)
    micro = [indices[m * size * processes : (m + 1) * size * processes] for m in range(micro_steps)]
    return [list(part[rank * size : (rank + 1) * size]) for part in micro]


def steps_for(num_pairs: int, global_batch: int, num_epochs: float) -> int:
    return max(1, math.ceil(num_epochs * num_pairs / global_batch))
