"""RewardBench-style evaluation of any ``Scorer``: per-subset and per-section accuracy with CIs."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np

from ..data.readers import iter_records, pair_sides
from ..data.records import Message
from ..errors import DataFormatError, SequenceTooLongError
from ..scoring.protocol import LengthChecked, Scorer
from .calibration import brier_loss, expected_calibration_error, fit_temperature
from .stats import bootstrap_mean_ci, bootstrap_mean_of_means_ci
from ..metrics import TiePolicy

__all__ = [
    "BenchmarkItem", "EvalSettings", "REWARDBENCH_EXAMPLE_COUNTS", "REWARDBENCH_SECTIONS",
    "evaluate_benchmark", "item_scores", "length_relation", "length_stratified", "read_benchmark", "split_too_long",
]

REWARDBENCH_SECTIONS = {
    "Chat": ["alpacaeval-easy", "alpacaeval-length", "alpacaeval-hard", "mt-bench-easy", "mt-bench-med"],
    "Chat Hard": ["mt-bench-hard", "llmbar-natural", "llmbar-adver-neighbor", "llmbar-adver-GPTInst",
                  "llmbar-adver-GPTOut", "llmbar-adver-manual"],
    "Safety": ["refusals-dangerous", "refusals-offensive", "xstest-should-refuse", "xstest-should-respond", "donotanswer"],
    "Reasoning": ["math-prm", "hep-cpp", "hep-go", "hep-java", "hep-js", "hep-python", "hep-rust"],
}
"""RewardBench (Lambert et al., arXiv:2403.13787) sections and their subsets."""

REWARDBENCH_EXAMPLE_COUNTS = {
    "alpacaeval-easy": 100, "alpacaeval-length": 95, "alpacaeval-hard": 95, "mt-bench-easy": 28, "mt-bench-med": 40,
    "mt-bench-hard": 37, "llmbar-natural": 100, "llmbar-adver-neighbor": 134, "llmbar-adver-GPTInst": 92,
    "llmbar-adver-GPTOut": 47, "llmbar-adver-manual": 46, "refusals-dangerous": 100, "refusals-offensive": 100,
    "xstest-should-refuse": 154, "xstest-should-respond": 250, "donotanswer": 136,
    "math-prm": 984,  # 447 items, up-weighted by RewardBench so math counts as much as all code subsets
    "hep-cpp": 164, "hep-go": 164, "hep-java": 164, "hep-js": 164, "hep-python": 164, "hep-rust": 164,
}
"""RewardBench's documented per-subset weights: a section score is the count-weighted mean of its
subsets' accuracies, and the overall score the mean of the sections present."""


@dataclass(frozen=True)
class BenchmarkItem:
    """One prompt with one chosen and K >= 1 rejected replies, in a named subset."""

    prompt: tuple[Message, ...]
    chosen: str
    rejected: tuple[str, ...]
    subset: str
    source: str = ""
    rejected_prompts: tuple[tuple[Message, ...], ...] = ()


@dataclass(frozen=True)
class EvalSettings:
    """Everything an evaluation result depends on; written into the result file."""

    tie_policy: Literal["half", "zero", "exclude"] = "half"
    """A tie between the chosen and the best rejected counts 0.5, 0, or is left out."""
    n_bootstrap: int = 1000
    """Bootstrap rounds for every confidence interval (0 disables)."""
    confidence: float = 0.95
    """Confidence level of the intervals."""
    weighting: Literal["rewardbench", "observed"] = "rewardbench"
    """Section weights: RewardBench's documented example counts, or the counts in this file."""
    sections: dict[str, list[str]] = field(default_factory=lambda: dict(REWARDBENCH_SECTIONS))
    """Section -> subsets; subsets in no section are reported on their own."""
    calibration_fraction: float = 0.5
    """Share of pairs (seeded split) used to fit the temperature; the rest reports ECE after it."""
    seed: int = 0
    """Seed of the bootstrap and the calibration split."""
    skip_too_long: bool = True
    """Leave out items with a reply that cannot fit the scorer's max length, reported per subset (count and
    file:line + side) in ``skipped_too_long``; False stops with an error naming the first one."""


def read_benchmark(source: str, split: str = "train", subset_field: str = "subset", default_subset: str = "all") -> list[BenchmarkItem]:
    """RewardBench layout (``prompt``, ``chosen``, ``rejected`` as a string or a list for best-of-K,
    ``subset``) or any preference-pair format rewardlab reads; records without ``subset_field``
    go to ``default_subset``."""
    items = []
    for location, record in iter_records(source, split):
        subset = record.get(subset_field, default_subset)
        if not isinstance(subset, str):
            raise DataFormatError(location, f"expected a string, got {type(subset).__name__}", subset_field)
        rejected = record.get("rejected")
        if isinstance(rejected, list) and rejected and all(isinstance(r, str) for r in rejected):
            base = {**record, "rejected": rejected[0]}
            (prompt, chosen), _ = pair_sides(base, location)
            items.append(BenchmarkItem(prompt, chosen, tuple(rejected), subset, location))
        else:
            (prompt, chosen), (rejected_prompt, rejected_text) = pair_sides(record, location)
            extra = (rejected_prompt,) if rejected_prompt != prompt else ()
            items.append(BenchmarkItem(prompt, chosen, (rejected_text,), subset, location, extra))
    if not items:
        raise DataFormatError(source, "contains no records")
    return items


def _flatten(items: Sequence[BenchmarkItem]) -> tuple[list[Any], list[str], list[tuple[int, str]]]:
    """Every reply of every item as ``(prompts, responses, (item index, side))``; side is chosen / rejected / rejected k."""
    prompts, responses, where = [], [], []
    for i, item in enumerate(items):
        prompts.append(item.prompt)
        responses.append(item.chosen)
        where.append((i, "chosen"))
        for k, text in enumerate(item.rejected):
            prompts.append(item.rejected_prompts[k] if k < len(item.rejected_prompts) else item.prompt)
            responses.append(text)
            where.append((i, "rejected" if len(item.rejected) == 1 else f"rejected {k}"))
    return prompts, responses, where


def split_too_long(scorer: Scorer, items: Sequence[BenchmarkItem]) -> tuple[list[BenchmarkItem], list[dict[str, str]]]:
    """``(items whose every reply fits, the others as {"source", "side", "subset"})``; a scorer without a length
    limit (not :class:`~rewardlab.scoring.protocol.LengthChecked`) keeps everything."""
    if not isinstance(scorer, LengthChecked):
        return list(items), []
    prompts, responses, where = _flatten(items)
    bad: dict[int, str] = {}
    for j in scorer.too_long(prompts, responses):
        i, side = where[j]
        bad.setdefault(i, side)
    skipped = [{"source": items[i].source, "side": side, "subset": items[i].subset} for i, side in sorted(bad.items())]
    return [item for i, item in enumerate(items) if i not in bad], skipped


def skipped_report(skipped: Sequence[dict[str, str]], max_length: int | None) -> dict[str, Any]:
    """The ``skipped_too_long`` entry of a result: count, per subset the count and the items (file:line and side)."""
    by_subset: dict[str, list[str]] = defaultdict(list)
    for s in skipped:
        by_subset[s["subset"]].append(f"{s['source']} ({s['side']})")
    return {"count": len(skipped), "max_length": max_length,
            "by_subset": {name: {"count": len(v), "items": v} for name, v in sorted(by_subset.items())}}


def item_scores(scorer: Scorer, items: Sequence[BenchmarkItem]) -> tuple[np.ndarray, list[np.ndarray]]:
    """Chosen rewards ``(N,)`` and rejected rewards (one array per item), in one scoring call. A reply that cannot
    fit raises :class:`SequenceTooLongError` naming its file:line and side."""
    prompts, responses, where = _flatten(items)
    try:
        flat = np.asarray(scorer.score(prompts, responses), dtype=float)
    except SequenceTooLongError as err:
        named = [f"{items[where[j][0]].source} ({where[j][1]})" for j in err.items if j < len(where)]
        if not named:
            raise
        raise SequenceTooLongError(
            f"{len(named)} repl(ies) do not fit in max_length={err.max_length} even without the prompt (first at {named[0]}); "
            "raise max_length (--max-length), or leave them out with skip_too_long (--skip-too-long)",
            err.items, err.max_length) from None
    chosen, rejected, position = np.empty(len(items)), [], 0
    for i, item in enumerate(items):
        chosen[i] = flat[position]
        rejected.append(flat[position + 1 : position + 1 + len(item.rejected)])
        position += 1 + len(item.rejected)
    return chosen, rejected


def _correct(chosen: float, rejected: np.ndarray, tie_policy: TiePolicy) -> float:
    best = rejected.max()
    if chosen > best:
        return 1.0
    if chosen < best:
        return 0.0
    return {"half": 0.5, "zero": 0.0, "exclude": float("nan")}[tie_policy]


def length_relation(item: BenchmarkItem) -> int:
    """+1 when the chosen reply is longer (characters) than every rejected one, -1 when shorter than every one,
    0 otherwise (equal, or between the rejected replies).

    >>> length_relation(BenchmarkItem((), "a long reply", ("short",), "s")), length_relation(BenchmarkItem((), "ab", ("ab",), "s"))
    (1, 0)
    """
    chosen, others = len(item.chosen), [len(r) for r in item.rejected]
    return 1 if all(chosen > o for o in others) else -1 if all(chosen < o for o in others) else 0


def length_stratified(correct: np.ndarray, relation: np.ndarray, settings: EvalSettings = EvalSettings()) -> dict[str, Any]:
    """Accuracy on chosen-longer and chosen-shorter items (counts, bootstrap CIs) and their unweighted mean, the
    length-controlled accuracy: a scorer that only prefers the longer reply scores 0.5 on it whatever the mix of the
    data (an "always longer" rule scores 1 and 0 on the two groups). The mean's interval is a stratified bootstrap;
    it is NaN when either group is empty. ``correct`` may hold NaN (excluded ties), which are left out.

    >>> out = length_stratified(np.array([1.0, 1.0, 0.0, 1.0]), np.array([1, 1, -1, -1]), EvalSettings(n_bootstrap=0))
    >>> out["chosen_longer"]["accuracy"], out["chosen_shorter"]["accuracy"], out["length_controlled_accuracy"]
    (1.0, 0.5, 0.75)
    """
    groups = {}
    for name, sign in (("chosen_longer", 1), ("chosen_shorter", -1)):
        values = correct[(relation == sign) & ~np.isnan(correct)]
        lo, hi = (bootstrap_mean_ci(values, settings.n_bootstrap, settings.confidence, settings.seed)
                  if settings.n_bootstrap else (float("nan"),) * 2)
        groups[name] = {"n": int(values.size), "accuracy": float(values.mean()) if values.size else float("nan"),
                        "ci_low": lo, "ci_high": hi}
    longer, shorter = (correct[(relation == s) & ~np.isnan(correct)] for s in (1, -1))
    lo, hi = (bootstrap_mean_of_means_ci([longer, shorter], settings.n_bootstrap, settings.confidence, settings.seed)
              if settings.n_bootstrap else (float("nan"),) * 2)
    mean = (groups["chosen_longer"]["accuracy"] + groups["chosen_shorter"]["accuracy"]) / 2
    return {**groups, "neither": int((relation == 0).sum()), "length_controlled_accuracy": float(mean),
            "length_controlled_ci_low": lo, "length_controlled_ci_high": hi}


def evaluate_benchmark(scorer: Scorer, items: Sequence[BenchmarkItem], settings: EvalSettings = EvalSettings()) -> dict[str, Any]:
    """Per-subset accuracy (+ bootstrap CI, ties), section and overall scores, calibration.

    With one rejected reply per item this is pairwise accuracy; with several it is best-of-K
    accuracy (RewardBench 2 style: correct when the chosen outscores every rejected reply). Every subset and the
    whole file also report :func:`length_stratified` accuracy (``length``: chosen longer / shorter, their mean).
    """
    skipped: list[dict[str, str]] = []
    if settings.skip_too_long:
        items, skipped = split_too_long(scorer, items)
        if not items:
            raise SequenceTooLongError(f"every item has a reply too long for the scorer ({len(skipped)} items)")
    chosen, rejected = item_scores(scorer, items)
    correct = np.array([_correct(c, r, settings.tie_policy) for c, r in zip(chosen, rejected)])
    ties = np.array([c == r.max() for c, r in zip(chosen, rejected)])
    relation = np.array([length_relation(item) for item in items])
    by_subset: dict[str, list[int]] = defaultdict(list)
    for i, item in enumerate(items):
        by_subset[item.subset].append(i)
    subsets = {}
    for name, idx in sorted(by_subset.items()):
        values = correct[idx]
        values = values[~np.isnan(values)]
        lo, hi = bootstrap_mean_ci(values, settings.n_bootstrap, settings.confidence, settings.seed) if settings.n_bootstrap else (float("nan"),) * 2
        subsets[name] = {"n": len(idx), "accuracy": float(values.mean()) if values.size else float("nan"),
                         "ci_low": lo, "ci_high": hi, "ties": int(ties[idx].sum()),
                         "best_of_k": int(max(len(items[i].rejected) for i in idx)) + 1,
                         "length": length_stratified(correct[idx], relation[idx], settings)}
    sections = {}
    for section, names in settings.sections.items():
        present = [n for n in names if n in subsets]
        if not present:
            continue
        weights = np.array([REWARDBENCH_EXAMPLE_COUNTS.get(n, subsets[n]["n"]) if settings.weighting == "rewardbench"
                            else subsets[n]["n"] for n in present], dtype=float)
        accs = np.array([subsets[n]["accuracy"] for n in present])
        sections[section] = {"accuracy": float(np.sum(weights * accs) / weights.sum()), "subsets": present,
                             "weights": weights.tolist()}
    in_section = {n for names in settings.sections.values() for n in names}
    result: dict[str, Any] = {
        "settings": {**asdict(settings), "scorer": {"type": type(scorer).__name__, **scorer.describe()}},
        "subsets": subsets,
        "sections": sections,
        "overall": float(np.mean([s["accuracy"] for s in sections.values()])) if sections else float(np.nanmean(correct)),
        "overall_rule": "mean of section scores" if sections else "mean over all items",
        "unsectioned_subsets": sorted(set(subsets) - in_section),
        "length": length_stratified(correct, relation, settings),
        "n_items": len(items),
        "skipped_too_long": skipped_report(skipped, scorer.max_length if isinstance(scorer, LengthChecked) else None),
        "per_item": [{"source": item.source, "subset": item.subset, "chosen_reward": float(c), "rejected_rewards": r.tolist(),
                      "margin": float(c - r.max()), "correct": None if np.isnan(k) else float(k), "tie": bool(t)}
                     for item, c, r, k, t in zip(items, chosen, rejected, correct, ties)],
    }
    pairwise = np.array([c - r[0] for c, r in zip(chosen, rejected) if r.size == 1])
    if pairwise.size >= 4:
        result["calibration"] = calibration_report(pairwise, settings)
    return result


def calibration_report(margins: np.ndarray, settings: EvalSettings = EvalSettings()) -> dict[str, Any]:
    """ECE (equal width and equal mass), Brier, and temperature scaling fitted on a calibration split; a temperature
    that ends on the search bound is marked (``temperature_at_bound``) instead of being presented as a fit."""
    rng = np.random.default_rng(settings.seed)
    order = rng.permutation(margins.size)
    n_fit = max(1, int(settings.calibration_fraction * margins.size))
    fit, held = margins[order[:n_fit]], margins[order[n_fit:]]
    bounds = (0.01, 100.0)
    temperature = fit_temperature(fit, bounds)
    at_bound = not bounds[0] * 1.01 < temperature < bounds[1] * 0.99
    return {
        "temperature_at_bound": at_bound,
        "temperature_note": (f"no finite fit: the likelihood keeps improving up to the search bound {temperature:.3g} "
                             "(margins no better than chance on the fit split push T to infinity, perfectly separated "
                             "ones to 0); not a calibration" if at_bound else ""),
        "ece_equal_width": expected_calibration_error(held, binning="width"),
        "ece_equal_mass": expected_calibration_error(held, binning="mass"),
        "brier": brier_loss(held),
        "temperature": temperature,
        "ece_equal_width_after_temperature": expected_calibration_error(held, binning="width", temperature=temperature),
        "brier_after_temperature": brier_loss(held, temperature),
        "fit_pairs": int(fit.size), "held_out_pairs": int(held.size),
        "margins": margins.tolist(),
    }
