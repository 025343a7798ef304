"""Regression target normalization, fitted on training data and saved with the model."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["TargetNormalizer", "z_normalize_ratings"]


@dataclass(frozen=True)
class TargetNormalizer:
    """z-normalization of regression targets, globally or per annotator; saved in the checkpoint.

    ``global_stats[head] = (mean, std)`` of the raw targets maps normalized predictions back to
    the original scale (``y = z * std + mean``); ``group_stats[annotator][head]`` normalizes each
    annotator's scores by their own mean and std first (removing annotator bias).

    >>> n = TargetNormalizer.fit([{"s": 1.0}, {"s": 3.0}, {"s": 5.0}], [None] * 3, "global")
    >>> n.normalize({"s": 5.0}, None), n.to_original("s", 1.0)
    ((1.0,), 5.0)
    """

    mode: Literal["none", "global", "annotator"] = "none"
    heads: tuple[str, ...] = ("score",)
    global_stats: dict[str, tuple[float, float]] = field(default_factory=dict)
    group_stats: dict[str, dict[str, tuple[float, float]]] = field(default_factory=dict)

    @staticmethod
    def _stats(values: list[float]) -> tuple[float, float]:
        mean = sum(values) / len(values)
        std = math.sqrt(sum((v - mean) ** 2 for v in values) / max(1, len(values) - 1))
        return mean, (std if std > 0 else 1.0)

    @classmethod
    def fit(cls, scores: Sequence[dict[str, float]], annotators: Sequence[str | None], mode: str) -> TargetNormalizer:
        heads = tuple(scores[0]) if scores else ("score",)
        if mode == "none":
            return cls("none", heads)
        global_stats = {h: cls._stats([s[h] for s in scores]) for h in heads}
        group_stats: dict[str, dict[str, tuple[float, float]]] = {}
        if mode == "annotator":
            by: dict[str, list[dict[str, float]]] = defaultdict(list)
            for s, a in zip(scores, annotators):
                by[str(a)].append(s)
            group_stats = {a: {h: cls._stats([s[h] for s in group]) for h in heads} for a, group in by.items()}
        return cls(mode, heads, global_stats, group_stats)  # type: ignore[arg-type]  # mode: checked on entry

    def normalize(self, scores: dict[str, float], annotator: str | None) -> tuple[float, ...]:
        if self.mode == "none":
            return tuple(scores[h] for h in self.heads)
        stats = self.global_stats
        if self.mode == "annotator":
            stats = self.group_stats.get(str(annotator), self.global_stats)
        return tuple((scores[h] - stats[h][0]) / stats[h][1] for h in self.heads)

    def to_original(self, head: str, value: float) -> float:
        if self.mode == "none":
            return value
        mean, std = self.global_stats[head]
        return value * std + mean

    def to_json(self) -> dict[str, Any]:
        return {"mode": self.mode, "heads": list(self.heads), "global_stats": {h: list(v) for h, v in self.global_stats.items()},
                "group_stats": {a: {h: list(v) for h, v in s.items()} for a, s in self.group_stats.items()}}

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> TargetNormalizer:
        return cls(raw["mode"], tuple(raw["heads"]), {h: tuple(v) for h, v in raw["global_stats"].items()},
                   {a: {h: tuple(v) for h, v in s.items()} for a, s in raw["group_stats"].items()})


def z_normalize_ratings(records: Sequence[tuple[str, Mapping[str, Any]]], score_fields: Sequence[str] = ("score",),
                        by: Literal["annotator", "global"] = "annotator",
                        annotator_field: str = "annotator") -> tuple[list[dict[str, Any]], TargetNormalizer]:
    """z-normalize ratings (seed 3.4.3: per annotator removes each annotator's bias and scale): each record gets
    ``<field>_z`` = (score - mean) / std, the mean and std of its annotator's ratings (``by="annotator"``) or of all
    ratings (``"global"``); the same :class:`TargetNormalizer` that regression training fits and saves.

    A record without a numeric score, or (per annotator) without an annotator, is an error naming it.

    >>> rows = [("f:1", {"annotator": "x", "score": 1}), ("f:2", {"annotator": "x", "score": 3}),
    ...         ("f:3", {"annotator": "y", "score": 8}), ("f:4", {"annotator": "y", "score": 9})]
    >>> [round(r["score_z"], 3) for r in z_normalize_ratings(rows)[0]]
    [-0.707, 0.707, -0.707, 0.707]
    """
    from ..errors import DataFormatError

    scores: list[dict[str, float]] = []
    annotators: list[str | None] = []
    for location, record in records:
        row = {}
        nested: Mapping[str, Any] = record["scores"] if isinstance(record.get("scores"), Mapping) else {}
        for name in score_fields:
            # a top-level field, or one of a 'scores' object (USR / Topical-Chat), as 'data pairs --ratings' reads them
            value = record[name] if name in record else nested.get(name)
            where = name if name in record or name not in nested else f"scores.{name}"
            if value is None:
                have = sorted(nested) if nested else sorted(k for k, v in record.items() if isinstance(v, (int, float)))
                raise DataFormatError(location, f"missing; the numeric fields here are {have} (--score-field picks them)", where)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise DataFormatError(location, f"expected a finite number, got {value!r}", where)
            row[name] = float(value)
        scores.append(row)
        if by == "annotator":
            if record.get(annotator_field) is None:
                raise DataFormatError(location, "missing; per-annotator normalization needs who rated (or normalize over "
                                                "all ratings: --by global)", annotator_field)
            annotators.append(str(record[annotator_field]))
        else:
            annotators.append(None)
    if not scores:
        raise DataFormatError("ratings", "contains no records")
    normalizer = TargetNormalizer.fit(scores, annotators, by)
    out = []
    for (_, record), row, annotator in zip(records, scores, annotators):
        z = normalizer.normalize(row, annotator)
        out.append({**record, **{f"{name}_z": value for name, value in zip(normalizer.heads, z)}})
    return out, normalizer
