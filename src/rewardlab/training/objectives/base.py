"""What every objective shares: the :class:`Objective` protocol the loop sees, defaults, and the reading and
tokenizing helpers."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, ClassVar, Literal, Protocol, runtime_checkable

import torch

from ...data.collate import Example
from ...data.normalization import TargetNormalizer
from ...data.readers import DropReport, iter_records
from ...data.templating import tokenize_counting_cut
from ...errors import ConfigError, DataFormatError
from ...metrics import TiePolicy

__all__ = [
    "Objective", "ObjectiveDefaults", "ObjectiveName", "PAIR_TARGETS", "iter_converted", "named_targets",
    "normalization_metadata", "read_converted", "split_groups", "tokenize_one",
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

    def metrics(self, rewards: list[torch.Tensor], examples: Sequence[Example], tie_policy: TiePolicy) -> dict[str, float]: ...

    def summary(self, examples: Sequence[Example]) -> str | None:
        """A line for the training log about what the objective made of the data, or None."""
        ...

    def augment_training(self, records: Sequence[Any]) -> list[Any]:
        """The training records plus any augmented copies (held-out records are never augmented)."""
        ...

    def metadata(self) -> dict[str, Any]:
        """What a saved model must record for scoring as trained (e.g. a step separator, target statistics)."""
        ...


class ObjectiveDefaults:
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
        from ...models.io import build_reward_model

        return build_reward_model(name, trust_remote_code=trust_remote_code, heads=self.heads)

    def summary(self, examples: Sequence[Example]) -> str | None:
        return None

    def augment_training(self, records: Sequence[Any]) -> list[Any]:
        return list(records)

    def metadata(self) -> dict[str, Any]:
        return {}


def normalization_metadata(normalizer: TargetNormalizer | None) -> dict[str, Any]:
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


def split_groups(rewards: torch.Tensor, sizes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(N[, K])`` flat rewards -> ``(G, Kmax[, K])`` padded per group and a ``(G, Kmax)`` mask."""
    g, kmax = sizes.shape[0], int(sizes.max())
    mask = torch.arange(kmax, device=rewards.device)[None, :] < sizes[:, None].to(rewards.device)
    out = rewards.new_zeros((g, kmax) + tuple(rewards.shape[1:]))
    out[mask] = rewards
    return out, mask


def iter_converted(source: str, split: str, limit: int | None, convert: Any, report: DropReport) -> Iterator[Any]:
    """``convert(record, location)`` for each record (at most ``limit``), counted in ``report``."""
    for location, record in iter_records(source, split):
        if limit is not None and report.total >= limit:
            break
        report.total += 1
        yield convert(record, location)
    if report.total == 0:
        raise DataFormatError(str(source), "contains no records")


def read_converted(source: str, split: str, limit: int | None, convert: Any) -> tuple[list[Any], DropReport]:
    report = DropReport()
    return list(iter_converted(source, split, limit, convert, report)), report


def tokenize_one(tokenizer: Any, prompt: Any, response: str, max_length: int, report: DropReport | None = None,
                  location: str = "") -> tuple[int, ...] | None:
    """Token ids (prompt cut from the left to fit, counted in ``report``), or None when the reply alone cannot fit."""
    encoded = tokenize_counting_cut(tokenizer, prompt, response, max_length)
    if encoded is None:
        return None
    if encoded[1] and report is not None:
        report.note_cut(location)
    return tuple(encoded[0])
