"""Readers for step-labelled solutions (process supervision), one converter per external format.

* PRM800K JSONL (``question.problem``, ``label.steps[*].completions[*].rating``, the chosen or
  human completion per step; ratings -1/0/+1);
* Math-Shepherd (``input`` with steps ending in a tag, default ``ки``; ``label`` with the tag
  replaced by ``+`` / ``-``);
* TRL stepwise (``prompt``, ``completions`` list, ``labels`` list of bools);
* BIG-Bench-Mistake (``input``, ``steps``, ``mistake_index``: earlier steps correct (1), that
  step wrong (0), later steps unlabelled);
* PRM800K "stepwise-critique" parquet (one row per rated candidate step: the prefix steps are
  unlabelled context, the candidate carries the rating);
* rewardlab's own (``prompt``, ``steps``, ``step_labels`` with nulls for unlabelled steps).
"""

from __future__ import annotations

import math

from collections.abc import Mapping
from typing import Any

from ..errors import DataFormatError
from .readers import DropReport, _prompt, iter_records
from .records import Message, StepLabeledSolution

__all__ = ["read_step_solutions", "to_step_solution"]

SHEPHERD_TAG = "ки"


def _user(text: str) -> tuple[Message, ...]:
    return (Message("user", text),)


def _labels(values: Any, n: int, location: str, field: str) -> tuple[float | None, ...]:
    if not isinstance(values, list) or len(values) != n:
        raise DataFormatError(location, f"expected a list of {n} labels (one per step)", field)
    out: list[float | None] = []
    for v in values:
        if v is None:
            out.append(None)
        elif isinstance(v, bool):
            out.append(float(v))
        elif isinstance(v, (int, float)) and math.isfinite(v):
            out.append(float(v))
        else:
            raise DataFormatError(location, f"labels must be finite numbers, booleans or null, got {v!r}", field)
    return tuple(out)


def _shepherd(record: Mapping, location: str, tag: str) -> StepLabeledSolution:
    text, labelled = record["input"], record["label"]
    if tag not in text:
        raise DataFormatError(location, f"no step tag {tag!r} in the input", "input")
    pieces = text.split(tag)
    head, steps = pieces[0], [p for p in pieces[:-1]]
    # the question precedes "Step 1:"; steps are the text between tags
    first = head.find("Step 1")
    question = head[:first].strip() if first > 0 else ""
    steps = [(head[first:] if i == 0 and first >= 0 else p).strip() for i, p in enumerate(steps)]
    marks = []
    rest = labelled
    for step in steps:
        pos = rest.find(step)
        if pos < 0:
            raise DataFormatError(location, "the labelled text does not contain the input's steps", "label")
        after = rest[pos + len(step):].lstrip(" ")
        if not after or after[0] not in "+-":
            raise DataFormatError(location, "expected '+' or '-' after every step", "label")
        marks.append(1.0 if after[0] == "+" else 0.0)
        rest = after[1:]
    return StepLabeledSolution(_user(question), tuple(steps), tuple(marks), location)


def _prm800k(record: Mapping, location: str) -> StepLabeledSolution:
    steps, labels = [], []
    for i, step in enumerate(record["label"]["steps"]):
        chosen = step.get("chosen_completion")
        if chosen is not None:
            completion = step["completions"][chosen]
            steps.append(completion["text"])
            labels.append(None if completion.get("rating") is None else float(completion["rating"]))
        elif step.get("human_completion"):
            steps.append(step["human_completion"]["text"] if isinstance(step["human_completion"], Mapping) else str(step["human_completion"]))
            labels.append(None)
        elif step.get("completions"):
            completion = step["completions"][0]  # the trajectory stops at this step (usually a -1)
            steps.append(completion["text"])
            labels.append(None if completion.get("rating") is None else float(completion["rating"]))
            break
        else:
            raise DataFormatError(location, f"step {i} has no completion", "label.steps")
    return StepLabeledSolution(_user(record["question"]["problem"]), tuple(steps), tuple(labels), location)


def to_step_solution(record: Mapping, location: str = "", tag: str = SHEPHERD_TAG) -> StepLabeledSolution:
    """Detect the format of ``record`` and convert it.

    >>> to_step_solution({"input": "Q", "steps": ["a", "b", "c"], "mistake_index": 1}).step_labels
    (1.0, 0.0, None)
    >>> to_step_solution({"prompt": "Q", "completions": ["a", "b"], "labels": [True, False]}).step_labels
    (1.0, 0.0)
    """
    try:
        if "steps" in record and "step_labels" in record:
            steps = tuple(record["steps"])
            return StepLabeledSolution(_prompt(record.get("prompt", ""), location), steps,
                                       _labels(record["step_labels"], len(steps), location, "step_labels"), location,
                                       record.get("answer"))
        if "steps" in record and "mistake_index" in record:
            steps, k = tuple(record["steps"]), record["mistake_index"]
            labels = tuple(1.0 if k is None or i < k else 0.0 if i == k else None for i in range(len(steps)))
            return StepLabeledSolution(_user(record["input"]), steps, labels, location, record.get("target"))
        if "completions" in record and "labels" in record:
            steps = tuple(record["completions"])
            return StepLabeledSolution(_prompt(record["prompt"], location), steps,
                                       _labels(list(record["labels"]), len(steps), location, "labels"), location)
        if "input" in record and "label" in record and isinstance(record["label"], str):
            return _shepherd(record, location, tag)
        if "label" in record and isinstance(record["label"], Mapping) and "question" in record:
            return _prm800k(record, location)
        if "next_response" in record and "instruction" in record:
            prefix = tuple(record.get("responses") or ())
            rating = record.get("rating")
            labels = (None,) * len(prefix) + (None if rating is None else float(rating),)
            return StepLabeledSolution(_user(record["instruction"]), prefix + (record["next_response"],), labels, location)
    except (KeyError, TypeError, IndexError) as err:
        raise DataFormatError(location, f"malformed step record ({type(err).__name__}: {err})") from None
    raise DataFormatError(location, "unknown step format; expected rewardlab (prompt, steps, step_labels), PRM800K, "
                          "Math-Shepherd (input, label), TRL stepwise (prompt, completions, labels), BIG-Bench-Mistake "
                          "(input, steps, mistake_index) or the PRM800K stepwise-critique parquet")


def read_step_solutions(source: str, split: str = "train", limit: int | None = None) -> tuple[list[StepLabeledSolution], DropReport]:
    """Read solutions, dropping (and counting) those with no labelled step."""
    out, report = [], DropReport()
    for location, record in iter_records(source, split):
        if limit is not None and report.total >= limit:
            break
        report.total += 1
        solution = to_step_solution(record, location)
        if not solution.steps or all(label is None for label in solution.step_labels):
            report.add("without a labelled step", location=location)
            continue
        out.append(solution)
    if report.total == 0:
        raise DataFormatError(source, "contains no records")
    return out, report
