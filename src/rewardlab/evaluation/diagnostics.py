"""Pathology diagnostics for any ``Scorer``: length bias, perturbation probes, distribution shift.

Flag rules (documented thresholds, reported with the numbers so users can apply their own):

* length bias: |Spearman(reward, length in words)| >= 0.5, or accuracy on pairs whose chosen
  reply is longer exceeds that on pairs whose chosen reply is shorter by >= 0.3;
* a probe: the perturbed reply outscores the original on >= 70% of items with a positive mean
  change (a scorer that ignores the perturbation sits at 0% or near 50% by noise).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError
from ..metrics import TiePolicy, pairwise_accuracy
from ..scoring.protocol import LengthChecked, Scorer
from .benchmark import BenchmarkItem, item_scores

__all__ = ["Probe", "distribution_shift", "ensemble_disagreement", "length_bias", "load_probes", "member_disagreement", "perturb",
           "run_probes"]

LENGTH_SPEARMAN_FLAG = 0.5
LENGTH_GAP_FLAG = 0.3
PROBE_FLAG = 0.7


def _words(text: str) -> int:
    return len(text.split())


def length_bias(scorer: Scorer, items: Sequence[BenchmarkItem], tie_policy: TiePolicy = "half") -> dict[str, Any]:
    """Reward-length correlation, accuracy split by which reply is longer, the always-longer and
    always-shorter baselines, and length-controlled accuracies (length-matched pairs; residual
    rewards after regressing reward on length).

    Two-sided: ``direction`` says which way a bias runs (``longer``: the model prefers longer replies,
    ``shorter``, or ``none``), from the sign of the Spearman correlation between each pair's reward
    margin and its length difference; ``flagged`` when that correlation, the reward-length correlation
    or the accuracy gap between chosen-longer and chosen-shorter pairs is large either way.
    """
    from scipy import stats

    pairs = [i for i in items if len(i.rejected) == 1]
    chosen, rejected_lists = item_scores(scorer, pairs)
    rejected = np.array([r[0] for r in rejected_lists])
    len_c = np.array([_words(i.chosen) for i in pairs], dtype=float)
    len_r = np.array([_words(i.rejected[0]) for i in pairs], dtype=float)
    rewards, lengths = np.concatenate([chosen, rejected]), np.concatenate([len_c, len_r])
    spearman = float(stats.spearmanr(rewards, lengths).statistic) if np.ptp(lengths) > 0 else float("nan")
    kendall = float(stats.kendalltau(rewards, lengths).statistic) if np.ptp(lengths) > 0 else float("nan")
    longer, shorter = len_c > len_r, len_c < len_r
    matched = np.abs(len_c - len_r) <= 0.1 * np.maximum(len_c, len_r)
    slope, intercept = np.polyfit(lengths, rewards, 1) if np.ptp(lengths) > 0 else (0.0, 0.0)
    resid_c, resid_r = chosen - (slope * len_c + intercept), rejected - (slope * len_r + intercept)
    acc = lambda mask: pairwise_accuracy(chosen[mask], rejected[mask], tie_policy) if mask.any() else float("nan")  # noqa: E731
    gap = acc(longer) - acc(shorter)
    diff = len_c - len_r
    margin_spearman = (float(stats.spearmanr(chosen - rejected, diff).statistic) if np.ptp(diff) > 0 and np.ptp(chosen - rejected) > 0
                       else float("nan"))
    flagged = bool(abs(spearman) >= LENGTH_SPEARMAN_FLAG or (np.isfinite(margin_spearman) and abs(margin_spearman) >= LENGTH_SPEARMAN_FLAG)
                   or (np.isfinite(gap) and abs(gap) >= LENGTH_GAP_FLAG))
    sign = margin_spearman if np.isfinite(margin_spearman) else (gap if np.isfinite(gap) else 0.0)
    return {
        "pairs": len(pairs), "spearman": spearman, "kendall": kendall,
        "accuracy": acc(np.ones_like(longer)), "accuracy_chosen_longer": acc(longer), "accuracy_chosen_shorter": acc(shorter),
        "pairs_chosen_longer": int(longer.sum()), "pairs_chosen_shorter": int(shorter.sum()),
        "always_longer_baseline": float(np.mean(np.where(len_c == len_r, 0.5, len_c > len_r))),
        "always_shorter_baseline": float(np.mean(np.where(len_c == len_r, 0.5, len_c < len_r))),
        "margin_length_spearman": margin_spearman, "accuracy_gap_longer_minus_shorter": gap,
        "direction": ("longer" if sign > 0 else "shorter") if flagged else "none",
        "accuracy_length_matched": acc(matched), "pairs_length_matched": int(matched.sum()),
        "accuracy_length_regressed": pairwise_accuracy(resid_c, resid_r, tie_policy),
        "reward_per_word": float(slope),
        "flagged": flagged,
        "scatter": {"length": lengths.tolist(), "reward": rewards.tolist()},
    }


@dataclass(frozen=True)
class Probe:
    """A data-driven perturbation: ``operation`` is ``append``, ``prepend`` or ``markdown``."""

    name: str
    description: str
    operation: str
    texts: tuple[str, ...]


def load_probes(folder: str | Path | None = None) -> list[Probe]:
    """Probe templates: the built-in ones, plus every ``*.json`` in ``folder``."""
    files = [resources.files("rewardlab.evaluation") / "probes" / name for name in
             ("verbosity.json", "format.json", "sycophancy.json", "keywords.json")]
    if folder is not None:
        files += sorted(Path(folder).glob("*.json"))
    probes = []
    for f in files:
        try:
            raw = json.loads(f.read_text())
            probe = Probe(raw["name"], raw.get("description", ""), raw["operation"], tuple(raw["texts"]))
        except (KeyError, json.JSONDecodeError, TypeError) as err:
            raise ConfigError(f"{f}: a probe needs 'name', 'operation' and a list 'texts' ({err})") from None
        if probe.operation not in ("append", "prepend", "markdown") or not probe.texts:
            raise ConfigError(f"{f}: 'operation' must be append, prepend or markdown, with at least one text")
        probes.append(probe)
    return probes


def perturb(probe: Probe, response: str, index: int = 0) -> str:
    """Apply ``probe`` to ``response``; texts rotate with ``index`` for variety.

    >>> perturb(Probe("f", "", "markdown", ("## Answer",)), "Bees make honey. They live in hives.")
    '## Answer\\n\\n**Bees make honey.**\\n\\n- They live in hives.'
    """
    text = probe.texts[index % len(probe.texts)]
    if probe.operation == "append":
        return f"{response} {text}"
    if probe.operation == "prepend":
        return f"{text} {response}"
    sentences = [s.strip() for s in re.split(r"(?<=[.!?])\s+", response.strip()) if s.strip()]
    if not sentences:
        return response
    body = f"**{sentences[0]}**" + ("\n\n" + "\n".join(f"- {s}" for s in sentences[1:]) if len(sentences) > 1 else "")
    return f"{text}\n\n{body}"


def run_probes(scorer: Scorer, items: Sequence[BenchmarkItem], probes: Sequence[Probe]) -> dict[str, Any]:
    """Per probe: mean reward change and the fraction of items where the perturbed reply wins.

    Applied to the chosen replies. Position bias needs a pairwise scorer (a judge) and is
    reported by the judge tools, not here.
    """
    prompts = [i.prompt for i in items]
    originals = [i.chosen for i in items]
    out = {}
    base = np.asarray(scorer.score(prompts, originals), dtype=float)
    for probe in probes:
        perturbed = [perturb(probe, r, k) for k, r in enumerate(originals)]
        # a perturbation that pushes a reply past the scorer's max length leaves that item out of this probe
        too_long = set(scorer.too_long(prompts, perturbed)) if isinstance(scorer, LengthChecked) else set()
        keep = [k for k in range(len(items)) if k not in too_long]
        changed = np.asarray(scorer.score([prompts[k] for k in keep], [perturbed[k] for k in keep]), dtype=float)
        delta = changed - base[keep]
        higher = float(np.mean(delta > 0)) if delta.size else float("nan")
        out[probe.name] = {"description": probe.description, "mean_change": float(delta.mean()) if delta.size else float("nan"),
                           "fraction_perturbed_higher": higher, "items": int(delta.size),
                           "flagged": bool(delta.size and higher >= PROBE_FLAG and delta.mean() > 0),
                           "skipped_too_long": len(too_long)}
    out["position"] = {"description": "needs a pairwise scorer (see the judge tools)", "applicable": False}
    return out


def distribution_shift(rewards_a: Sequence[float], rewards_b: Sequence[float]) -> dict[str, float]:
    """Compare two reward distributions (e.g. training data vs policy samples): mean/std shift and KS.

    >>> distribution_shift([0.0, 1.0, 2.0], [0.0, 1.0, 2.0])["ks_statistic"]
    0.0
    """
    from scipy import stats

    a, b = np.asarray(rewards_a, dtype=float), np.asarray(rewards_b, dtype=float)
    ks = stats.ks_2samp(a, b)
    return {"mean_a": float(a.mean()), "mean_b": float(b.mean()), "std_a": float(a.std()), "std_b": float(b.std()),
            "mean_shift": float(b.mean() - a.mean()), "std_ratio": float(b.std() / a.std()) if a.std() else float("nan"),
            "ks_statistic": float(ks.statistic), "ks_pvalue": float(ks.pvalue)}


def ensemble_disagreement(scorers: Sequence[Scorer], prompts: Sequence[Any], responses: Sequence[str]) -> dict[str, Any]:
    """How much reward models disagree on the same responses (a proxy for being out of distribution).

    Each member's rewards are z-scored over these responses (members use different scales); per
    item we take the standard deviation across members, and report its mean and the mean
    pairwise Spearman correlation between members. Needs at least two scorers.

    >>> from rewardlab.scoring.protocol import FunctionScorer
    >>> length = FunctionScorer(lambda prompt, response: float(len(response)))
    >>> ensemble_disagreement([length, length], ["q"] * 3, ["a", "bb", "ccc"])["mean_item_std"]
    0.0
    """
    if len(scorers) < 2:
        raise ConfigError("ensemble disagreement needs at least two scorers")
    return member_disagreement(np.array([np.asarray(s.score(list(prompts), list(responses)), dtype=float) for s in scorers]))


def member_disagreement(rewards: np.ndarray) -> dict[str, Any]:
    """:func:`ensemble_disagreement` from member rewards ``(K, N)`` (e.g. an ``EnsembleScorer``'s ``raw_members``).

    >>> member_disagreement(np.array([[0.0, 1.0, 2.0], [2.0, 1.0, 0.0]]))["mean_pairwise_spearman"]
    -1.0
    """
    from scipy import stats

    z = (rewards - rewards.mean(1, keepdims=True)) / np.where(rewards.std(1, keepdims=True) > 0, rewards.std(1, keepdims=True), 1.0)
    item_std = z.std(0)
    pairs = [(i, j) for i in range(rewards.shape[0]) for j in range(i + 1, rewards.shape[0])]
    rho = [float(stats.spearmanr(rewards[i], rewards[j]).statistic) for i, j in pairs]
    return {"members": int(rewards.shape[0]), "items": int(rewards.shape[1]), "mean_item_std": float(item_std.mean()),
            "max_item_std": float(item_std.max()), "mean_pairwise_spearman": float(np.nanmean(rho)),
            "item_std": item_std.tolist()}
