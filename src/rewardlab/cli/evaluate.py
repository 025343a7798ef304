"""``rewardlab`` eval, diagnose and ratings: each subcommand calls the Python API one to one."""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ..errors import RewardlabError
from ..jsonsafe import dumps
from .common import add_config_flags, add_scorer_flags, build_scorer

__all__ = ["register"]


def _cmd_eval(args: argparse.Namespace) -> int:
    from ..evaluation.benchmark import REWARDBENCH_SECTIONS, EvalSettings, evaluate_benchmark, read_benchmark
    from ..evaluation.report import write_report

    items = read_benchmark(args.data, args.split, args.subset_field)
    _warn_if_training_data(args.model, args.data, args.split)
    settings = EvalSettings(args.tie_policy, args.bootstrap, weighting=args.weighting,
                            sections=args.sections or dict(REWARDBENCH_SECTIONS), seed=args.seed, skip_too_long=args.skip_too_long)
    scorer = build_scorer(args, progress=True)
    print(f"[rewardlab] evaluating {len(items)} items ({sum(1 + len(i.rejected) for i in items)} replies)", file=sys.stderr)
    results = {"benchmark": evaluate_benchmark(scorer, items, settings), "data": args.data}
    bench = results["benchmark"]
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    with (out / "items.jsonl").open("w") as handle:  # one row per item: auditable, joinable on source
        for row in bench.pop("per_item"):
            handle.write(dumps(row) + "\n")
    if args.save_temperature:
        from ..models.io import update_metadata

        if "calibration" not in bench or not Path(args.model).is_dir():
            raise RewardlabError("--save-temperature needs a local reward-model folder and pairwise items to fit on")
        if bench["calibration"].get("temperature_at_bound"):
            raise RewardlabError(f"--save-temperature: {bench['calibration']['temperature_note']}; nothing saved")
        update_metadata(args.model, temperature=bench["calibration"]["temperature"])
        bench["temperature_saved_to"] = str(Path(args.model) / "rewardlab.json")
    report = write_report(results, args.output_dir, title=f"rewardlab eval: {args.model}")
    length = bench["length"]
    print(dumps({"overall": bench["overall"], "sections": {k: v["accuracy"] for k, v in bench["sections"].items()},
                 "length_controlled": length["length_controlled_accuracy"],
                 "chosen_longer": length["chosen_longer"]["accuracy"], "chosen_shorter": length["chosen_shorter"]["accuracy"],
                 "subsets": {k: v["accuracy"] for k, v in bench["subsets"].items()}, "skipped_too_long": bench["skipped_too_long"]["count"],
                 "items": str(out / "items.jsonl"), "report": str(report)}))
    return 0


def _warn_if_training_data(model: str, data: str, split: str) -> None:
    """Say so when the evaluation file is the one the model was trained on (its run recorded the data's fingerprint)."""
    import json

    from ..data.token_store import source_fingerprint

    run = Path(model) / "run_config.json"
    if not run.is_file():
        return
    recorded = json.loads(run.read_text())
    trained_on = recorded.get("data_fingerprint")
    now = source_fingerprint(data, split)
    if trained_on == now or (isinstance(trained_on, dict) and trained_on.get("path") and trained_on.get("path") == now.get("path")):
        held = recorded.get("eval_fraction")
        print(f"[rewardlab] warning: {data} is the file {model} was trained on; accuracy on it overstates the model "
              f"(only {held:.0%} of it was held out, and eval reads all of it)" if isinstance(held, (int, float)) else
              f"[rewardlab] warning: {data} is the file {model} was trained on; accuracy on it overstates the model",
              file=sys.stderr)


def _cmd_diagnose(args: argparse.Namespace) -> int:
    from ..evaluation.benchmark import read_benchmark
    from ..evaluation.diagnostics import distribution_shift, length_bias, load_probes, run_probes
    from ..evaluation.report import write_report

    from ..evaluation.benchmark import skipped_report, split_too_long
    from ..scoring.protocol import LengthChecked, MemberScorer, WrappedScorer

    scorer = build_scorer(args, progress=True)
    items = read_benchmark(args.data, args.split)
    print(f"[rewardlab] diagnosing on {len(items)} pairs: length bias, probes"
          + (", distribution shift" if args.compare else ""), file=sys.stderr)
    skipped: list[dict[str, str]] = []
    if args.skip_too_long:
        items, skipped = split_too_long(scorer, items)
    results: dict[str, Any] = {"data": args.data, "length_bias": length_bias(scorer, items, args.tie_policy),
                               "probes": run_probes(scorer, items, load_probes(args.probes)),
                               "skipped_too_long": skipped_report(skipped, scorer.max_length if isinstance(scorer, LengthChecked) else None)}
    if isinstance(scorer, WrappedScorer):  # a length control: the length correlation before it, beside after
        results["length_bias_without_length_control"] = length_bias(scorer.scorer, items, args.tie_policy)
    if args.compare:
        other = read_benchmark(args.compare, args.split)
        mine = scorer.score([i.prompt for i in items], [i.chosen for i in items])
        theirs = scorer.score([i.prompt for i in other], [i.chosen for i in other])
        results["shift"] = distribution_shift(mine, theirs)
    inner = scorer.scorer if isinstance(scorer, WrappedScorer) else scorer
    if isinstance(inner, MemberScorer):  # an ensemble: how much the members disagree on these replies
        from ..evaluation.diagnostics import member_disagreement

        results["ensemble"] = member_disagreement(inner.raw_members([i.prompt for i in items], [i.chosen for i in items]))
    report = write_report(results, args.output_dir, title=f"rewardlab diagnose: {args.model}")
    flags = {"length_bias": results["length_bias"]["flagged"],
             **{k: v["flagged"] for k, v in results["probes"].items() if "flagged" in v}}
    print(dumps({"flagged": flags, "report": str(report)}))
    return 0


def _cmd_ratings(args: argparse.Namespace) -> int:
    from ..evaluation.ratings import rate_battles, read_battles
    from ..evaluation.report import write_report

    results = rate_battles(read_battles(args.battles), args.baseline, args.bootstrap, args.seed)
    report = write_report(results, args.output_dir, title="rewardlab ratings")
    for row in results["ratings"]["bradley_terry"]:
        print(f"  {row['name']}: BT rating {row['rating']:.1f} (95% CI {row['lower']:.1f} - {row['upper']:.1f})", file=sys.stderr)
    for model, row in (results.get("win_rates") or {}).get("models", {}).items():
        lc = row.get("length_controlled_win_rate")
        print(f"  {model} vs {args.baseline}: win rate {row['win_rate']:.3f} +- {row['standard_error']:.3f}"
              + (f", length-controlled {lc:.3f}" if lc is not None else "") + f" ({row['battles']} battles)", file=sys.stderr)
    print(dumps({"ratings": results["ratings"]["bradley_terry"], "win_rates": results.get("win_rates"), "report": str(report)}))
    return 0


@dataclass(frozen=True, kw_only=True)
class EvalOptions:
    """Options of ``rewardlab eval``: RewardBench-style accuracy per subset and section, with CIs and
    calibration."""

    data: str
    """RewardBench layout (prompt, chosen, rejected [list for best-of-K], subset) or any pair format"""
    output_dir: str
    """results.json, report.md and plots go here"""
    split: str = "train"
    """split when --data is a datasets name"""
    subset_field: str = "subset"
    """the field naming each record's subset (default: subset)"""
    tie_policy: Literal["half", "zero", "exclude"] = "half"
    """how a tie between the chosen and the best rejected reply counts: 0.5, 0, or left out"""
    bootstrap: int = 1000
    """bootstrap rounds per interval (0: none)"""
    weighting: Literal["rewardbench", "observed"] = "rewardbench"
    """section weights: RewardBench's documented example counts, or this file's counts"""
    seed: int = 0
    """seed of the bootstrap and the calibration split"""
    save_temperature: bool = False
    """write the fitted calibration temperature into the model's rewardlab.json"""
    sections: dict[str, list[str]] | None = None
    """section -> subsets, e.g. '{"Safety": ["hh-harmless"], "Chat": ["pandalm"]}' (default: RewardBench's)"""
    skip_too_long: bool = True
    """leave out items with a reply longer than --max-length and report them per subset (count, file:line and side)
    in results.json; --no-skip-too-long stops at the first (default: skip and report)"""


@dataclass(frozen=True, kw_only=True)
class DiagnoseOptions:
    """Options of ``rewardlab diagnose``: length bias, perturbation probes and distribution shift of a reward
    model."""

    data: str
    """preference pairs to probe"""
    output_dir: str
    """results.json, report.md and plots go here"""
    split: str = "train"
    """split when --data is a datasets name"""
    probes: str | None = None
    """a folder of extra probe templates (*.json), added to the built-in ones"""
    compare: str | None = None
    """a second set of pairs: compare the reward distributions of their chosen replies"""
    tie_policy: Literal["half", "zero", "exclude"] = "half"
    """how a tie counts in accuracies: 0.5, 0, or left out"""
    skip_too_long: bool = True
    """leave out pairs with a reply longer than --max-length and report them (default: skip and report)"""


@dataclass(frozen=True, kw_only=True)
class RatingsOptions:
    """Options of ``rewardlab ratings``: Bradley-Terry and Elo ratings (+ win rates) from pairwise battles."""

    battles: str
    """jsonl of {model_a, model_b, winner: model_a|model_b|tie, length_a?, length_b?}"""
    output_dir: str
    """results.json and report.md go here"""
    baseline: str | None = None
    """report each model's win rate (and length-controlled win rate) against this one"""
    bootstrap: int = 1000
    """bootstrap rounds for the rating intervals"""
    seed: int = 0
    """seed of the bootstrap"""


def register(sub: Any) -> None:
    p = sub.add_parser("eval", help="RewardBench-style accuracy per subset and section, with CIs and calibration")
    add_scorer_flags(p)
    add_config_flags(p, EvalOptions, defaults=True)
    p.set_defaults(func=_cmd_eval)

    p = sub.add_parser("diagnose", help="length bias, perturbation probes and distribution shift of a reward model")
    add_scorer_flags(p)
    add_config_flags(p, DiagnoseOptions, defaults=True)
    p.set_defaults(func=_cmd_diagnose)

    p = sub.add_parser("ratings", help="Bradley-Terry and Elo ratings (+ win rates) from pairwise battles")
    add_config_flags(p, RatingsOptions, defaults=True)
    p.set_defaults(func=_cmd_ratings)
