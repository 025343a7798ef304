"""Best-of-N under any ``Scorer``, majority and reward-weighted voting, and the analytic BoN KL."""

from __future__ import annotations

import json
import math
import os
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..metrics import majority_vote
from ..plotting import pyplot, save_figure
from ..scoring.protocol import Scorer

__all__ = [
    "BestOfN", "best_of_n", "best_of_n_file", "best_of_n_kl", "bon_accuracy_curve", "bon_curve",
    "read_candidates", "weighted_vote",
]


def best_of_n_kl(n: int) -> float:
    """KL(best-of-n || base) = log n - (n - 1) / n (Stiennon et al. 2020; Beirami et al. arXiv:2401.01879 show it is an upper bound).

    >>> best_of_n_kl(1), round(best_of_n_kl(16), 4)
    (0.0, 1.8351)
    """
    if n < 1:
        raise ValueError("n must be >= 1")
    return math.log(n) - (n - 1) / n


@dataclass(frozen=True)
class BestOfN:
    """The chosen candidate, its index, every reward, and the BoN KL for this N."""

    index: int
    candidate: str
    rewards: tuple[float, ...]
    kl: float


def best_of_n(scorer: Scorer, prompt: Any, candidates: Sequence[str]) -> BestOfN:
    """Highest reward wins; ties go to the earliest candidate (deterministic).

    >>> from rewardlab.scoring.protocol import FunctionScorer
    >>> best_of_n(FunctionScorer(lambda prompt, response: float(len(response))), "q", ["ab", "abcd", "wxyz"]).index
    1
    """
    if not candidates:
        raise ValueError("best_of_n needs at least one candidate")
    rewards = [float(r) for r in scorer.score([prompt] * len(candidates), list(candidates))]
    index = int(np.argmax(rewards))  # first maximum
    return BestOfN(index, candidates[index], tuple(rewards), best_of_n_kl(len(candidates)))


def _vote(answers: Sequence[str | None]) -> str | None:
    """Self-consistency's answer: :func:`rewardlab.metrics.majority_vote` with ties to the answer seen first."""
    vote = majority_vote(answers, tie_break="first")
    return None if vote is None else str(vote)


def weighted_vote(answers: Sequence[str | None], weights: Sequence[float]) -> str | None:
    """Reward-weighted majority: the answer with the largest summed weight (ties: seen first).

    >>> weighted_vote(["3", "4", "4"], [0.9, 0.3, 0.4])
    '3'
    """
    totals: dict[str, float] = defaultdict(float)
    for a, w in zip(answers, weights):
        if a is not None:
            totals[a] += float(w)
    return max(totals, key=lambda a: (totals[a], -answers.index(a))) if totals else None


def bon_accuracy_curve(
    correct: np.ndarray, answers: Sequence[Sequence[str | None]], gold: Sequence[str | None], rewards: dict[str, np.ndarray],
    ns: Sequence[int], samples: int = 200, seed: int = 0, selector: Callable | None = None,
) -> dict[str, list[float]]:
    """Accuracy vs N for majority vote, each named reward (pick the top-scored candidate) and the oracle.

    ``correct`` is ``(Q, K)`` booleans for K candidates per question; for each N <= K we average
    over ``samples`` random subsets of N candidates per question (exact when N = K).
    """
    rng = np.random.default_rng(seed)
    q, k = correct.shape
    curves: dict[str, list[float]] = {"majority": [], "oracle": [], **{name: [] for name in rewards}}
    for n in ns:
        if n > k:
            raise ValueError(f"N={n} exceeds the {k} candidates per question")
        reps = 1 if n == k else samples
        totals: defaultdict[Any, float] = defaultdict(float)
        for _ in range(reps):
            for i in range(q):
                subset = rng.choice(k, n, replace=False) if n < k else np.arange(k)
                vote = _vote([answers[i][j] for j in subset])
                totals["majority"] += float(vote is not None and vote == gold[i])
                totals["oracle"] += float(correct[i, subset].any())
                for name, r in rewards.items():
                    best = subset[int(np.argmax(r[i, subset]))]
                    totals[name] += float(correct[i, best])
        for name in curves:
            curves[name].append(totals[name] / (reps * q))
    return curves


def read_candidates(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Best-of-N inputs: ``{prompt, candidates[, answers, correct, gold]}`` records, or GSM8K example model
    solutions (``question``, ``ground_truth`` and labelled solutions, answers extracted). Each row gets ``source``
    (file:line); a record of neither shape raises :class:`~rewardlab.errors.DataFormatError`."""
    from ..data.readers import iter_records
    from ..errors import DataFormatError
    from ..labeling.checkers import gsm8k_answer

    rows = []
    for location, record in iter_records(str(path)):
        if "ground_truth" in record:  # GSM8K example model solutions: 4 labelled candidates
            names = [k for k, v in record.items() if isinstance(v, dict) and "solution" in v]
            rows.append({"prompt": record["question"], "candidates": [record[k]["solution"] for k in names],
                         "correct": [bool(record[k]["is_correct"]) for k in names],
                         "answers": [gsm8k_answer(record[k]["solution"]) for k in names],
                         "gold": gsm8k_answer(record["ground_truth"]), "source": location})
        elif isinstance(record.get("candidates"), list) and "prompt" in record:
            if not record["candidates"] or not all(isinstance(c, str) for c in record["candidates"]):
                raise DataFormatError(location, "expected a non-empty list of strings", "candidates")
            rows.append({**record, "source": location})
        else:
            raise DataFormatError(location, "expected {prompt, candidates[, answers, correct, gold]} or GSM8K example solutions", "candidates")
    if not rows:
        raise DataFormatError(str(path), "contains no records (expected {prompt, candidates[, gold]} rows)")
    return rows


def best_of_n_file(scorer: Scorer, data: str | os.PathLike, output: str | os.PathLike, show_progress: bool = True) -> dict[str, Any]:
    """Best-of-N for every row of a candidates file (:func:`read_candidates`): one JSON line per row in ``output``
    (pick, every reward, the BoN KL bound; majority and reward-weighted votes when answers are given; whether the
    pick is correct when labels are). Returns the summary (items, KL bound, BoN accuracy when labelled)."""
    from ..data.readers import refuse_overwriting_input

    refuse_overwriting_input(output, data)
    rows = read_candidates(data)
    hits = []
    from tqdm.auto import tqdm

    with open(output, "w") as handle:
        for row in tqdm(rows, desc="best-of-N", unit="item", disable=not show_progress):
            result = best_of_n(scorer, row["prompt"], row["candidates"])
            line: dict[str, Any] = {"source": row["source"], "best_index": result.index, "rewards": list(result.rewards),
                                    "n": len(row["candidates"]), "kl_bound": result.kl}
            if row.get("answers"):
                line["majority_answer"] = _vote(row["answers"])
                line["weighted_answer"] = weighted_vote(row["answers"], result.rewards)
            if row.get("correct"):
                line["best_correct"] = bool(row["correct"][result.index])
                hits.append(line["best_correct"])
            handle.write(json.dumps(line) + "\n")
    summary: dict[str, Any] = {"items": len(rows), "kl_bound": best_of_n_kl(len(rows[0]["candidates"])) if rows else None}
    if hits:
        summary["bon_accuracy"] = sum(hits) / len(hits)
    return summary


def _score_with_progress(scorer: Scorer, prompts: list[Any], texts: list[str], k: int, desc: str, show: bool,
                         questions_per_call: int = 32) -> np.ndarray:
    """``scorer.score`` over all candidates, ``questions_per_call`` questions (x k candidates) per call, with a bar
    counting questions."""
    from tqdm.auto import tqdm

    step = questions_per_call * k
    out: list[float] = []
    with tqdm(total=len(texts) // k, desc=desc, unit="question", disable=not show) as bar:
        for start in range(0, len(texts), step):
            out += scorer.score(prompts[start:start + step], texts[start:start + step])
            bar.update(len(texts[start:start + step]) // k)
    return np.array(out, dtype=float)


def bon_curve(scorers: Mapping[str, Scorer], data: str | os.PathLike, output_dir: str | os.PathLike,
              limit: int | None = None, seed: int = 0, show_progress: bool = True) -> dict[str, Any]:
    """Accuracy vs N (1..K) on a labelled candidates file for majority vote, the oracle and each named scorer;
    writes ``bon_curve.json`` and, with matplotlib, ``bon_curve.png`` in ``output_dir``. Rows are cut to the
    smallest candidate count K; a progress bar per scorer counts questions. Returns ``{"n", "kl" (the analytic
    best-of-N KL per N), "curves", "questions"}``."""
    from ..errors import DataFormatError

    rows = read_candidates(data)[:limit]
    unlabelled = next((r for r in rows if not r.get("correct")), None)
    if unlabelled is not None:
        raise DataFormatError(unlabelled["source"], "every item needs per-candidate labels for an accuracy curve", "correct")
    k = min(len(r["candidates"]) for r in rows)
    rows = [{**r, "candidates": r["candidates"][:k], "correct": r["correct"][:k], "answers": (r.get("answers") or [None] * k)[:k]}
            for r in rows]
    prompts = [r["prompt"] for r in rows for _ in range(k)]
    texts = [c for r in rows for c in r["candidates"]]
    rewards = {name: _score_with_progress(scorer, prompts, texts, k, f"scoring ({name})", show_progress).reshape(len(rows), k)
               for name, scorer in scorers.items()}
    ns = list(range(1, k + 1))
    curves = bon_accuracy_curve(np.array([r["correct"] for r in rows]), [r["answers"] for r in rows],
                                [r.get("gold") for r in rows], rewards, ns, seed=seed)
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    result = {"n": ns, "kl": [best_of_n_kl(n) for n in ns], "curves": curves, "questions": len(rows)}
    (out / "bon_curve.json").write_text(json.dumps(result, indent=2))
    _plot_curves(ns, curves, len(rows), out / "bon_curve.png")
    return result


def _plot_curves(ns: list[int], curves: dict[str, list[float]], questions: int, path: Path) -> None:
    plt = pyplot()
    if plt is None:  # plots are an extra (rewardlab[plots]); the JSON has the numbers
        return
    fig, ax = plt.subplots(figsize=(5, 4))
    for name, values in curves.items():
        ax.plot(ns, values, marker="o", label=name)
    ax.set(xlabel="N candidates", ylabel="accuracy", title=f"Best-of-N on {questions} questions")
    ax.set_xticks(ns)  # N is a count: no 1.5 or 2.5 ticks
    top = ax.secondary_xaxis("top", functions=(lambda n: n, lambda n: n))
    top.set_xticks(ns, [f"{best_of_n_kl(n):.2f}" for n in ns])
    top.set_xlabel("KL(best-of-N || base), nats (log N - (N - 1) / N)")
    ax.legend()
    save_figure(fig, path)
