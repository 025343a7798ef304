"""The batching engine the local, process and DPO scorers share: encode, check lengths, run
length-sorted batches, put results back in input order.

A scorer supplies two functions: ``encode(prompt, response) -> item | None`` (None: cannot fit)
and ``forward(items) -> results`` for one batch; the engine does the rest the same way for all.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from ..data.collate import length_sorted_batches
from ..data.templating import Prompt
from ..errors import SequenceTooLongError

__all__ = ["encode_all", "raise_if_too_long", "run_batches"]

T = TypeVar("T")
R = TypeVar("R")
X = TypeVar("X")


def encode_all(encode: Callable[[Prompt, X], T | None], prompts: Sequence[Prompt], responses: Sequence[X]) -> list[T | None]:
    """``encode`` applied to every (prompt, response); ``None`` marks an item that cannot fit.

    >>> encode_all(lambda p, r: len(r) if len(r) < 3 else None, ["q", "q"], ["ab", "abcd"])
    [2, None]
    """
    if len(prompts) != len(responses):
        raise ValueError(f"got {len(prompts)} prompts but {len(responses)} responses")
    return [encode(p, r) for p, r in zip(prompts, responses)]


def raise_if_too_long(encoded: Sequence[T | None], max_length: int) -> list[T]:
    """``encoded`` itself when every item fits; :class:`SequenceTooLongError` (with ``.items``) when any is ``None``.

    >>> raise_if_too_long([[1], None, [2], None], 8)
    Traceback (most recent call last):
    ...
    rewardlab.errors.SequenceTooLongError: 2 response(s) do not fit in max_length=8 tokens even without their prompt (items [1, 3]); raise max_length
    """
    too_long = [i for i, e in enumerate(encoded) if e is None]
    if too_long:
        raise SequenceTooLongError(
            f"{len(too_long)} response(s) do not fit in max_length={max_length} tokens even without their prompt "
            f"(items {too_long[:10]}{'...' if len(too_long) > 10 else ''}); raise max_length", tuple(too_long), max_length)
    return [e for e in encoded if e is not None]


def run_batches(
    lengths: Sequence[int], forward: Callable[[list[int]], Sequence[R]], batch_size: int, max_tokens: int | None = None,
    *, counts: Sequence[int] | None = None, tokens: Sequence[int] | None = None, show_progress: bool = False,
    desc: str = "scoring",
) -> list[R]:
    """``forward(indices)`` over length-sorted batches (longest first: an out-of-memory error comes
    first), results put back in input order. ``counts``/``tokens`` as in
    :func:`~rewardlab.data.collate.length_sorted_batches` when an entry stands for a group.

    >>> run_batches([3, 1, 2], lambda idx: [10 * i for i in idx], batch_size=2)
    [0, 10, 20]
    """
    from tqdm.auto import tqdm

    out: list[Any] = [None] * len(lengths)
    batches = length_sorted_batches(lengths, batch_size, max_tokens, counts=counts, tokens=tokens)
    for idx in tqdm(batches, desc=desc, unit="batch", disable=not show_progress):
        results = forward(idx)
        for i, result in zip(idx, results):
            out[i] = result
    return out
