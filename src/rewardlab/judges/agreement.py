"""Agreement statistics for judges and humans: pure functions over label sequences.

Labels are ``"A"``, ``"B"``, ``"tie"``, or ``None`` (no verdict); pairs with a ``None`` on
either side are left out and counted.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["agreement_summary", "cohen_kappa", "fleiss_kappa", "majority_vote", "verbosity_curve", "self_preference"]

LABELS = ("A", "B", "tie")


def majority_vote(votes: Sequence[str | None]) -> str | None:
    """The label with a strict plurality among non-None votes; None on a tie between labels.

    >>> majority_vote(["A", "A", "tie"]), majority_vote(["A", "B"]), majority_vote([None, "B"])
    ('A', None, 'B')
    """
    counts = Counter(v for v in votes if v is not None).most_common()
    if not counts or (len(counts) > 1 and counts[0][1] == counts[1][1]):
        return None
    return counts[0][0]


def cohen_kappa(a: Sequence[str | None], b: Sequence[str | None]) -> float:
    """Cohen's kappa between two raters over items both labelled; ``nan`` if undefined.

    >>> cohen_kappa(["A", "B", "A", "B"], ["A", "B", "A", "B"])
    1.0
    >>> round(cohen_kappa(["A", "A", "B", "B"], ["A", "B", "A", "B"]), 3)
    0.0
    """
    pairs = [(x, y) for x, y in zip(a, b) if x is not None and y is not None]
    if not pairs:
        return float("nan")
    labels = sorted({x for p in pairs for x in p})
    observed = sum(x == y for x, y in pairs) / len(pairs)
    ca, cb = Counter(x for x, _ in pairs), Counter(y for _, y in pairs)
    expected = sum(ca[label] * cb[label] for label in labels) / len(pairs) ** 2
    return float("nan") if expected == 1 else float((observed - expected) / (1 - expected))


def fleiss_kappa(ratings: Sequence[Sequence[str | None]]) -> float:
    """Fleiss' kappa for items each rated by the same number of raters (None votes dropped per item;
    items left with fewer than 2 votes are skipped).

    >>> fleiss_kappa([["A", "A", "A"], ["B", "B", "B"]])
    1.0
    """
    rows = [[v for v in item if v is not None] for item in ratings]
    rows = [r for r in rows if len(r) >= 2]
    if not rows:
        return float("nan")
    labels = sorted({v for r in rows for v in r})
    counts = np.array([[r.count(label) for label in labels] for r in rows], dtype=float)
    n = counts.sum(1)
    p_item = ((counts * (counts - 1)).sum(1) / (n * (n - 1))).mean()
    p_label = (counts / n[:, None]).mean(0)
    expected = (p_label**2).sum()
    return float("nan") if expected == 1 else float((p_item - expected) / (1 - expected))


def agreement_summary(judge: Sequence[str | None], humans: Sequence[Sequence[str | None]]) -> dict[str, Any]:
    """Judge-vs-human-majority agreement and kappa, human-human agreement, tie rates, coverage."""
    majority = [majority_vote(h) for h in humans]
    both = [(j, m) for j, m in zip(judge, majority) if j is not None and m is not None]
    human_pairs = [(h[i], h[k]) for h in humans for i in range(len(h)) for k in range(i + 1, len(h))
                   if h[i] is not None and h[k] is not None]
    judged = [j for j in judge if j is not None]
    return {
        "items": len(judge),
        "judge_unparsed": sum(j is None for j in judge),
        "judge_human_agreement": float(np.mean([j == m for j, m in both])) if both else float("nan"),
        "judge_human_kappa": cohen_kappa([j for j, _ in both], [m for _, m in both]),
        "compared_items": len(both),
        "human_human_agreement": float(np.mean([x == y for x, y in human_pairs])) if human_pairs else float("nan"),
        "human_fleiss_kappa": fleiss_kappa(humans),
        "judge_tie_rate": float(np.mean([j == "tie" for j in judged])) if judged else float("nan"),
        "human_majority_tie_rate": float(np.mean([m == "tie" for m in majority if m is not None])) if any(majority) else float("nan"),
    }


def verbosity_curve(winners: Sequence[str | None], length_a: Sequence[int], length_b: Sequence[int],
                    bins: Sequence[float] = (-np.inf, -100, -20, 20, 100, np.inf)) -> list[dict[str, float]]:
    """Win rate of response A (ties count 0.5) by length difference A - B (words), per bin."""
    diff = np.asarray(length_a, dtype=float) - np.asarray(length_b, dtype=float)
    out = []
    for lo, hi in zip(bins[:-1], bins[1:]):
        idx = [i for i in range(len(winners)) if lo <= diff[i] < hi and winners[i] is not None]
        if idx:
            score = np.mean([{"A": 1.0, "B": 0.0, "tie": 0.5}[winners[i]] for i in idx])
            out.append({"low": float(lo), "high": float(hi), "a_win_rate": float(score), "n": len(idx)})
    return out


FAMILIES = ("gpt", "claude", "llama", "mistral", "mixtral", "qwen", "gemma", "phi", "smollm", "deepseek", "falcon", "bloom", "pandalm")


def self_preference(judge_model: str, candidate_models: Sequence[str]) -> list[str]:
    """Candidates whose model name shares a family with the judge's (self-preference risk).

    >>> self_preference("gpt-4o", ["gpt-3.5-turbo", "llama-7b"])
    ['gpt-3.5-turbo']
    """
    families = {f for f in FAMILIES if f in judge_model.lower()}
    return [c for c in candidate_models if any(f in c.lower() for f in families)]
