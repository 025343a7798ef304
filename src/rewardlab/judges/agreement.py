"""Agreement statistics for judges and humans: pure functions over label sequences.

Labels are ``"A"``, ``"B"``, ``"tie"``, or ``None`` (no verdict); pairs with a ``None`` on
either side are left out and counted.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..metrics import cohen_kappa, fleiss_kappa, majority_vote

__all__ = ["agreement_summary", "cohen_kappa", "fleiss_kappa", "majority_vote", "verbosity_curve", "self_preference"]

LABELS = ("A", "B", "tie")
# cohen_kappa, fleiss_kappa and majority_vote live in rewardlab.metrics (data-quality tools use them too)


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
            score = np.mean([{"A": 1.0, "B": 0.0, "tie": 0.5}[str(winners[i])] for i in idx])
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
