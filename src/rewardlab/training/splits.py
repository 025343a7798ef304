"""The training and held-out examples of a run: read, split, tokenized (or opened from the token cache).

Every record dropped on the way (unreadable, too long, ...) is counted in a :class:`~rewardlab.data.readers.DropReport`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..data.readers import DropReport
from ..data.token_store import (ExampleView, TokenStore, build_token_store, default_cache_dir, source_fingerprint,
                                store_key, tokenizer_fingerprint)
from .config import TrainConfig
from .objectives import Example, Objective

__all__ = ["SMALL_EVAL", "Examples", "held_out", "load_examples", "load_tokenized", "load_train_eval_records"]

SMALL_EVAL = 30
"""Fewer held-out examples than this and the training log warns that their accuracy means little."""


@dataclass(frozen=True)
class Examples:
    """What :func:`load_examples` returns: the objective (fitted on the training records), model, tokenizer and the
    two splits."""

    objective: Objective
    model: Any
    tokenizer: Any
    train: Sequence[Example]
    held_out: Sequence[Example]
    report: DropReport
    cache: Path | None
    """The token cache folder when the examples came from it (or were just built into it)."""
    cache_hit: bool = False

    @property
    def lengths(self) -> list[int]:
        """Token lengths of the training examples, in index order (what length grouping reads)."""
        if isinstance(self.train, ExampleView):
            return self.train.lengths.tolist()
        return [e.length for e in self.train]


def held_out(num_records: int, fraction: float, seed: int) -> list[int]:
    """The record indices held out for evaluation: the first ``fraction`` of a seeded shuffle.

    >>> held_out(10, 0.2, 0) == held_out(10, 0.2, 0), len(held_out(10, 0.2, 0))
    (True, 2)
    """
    order = list(range(num_records))
    random.Random(seed).shuffle(order)
    return order[: int(round(fraction * num_records))]


def load_train_eval_records(config: TrainConfig, objective: Objective) -> tuple[list[Any], list[Any], DropReport]:
    """Read ``data`` (and ``eval_data``) as the objective's records, holding out ``eval_fraction``
    of ``data`` when no eval file is given."""
    records, report = objective.read(config.data, config.data_split, config.max_pairs)
    if config.eval_data:
        eval_records, eval_report = objective.read(config.eval_data, config.data_split, None)
        report.merge(eval_report)
        return records, eval_records, report
    held = set(held_out(len(records), config.eval_fraction, config.seed))
    return [r for i, r in enumerate(records) if i not in held], [records[i] for i in sorted(held)], report


def load_examples(config: TrainConfig, objective: Objective, accelerator: Any) -> Examples:
    """Read, split and tokenize the run's data and build its model (after the data: bad data fails fast).

    Objectives that stream (pairwise, listwise) go through the memory-mapped token cache unless
    ``token_cache='off'``; the others are read into memory, augmented (training split only) and fitted.
    """
    if config.token_cache != "off" and objective.streams:
        model, tokenizer = objective.build_model(config.model, config.trust_remote_code)
        with accelerator.main_process_first():  # one process builds the store, the others open it
            train, held, report, hit = load_tokenized(config, objective, tokenizer)
        return Examples(objective, model, tokenizer, train, held, report, train.store.root, hit)
    train_raw, eval_raw, report = load_train_eval_records(config, objective)
    train_raw = objective.augment_training(train_raw)  # e.g. length-padded rejected replies; never the held-out split
    objective = objective.fit(train_raw)  # e.g. target normalization statistics, from training data only
    model, tokenizer = objective.build_model(config.model, config.trust_remote_code)
    return Examples(objective, model, tokenizer, objective.tokenize(train_raw, tokenizer, config.max_length, report),
                    objective.tokenize(eval_raw, tokenizer, config.max_length, report), report, None)


def load_tokenized(config: TrainConfig, objective: Objective, tokenizer: Any) -> tuple[ExampleView, ExampleView, DropReport, bool]:
    """Tokenized train and held-out examples from the token cache, building it (streaming) on a miss.

    The split is the one :func:`load_train_eval_records` makes (same seed, same record indices), so
    cached and in-memory runs train on the same pairs. Returns ``(train, eval, report, cache_hit)``.
    """
    root = default_cache_dir() if config.token_cache == "auto" else Path(config.token_cache)

    def store_for(source: str, limit: int | None) -> tuple[TokenStore, bool]:
        material = {"source": source_fingerprint(source, config.data_split), "limit": limit,
                    "tokenizer": tokenizer_fingerprint(tokenizer), "max_length": config.max_length, "objective": repr(objective)}
        folder = root / store_key(material)
        if (folder / "meta.json").exists():
            return TokenStore(folder), True
        report, seen = DropReport(), [0]

        def stream() -> Any:
            for index, record in enumerate(objective.iter_read(source, config.data_split, limit, report)):
                seen[0] = index + 1
                for example in objective.tokenize([record], tokenizer, config.max_length, report):
                    yield index, example

        return build_token_store(folder, stream(), report, lambda: seen[0], material), False

    store, hit = store_for(config.data, config.max_pairs)
    report = DropReport()
    report.merge(store.report)
    if config.eval_data:
        held_store, held_hit = store_for(config.eval_data, None)
        report.merge(held_store.report)
        return (ExampleView(store, np.arange(len(store))), ExampleView(held_store, np.arange(len(held_store))),
                report, hit and held_hit)
    held = np.isin(store.record_index, held_out(store.num_records, config.eval_fraction, config.seed))
    return ExampleView(store, np.flatnonzero(~held)), ExampleView(store, np.flatnonzero(held)), report, hit
