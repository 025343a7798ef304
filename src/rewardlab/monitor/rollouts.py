"""The record a monitor reads: one rollout (prompt, reply, proxy reward, and what else the trainer knows), and the
reader of rollout dumps written by any trainer (one JSON object per rollout, field names mapped).

Field mapping for the dumps of other trainers (``rewardlab monitor --field-reward ...``), see docs/monitoring.md.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..config import validate_fields
from ..data.readers import finite_number, iter_records
from ..errors import DataFormatError

__all__ = ["Rollout", "RolloutFields", "read_rollouts", "to_rollout"]


@dataclass(frozen=True)
class Rollout:
    """One sampled reply as the reward function saw it.

    ``members`` are per-member rewards of an ensemble proxy; ``logprobs`` / ``reference_logprobs`` the sampled
    tokens' log-probs under the policy and the reference (equal lengths), from which the monitor computes the
    per-sequence KL; ``kl`` is a per-sequence KL in nats computed elsewhere (used when no log-probs are given).
    """

    step: int
    prompt: Any
    response: str
    reward: float
    gold: float | None = None
    members: tuple[float, ...] | None = None
    logprobs: tuple[float, ...] | None = None
    reference_logprobs: tuple[float, ...] | None = None
    kl: float | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True)
class RolloutFields:
    """Which field of a dumped record holds what (a dotted name reads a nested field, e.g. ``extra_info.prompt``)."""

    step: str = "step"
    """Training step (or global step / iteration) the rollout was sampled at."""
    prompt: str = "prompt"
    """The prompt: text or chat messages."""
    response: str = "response"
    """The sampled reply (text)."""
    reward: str = "reward"
    """The proxy reward the trainer optimized."""
    gold: str = "gold"
    """Optional gold reward (a stronger RM, a checker, human ratings); absent or null means none."""
    members: str = "members"
    """Optional list of per-member rewards of an ensemble proxy."""
    logprobs: str = "logprobs"
    """Optional per-token log-probs of the reply under the policy."""
    reference_logprobs: str = "ref_logprobs"
    """Optional per-token log-probs of the reply under the reference policy (same length as ``logprobs``)."""
    kl: str = "kl"
    """Optional per-sequence KL to the reference in nats (used when no log-probs are given)."""

    def __post_init__(self) -> None:
        validate_fields(self)


def _get(record: Mapping, name: str) -> Any:
    value: Any = record
    for part in name.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def _numbers(value: Any, location: str, name: str) -> tuple[float, ...]:
    if not isinstance(value, (list, tuple)) or not value:
        raise DataFormatError(location, f"expected a non-empty list of numbers, got {type(value).__name__}", name)
    return tuple(finite_number(v, location, name) for v in value)


def to_rollout(record: Mapping, location: str = "", fields: RolloutFields = RolloutFields()) -> Rollout:
    """One :class:`Rollout` from a dumped record; a missing required field or a non-numeric value is a
    :class:`~rewardlab.errors.DataFormatError` naming ``location`` and the field.

    >>> to_rollout({"step": 3, "prompt": "Hi", "response": "Hello", "reward": 0.5}).reward
    0.5
    """
    for name in (fields.step, fields.prompt, fields.response, fields.reward):
        if _get(record, name) is None:
            raise DataFormatError(location, "missing (a rollout needs step, prompt, response and reward; map other names "
                                            "with --field-*)", name)
    step = _get(record, fields.step)
    if isinstance(step, bool) or not isinstance(step, int) and not (isinstance(step, float) and step.is_integer()):
        raise DataFormatError(location, f"expected an integer step, got {step!r:.40}", fields.step)
    response = _get(record, fields.response)
    if not isinstance(response, str):
        raise DataFormatError(location, f"expected text, got {type(response).__name__}", fields.response)
    optional = {name: _get(record, getattr(fields, name)) for name in ("gold", "members", "logprobs", "reference_logprobs", "kl")}
    logprobs = None if optional["logprobs"] is None else _numbers(optional["logprobs"], location, fields.logprobs)
    reference = None if optional["reference_logprobs"] is None else _numbers(optional["reference_logprobs"], location,
                                                                                fields.reference_logprobs)
    if (logprobs is None) != (reference is None) or (logprobs is not None and reference is not None
                                                     and len(logprobs) != len(reference)):
        raise DataFormatError(location, "policy and reference log-probs must both be given, with one value per token each",
                              fields.reference_logprobs)
    return Rollout(
        step=int(step), prompt=_get(record, fields.prompt), response=response,
        reward=finite_number(_get(record, fields.reward), location, fields.reward),
        gold=None if optional["gold"] is None else finite_number(optional["gold"], location, fields.gold),
        members=None if optional["members"] is None else _numbers(optional["members"], location, fields.members),
        logprobs=logprobs, reference_logprobs=reference,
        kl=None if optional["kl"] is None else finite_number(optional["kl"], location, fields.kl))


def read_rollouts(path: str | os.PathLike, fields: RolloutFields = RolloutFields()) -> Iterator[Rollout]:
    """Rollouts of a ``.jsonl`` / ``.json`` / ``.parquet`` dump (optionally gzipped), in file order; a folder is read
    file by file in name order (verl's ``trainer.rollout_data_dir`` writes one ``<step>.jsonl`` per step)."""
    from pathlib import Path

    if os.path.isdir(path):
        files = sorted((p for p in Path(path).iterdir() if p.is_file() and ".jsonl" in p.suffixes),
                       key=lambda p: (len(p.name), p.name))  # 9.jsonl before 10.jsonl
        if not files:
            raise DataFormatError(str(path), "a folder of rollouts must hold .jsonl files")
    elif os.path.isfile(path):
        files = [Path(path)]
    else:
        raise DataFormatError(str(path), "no such rollout file")
    for file in files:
        for location, record in iter_records(file):
            yield to_rollout(record, location, fields)
