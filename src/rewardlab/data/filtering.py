"""Margin filtering of preference pairs (seed 3.4.2): drop or down-weight pairs by annotator agreement, by a
Dawid-Skene posterior, by a rating gap, or by an existing reward model's confidence, with the reason for every
dropped pair written out; Llama-2-style weights per preference-strength stratum.

The filter reads each pair's signals from its record (``agreement`` and ``confidence`` as written by
``rewardlab data pairs --annotations``, the gap from ``margin`` or another field) and, for the RM criterion, from
a probability the caller computes with a scorer: ``P(chosen > rejected) = sigmoid(r_chosen - r_rejected)``
(the Bradley-Terry reading of the RM, Ouyang et al. 2022 eq. 1). A criterion asked for whose field a record lacks
is an error naming the record, never a silent pass.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from ..errors import ConfigError, DataFormatError

__all__ = ["FilterCounts", "FilterDecision", "PairFilter", "filter_pair_file", "filter_pairs", "parse_signals", "parse_weight_table",
           "rm_preference_probability"]


class PairScorer(Protocol):
    """What the RM criteria need of a scorer: :class:`rewardlab.scoring.Scorer`'s ``score`` (this layer sits below
    scoring, so it names the method it calls instead of importing the protocol)."""

    def score(self, prompts: Sequence[Any], responses: Sequence[str]) -> list[float]: ...

Signal = Literal["agreement", "confidence", "rm_confidence"]


def parse_signals(text: str) -> tuple[str, ...]:
    """``"agreement,confidence"`` -> ``("agreement", "confidence")`` (:class:`PairFilter` checks each name).

    >>> parse_signals("agreement, confidence")
    ('agreement', 'confidence')
    """
    return tuple(w.strip() for w in text.split(",") if w.strip())


def parse_weight_table(text: str) -> dict[str, float] | None:
    """``"a=1,b=0.5"`` or a JSON object -> ``{"a": 1.0, "b": 0.5}`` (the last ``=`` splits, so labels may hold one).

    >>> parse_weight_table("significantly better=1,slightly better=0.5")
    {'significantly better': 1.0, 'slightly better': 0.5}
    """
    import json

    if not text.strip():
        return None
    if text.lstrip().startswith("{"):
        table = json.loads(text)
        if not isinstance(table, dict):
            raise ConfigError(f"expected a JSON object of weights, got {text!r}")
    else:
        table = {}
        for part in text.split(","):
            key, sep, value = part.rpartition("=")
            if not sep or not key.strip():
                raise ConfigError(f"expected LABEL=WEIGHT pairs separated by commas, got {part!r}")
            table[key.strip()] = value
    try:
        return {str(k): float(v) for k, v in table.items()}
    except (TypeError, ValueError) as e:
        raise ConfigError(f"a weight is not a number: {e}") from None


@dataclass(frozen=True)
class PairFilter:
    """What ``rewardlab data filter`` keeps, and with which weight.

    A pair fails a criterion when its signal is below the threshold (``None``: the criterion is off):
    ``min_agreement`` (share of annotators who voted for the chosen side, field ``agreement``),
    ``min_confidence`` (Dawid-Skene posterior of the label, field ``confidence``), ``min_gap`` (field
    ``gap_field``, a rating gap or margin) and ``min_rm_confidence`` (an RM's ``P(chosen > rejected)``).

    ``mode="drop"`` drops a failing pair (its reasons go to the dropped file); ``mode="weight"`` keeps it with its
    weight multiplied by ``down_weight``. ``weight_by`` multiplies every kept pair's weight by its signal (e.g.
    ``confidence``: soft labels as weights). ``stratum_weights`` maps the values of ``stratum_field`` (e.g.
    Llama 2's "significantly better" ... "negligibly better") to weights; a value missing from the table is an
    error. Weights multiply a ``weight`` the record already has.

    >>> PairFilter(min_gap=1.0).criteria()
    ['gap']
    """

    min_agreement: float | None = None
    """Share of annotators who voted for chosen (field agreement)."""
    min_confidence: float | None = None
    """Dawid-Skene posterior of the label (field confidence)."""
    min_gap: float | None = None
    """Rating gap (the field gap_field names)."""
    min_rm_confidence: float | None = None
    """The RM's P(chosen > rejected) = sigmoid(r_chosen - r_rejected), scored with --model."""
    gap_field: str = "margin"
    """The field min_gap reads."""
    mode: Literal["drop", "weight"] = "drop"
    """Failing pairs are dropped, or kept with their weight times down_weight."""
    down_weight: float = 0.1
    """mode 'weight': the factor for failing pairs."""
    weight_by: tuple[Signal, ...] = field(default=(), metadata={"parse": parse_signals, "metavar": "SIGNAL,..."})
    """Multiply each kept pair's weight by these signals (comma-separated: agreement, confidence, rm_confidence)."""
    stratum_field: str = "strength"
    """The field stratum_weights reads."""
    stratum_weights: dict[str, float] | None = field(default=None, metadata={"parse": parse_weight_table,
                                                                            "metavar": "LABEL=W,..."})
    """Weight per stratum value, 'LABEL=W,...' or JSON (Llama 2: 'significantly better=1,...')."""

    def __post_init__(self) -> None:
        if self.mode not in ("drop", "weight"):
            raise ConfigError(f"mode must be 'drop' or 'weight', got {self.mode!r}")
        if not 0 <= self.down_weight <= 1:
            raise ConfigError(f"down_weight must be in [0, 1], got {self.down_weight}")
        for name in ("min_agreement", "min_confidence", "min_rm_confidence"):
            value = getattr(self, name)
            if value is not None and not 0 <= value <= 1:
                raise ConfigError(f"{name} is a probability in [0, 1], got {value}")
        for signal in self.weight_by:
            if signal not in ("agreement", "confidence", "rm_confidence"):
                raise ConfigError(f"weight_by takes agreement, confidence or rm_confidence, got {signal!r}")
        for key, value in (self.stratum_weights or {}).items():
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ConfigError(f"stratum weight of {key!r} must be a number >= 0, got {value!r}")
        if self.stratum_field != PairFilter.stratum_field and not self.stratum_weights:
            raise ConfigError("stratum_field names the field stratum_weights reads: give stratum_weights too")
        if self.gap_field != PairFilter.gap_field and self.min_gap is None:
            raise ConfigError("gap_field names the field min_gap reads: give min_gap too")
        if self.mode == "drop" and self.down_weight != PairFilter.down_weight:
            raise ConfigError("down_weight applies with mode='weight' only")
        if not self.criteria() and not self.weight_by and not self.stratum_weights:
            raise ConfigError("nothing to filter by: set a threshold (agreement, confidence, gap, RM confidence), weight_by or "
                              "stratum weights")

    def criteria(self) -> list[str]:
        names = {"agreement": self.min_agreement, "confidence": self.min_confidence, "gap": self.min_gap,
                 "rm_confidence": self.min_rm_confidence}
        return [k for k, v in names.items() if v is not None]

    @property
    def needs_rm(self) -> bool:
        return self.min_rm_confidence is not None or "rm_confidence" in self.weight_by


@dataclass(frozen=True)
class FilterDecision:
    """One pair's outcome: kept or not, its weight, why it failed (each reason names the signal and threshold)."""

    location: str
    record: dict[str, Any]
    kept: bool
    weight: float
    reasons: tuple[str, ...]


def _number(record: Mapping[str, Any], name: str, location: str, hint: str) -> float:
    value = record.get(name)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise DataFormatError(location, f"expected a finite number ({hint}), got {value!r}", name)
    return float(value)


def _stratum(value: Any, table: dict[str, float], location: str, name: str) -> float:
    if value is None:
        raise DataFormatError(location, f"missing; the stratum table knows {sorted(table)}", name)
    if str(value) in table:
        return float(table[str(value)])
    try:  # numeric strata: 1 matches "1.0"
        number = float(value)
        for key, weight in table.items():
            try:
                if float(key) == number:
                    return float(weight)
            except ValueError:
                continue
    except (TypeError, ValueError):
        pass
    raise DataFormatError(location, f"value {value!r} is not in the stratum table {sorted(table)}", name)


def filter_pairs(records: Iterable[tuple[str, Mapping[str, Any]]], rule: PairFilter,
                 rm_confidence: Iterable[float] | None = None) -> Iterator[FilterDecision]:
    """Apply ``rule`` to pair records ``(location, record)``, in order. ``rm_confidence`` yields the RM's
    ``P(chosen > rejected)`` for each record in the same order (required when the rule uses it).

    >>> rows = [("f:1", {"margin": 2.0}), ("f:2", {"margin": 0.5})]
    >>> [(d.kept, d.reasons) for d in filter_pairs(rows, PairFilter(min_gap=1.0))]
    [(True, ()), (False, ('gap 0.5 < 1',))]
    >>> [d.weight for d in filter_pairs(rows, PairFilter(min_gap=1.0, mode="weight", down_weight=0.25))]
    [1.0, 0.25]
    """
    if rule.needs_rm and rm_confidence is None:
        raise ConfigError("this rule uses an RM's confidence: pass rm_confidence (rewardlab data filter --model ...)")
    probabilities = iter(rm_confidence) if rm_confidence is not None else None
    for location, record in records:
        signals: dict[str, float] = {}
        if rule.min_agreement is not None or "agreement" in rule.weight_by:
            signals["agreement"] = _number(record, "agreement", location, "share of annotators agreeing; 'rewardlab data pairs "
                                                                          "--annotations' writes it")
        if rule.min_confidence is not None or "confidence" in rule.weight_by:
            signals["confidence"] = _number(record, "confidence", location, "a Dawid-Skene posterior; 'rewardlab data pairs "
                                                                            "--annotations --method dawid-skene' writes it")
        if rule.min_gap is not None:
            signals["gap"] = _number(record, rule.gap_field, location, "a rating gap or margin")
        if probabilities is not None:
            try:
                signals["rm_confidence"] = float(next(probabilities))
            except StopIteration:
                raise ConfigError(f"{location}: rm_confidence ended before the records") from None
        thresholds = {"agreement": rule.min_agreement, "confidence": rule.min_confidence, "gap": rule.min_gap,
                      "rm_confidence": rule.min_rm_confidence}
        reasons = tuple(f"{name} {signals[name]:.4g} < {limit:.4g}" for name, limit in thresholds.items()
                        if limit is not None and signals[name] < limit)
        weight = _number(record, "weight", location, "a weight >= 0") if "weight" in record else 1.0
        if rule.stratum_weights:
            weight *= _stratum(record.get(rule.stratum_field), rule.stratum_weights, location, rule.stratum_field)
        for name in rule.weight_by:
            weight *= signals[name]
        kept = not reasons or rule.mode == "weight"
        if reasons and rule.mode == "weight":
            weight *= rule.down_weight
        out = dict(record)
        if "rm_confidence" in signals:
            out["rm_confidence"] = signals["rm_confidence"]
        yield FilterDecision(location, out, kept, weight, reasons)


class FilterCounts:
    """Running counts of a filter: read, kept, kept fraction, failures per criterion, mean weight of the kept.

    >>> counts = FilterCounts()
    >>> counts.add(FilterDecision("f:1", {}, True, 1.0, ()))
    >>> counts.add(FilterDecision("f:2", {}, False, 1.0, ("gap 0.5 < 1",)))
    >>> counts.as_dict()["kept_fraction"], counts.as_dict()["failed"]
    (0.5, {'gap': 1})
    """

    def __init__(self) -> None:
        self.read = self.kept = 0
        self.weight_sum = 0.0
        self.failed: Counter[str] = Counter()

    def add(self, decision: FilterDecision) -> None:
        self.read += 1
        self.kept += decision.kept
        self.weight_sum += decision.weight if decision.kept else 0.0
        self.failed.update({reason.split(" ", 1)[0] for reason in decision.reasons})

    def as_dict(self) -> dict[str, Any]:
        return {"read": self.read, "kept": self.kept, "dropped": self.read - self.kept,
                "kept_fraction": self.kept / self.read if self.read else float("nan"), "failed": dict(self.failed),
                "mean_kept_weight": self.weight_sum / self.kept if self.kept else float("nan")}


def rm_preference_probability(scorer: PairScorer, records: Sequence[tuple[str, Mapping[str, Any]]]) -> list[float]:
    """``P(chosen > rejected) = sigmoid(r(x, chosen) - r(x, rejected))`` under a reward model (any object with the
    ``Scorer`` interface ``score(prompts, responses)``), for pair records in any format rewardlab reads."""
    from .readers import to_preference_pair

    pairs = [to_preference_pair(record, location) for location, record in records]
    prompts = [list(p.prompt) for p in pairs]
    rewards = scorer.score(prompts + prompts, [p.chosen for p in pairs] + [p.rejected for p in pairs])
    n = len(pairs)
    return [1.0 / (1.0 + math.exp(-max(-700.0, min(700.0, rewards[i] - rewards[n + i])))) for i in range(n)]


def filter_pair_file(source: str, rule: PairFilter, output: str, dropped: str | None = None, scorer: PairScorer | None = None,
                     chunk: int = 256, progress: bool = False) -> dict[str, Any]:
    """``rewardlab data filter``: stream ``source`` (pair records, or any records carrying the rule's fields), write
    the kept records with their ``weight`` to ``output`` and the dropped ones with ``dropped_because`` (a list of
    reasons) to ``dropped``; returns the counts. ``scorer`` is needed for the RM criterion; records are scored in
    chunks of ``chunk`` pairs."""
    from ..jsonsafe import dumps
    from .readers import atomic_write, iter_records, refuse_overwriting_input

    refuse_overwriting_input(output, source)
    if dropped:
        refuse_overwriting_input(dropped, source, output)
    if rule.needs_rm and scorer is None:
        raise ConfigError("the rule uses an RM's confidence: give a scorer (--model)")
    counts = FilterCounts()
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(desc="filtering", unit="pair")
    with atomic_write(output) as kept_handle, atomic_write(dropped) as drop_handle:  # no output left by a failure
        buffer: list[tuple[str, Mapping[str, Any]]] = []

        def flush() -> None:
            probabilities = rm_preference_probability(scorer, buffer) if scorer is not None and rule.needs_rm else None
            for decision in filter_pairs(buffer, rule, probabilities):
                counts.add(decision)
                if decision.kept:
                    kept_handle.write(dumps({**decision.record, "weight": decision.weight}) + "\n")
                else:
                    drop_handle.write(dumps({**decision.record, "dropped_because": list(decision.reasons),
                                             "location": decision.location}) + "\n")
            if bar is not None:
                bar.update(len(buffer))
            buffer.clear()

        for item in iter_records(source):
            buffer.append(item)
            if len(buffer) >= chunk:
                flush()
        flush()
        if counts.read == 0:
            raise DataFormatError(source, "contains no records")
    if bar is not None:
        bar.close()
    used = {k: v for k, v in vars(rule).items() if v is not None and v != () and not (k == "down_weight" and rule.mode == "drop")}
    return {**counts.as_dict(), "rule": used}

