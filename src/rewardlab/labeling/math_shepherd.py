"""Math-Shepherd automatic step labels (Wang et al., arXiv:2312.08935), resumable.

For each step prefix ``s_1..s_k`` of a solution, sample N completions with a generator, check
each completion's first final answer against the gold answer, and label step k with
hard estimation ``HE = 1 if any completion is correct`` and soft estimation ``SE = fraction
correct``. A step that itself states a final answer (``####``, ``\\boxed{}``, "answer is") is labelled
by that answer (1 or 0) without sampling: a completion that keeps writing after it must not decide
it. Results are appended to a JSON Lines file as they are computed; a re-run skips the
(solution, step) keys already there, so an interrupted run loses at most the step in flight.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ..data.readers import iter_records
from ..data.records import Message, StepLabeledSolution
from ..errors import DataFormatError
from .checkers import Checker, has_final_answer, up_to_first_answer
from .generators import Generator

__all__ = ["SolutionToLabel", "assemble_labels", "label_solutions", "label_step", "read_solutions_to_label", "step_seed",
           "todo_steps"]


@dataclass(frozen=True)
class SolutionToLabel:
    key: str
    prompt: tuple[Message, ...]
    steps: tuple[str, ...]
    gold: str


def read_solutions_to_label(source: str, limit: int | None = None) -> list[SolutionToLabel]:
    """GSM8K (``question``, ``answer`` with steps on lines and ``#### n``), GSM8K example model
    solutions (``question``, ``ground_truth``, ``*.solution`` objects: every solution becomes one
    item), or rewardlab's (``prompt``, ``steps``, ``answer``)."""
    items: list[SolutionToLabel] = []
    for location, record in iter_records(source):
        if limit is not None and len(items) >= limit:
            break
        if "question" in record and isinstance(record.get("answer"), str) and "####" in record["answer"]:
            lines = [ln.strip() for ln in record["answer"].split("\n") if ln.strip()]
            # the "#### n" line is the solution's last step: it states the answer, so it is labelled by it
            items.append(SolutionToLabel(location, (Message("user", record["question"]),), tuple(lines), lines[-1]))
        elif "question" in record and "ground_truth" in record:
            gold = record["ground_truth"].strip().split("\n")[-1]
            for name, value in record.items():
                if isinstance(value, dict) and "solution" in value:
                    steps = [ln.strip() for ln in value["solution"].split("\n") if ln.strip()]
                    items.append(SolutionToLabel(f"{location}/{name}", (Message("user", record["question"]),), tuple(steps), gold))
        elif "steps" in record and "answer" in record:
            prompt = record.get("prompt", "")
            items.append(SolutionToLabel(location, (Message("user", prompt),), tuple(record["steps"]), str(record["answer"])))
        else:
            raise DataFormatError(location, "expected GSM8K (question, answer with ####), GSM8K example solutions "
                                  "(question, ground_truth) or (prompt, steps, answer)")
    return items


def _done(path: Path) -> set[str]:
    """Keys already labelled; a last line torn by a crash mid-write is cut off (that step is redone)."""
    if not path.exists():
        return set()
    text = path.read_text()
    if text and not text.endswith("\n"):
        text = text[: text.rfind("\n") + 1]
        path.write_text(text)
    keys = set()
    for lineno, line in enumerate(text.splitlines(), start=1):
        try:
            keys.add(json.loads(line)["key"])
        except (json.JSONDecodeError, KeyError):
            raise DataFormatError(f"{path}:{lineno}", "malformed result line (expected a JSON object with 'key')") from None
    return keys


def step_seed(key: str, seed: int) -> int:
    """A step's sampling seed from its key: the same draws however steps are ordered or distributed.

    >>> step_seed("gsm8k.jsonl:1#0", 0) == step_seed("gsm8k.jsonl:1#0", 0), step_seed("a#0", 0) != step_seed("a#1", 0)
    (True, True)
    """
    import zlib

    return (seed * 1_000_003 + zlib.crc32(key.encode())) % 2**31


def label_step(solution: SolutionToLabel, k: int, generator: Generator, checker: Checker, n: int, max_new_tokens: int,
               seed: int | None = None) -> dict[str, Any]:
    """The result line of step ``k``: a stated answer decides it; otherwise ``n`` completions are sampled (with the
    step's own seed when ``seed`` is given) and checked on their first final answer."""
    prefix = "\n".join(solution.steps[: k + 1]) + "\n"
    key = f"{solution.key}#{k}"
    if has_final_answer(solution.steps[k]):  # the step states the answer: it is right or wrong as it stands
        right = float(bool(checker(prefix, solution.gold)))
        return {"key": key, "solution": solution.key, "step": k, "n": 0, "correct": int(right), "hard": right, "soft": right,
                "decided_by": "stated answer"}
    completions = (generator.continue_solution(solution.prompt, prefix, n, max_new_tokens) if seed is None else
                   generator.continue_solution(solution.prompt, prefix, n, max_new_tokens, seed=step_seed(key, seed)))
    correct = [bool(checker(prefix + up_to_first_answer(c), solution.gold)) for c in completions]
    return {"key": key, "solution": solution.key, "step": k, "n": len(correct), "correct": sum(correct),
            "hard": float(any(correct)), "soft": sum(correct) / len(correct)}


def todo_steps(solutions: Sequence[SolutionToLabel], output: str | Path) -> tuple[list[tuple[SolutionToLabel, int]], int]:
    """``(steps not yet in output, steps already there)``; a line torn by a kill is cut off first."""
    done = _done(Path(output))
    todo = [(s, k) for s in solutions for k in range(len(s.steps)) if f"{s.key}#{k}" not in done]
    return todo, sum(len(s.steps) for s in solutions) - len(todo)


def label_solutions(
    solutions: Sequence[SolutionToLabel], generator: Generator, checker: Checker, output: str | Path, n: int = 8,
    max_new_tokens: int = 256, show_progress: bool = True, seed: int | None = None,
) -> dict[str, int]:
    """Label every step of every solution, appending one JSON line per step to ``output``.

    ``seed``: sample each step with its own seed (:func:`step_seed`), so labels do not depend on the order or the
    machine that computed them (``distributed.labeling`` relies on it). Returns counts: steps labelled now,
    skipped (already in ``output``), generator calls.
    """
    from tqdm.auto import tqdm

    path = Path(output)
    path.parent.mkdir(parents=True, exist_ok=True)
    todo, skipped = todo_steps(solutions, path)
    stats = {"labelled": 0, "skipped": skipped, "generator_calls": 0}
    with path.open("a") as handle:
        for solution, k in tqdm(todo, desc="Math-Shepherd labels", disable=not show_progress):
            record = label_step(solution, k, generator, checker, n, max_new_tokens, seed)
            stats["generator_calls"] += record["n"] > 0
            handle.write(json.dumps(record) + "\n")
            handle.flush()
            stats["labelled"] += 1
    return stats


def assemble_labels(solutions: Sequence[SolutionToLabel], output: str | Path, kind: Literal["hard", "soft"] = "soft") -> list[StepLabeledSolution]:
    """Step-labelled solutions from a (possibly partial) label file; unlabelled steps are None."""
    labels: dict[str, dict[int, float]] = {}
    for line in Path(output).read_text().splitlines():
        try:
            r: dict[str, Any] = json.loads(line)
        except json.JSONDecodeError:
            continue  # the torn last line of an interrupted run
        labels.setdefault(r["solution"], {})[r["step"]] = float(r[kind])
    return [StepLabeledSolution(s.prompt, s.steps, tuple(labels.get(s.key, {}).get(k) for k in range(len(s.steps))), s.key, s.gold)
            for s in solutions]
