"""``rewardlab data``: preference-data quality before any training run (agreement, aggregation, length balance,
duplicates, contamination, a data card); each subcommand calls the Python API one to one."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ..data.readers import atomic_write
from ..jsonsafe import dumps
from .common import add_config_flags

__all__ = ["register"]


def _pairs(path: str) -> Any:
    from ..data.readers import DropReport, iter_preference_pairs

    report = DropReport()
    return (p for p in iter_preference_pairs(path, "train", None, report)), report


def _cmd_agreement(args: argparse.Namespace) -> int:
    from ..data.annotations import agreement_report, read_annotations

    report = agreement_report(read_annotations(args.annotations), args.levels.split(","), args.bootstrap, args.seed)
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "agreement.json").write_text(dumps(report, indent=2))
    ci = report["intervals"]
    for key in [k for k in report if k in ci]:
        print(f"  {key}: {report[key]:.3f} (95% CI {ci[key][0]:.3f} - {ci[key][1]:.3f})", file=sys.stderr)
    print(dumps({k: v for k, v in report.items() if k != "item_entropy_bits"}))
    return 0


def _cmd_aggregate(args: argparse.Namespace) -> int:
    from ..data.annotations import dawid_skene, majority_labels, read_annotations

    ann = read_annotations(args.annotations)
    from ..data.readers import refuse_overwriting_input

    refuse_overwriting_input(args.output, args.annotations)
    with atomic_write(args.output) as handle:
        if args.method == "majority":
            for item, source, label in zip(ann.items, ann.sources, majority_labels(ann, args.tie_policy)):
                handle.write(dumps({"item": item, "source": source, "label": label}) + "\n")
            summary: dict[str, Any] = {"method": "majority", "items": len(ann.items)}
        else:
            result = dawid_skene(ann)
            for i, (item, source) in enumerate(zip(ann.items, ann.sources)):
                soft = {str(c): float(result.posteriors[i, k]) for k, c in enumerate(result.categories)}
                handle.write(dumps({"item": item, "source": source, "label": result.labels()[i], "posterior": soft,
                                    "confidence": float(result.posteriors[i].max())}) + "\n")
            summary = {"method": "dawid-skene", "items": len(ann.items), "annotator_accuracy": result.accuracy,
                       "priors": dict(zip(map(str, result.categories), result.priors.tolist())), "iterations": result.iterations,
                       "converged": result.converged}
    print(dumps(summary))
    return 0


def _cmd_balance(args: argparse.Namespace) -> int:
    from ..data.quality import length_balance
    from ..data.readers import refuse_overwriting_input

    refuse_overwriting_input(args.output, args.data)
    pairs, read = _pairs(args.data)
    if args.tolerance is not None:
        from ..data.quality import length_match

        kept, report = length_match(list(pairs), args.tolerance)
    else:
        kept, report = length_balance(list(pairs), args.seed)
    from ..data.readers import write_preference_pairs

    write_preference_pairs(kept, args.output, with_source=True)
    report["read"] = read.summary("pairs")
    print(f"  kept {report['kept']} of {report['pairs_before']} pairs; chosen longer {report['chosen_longer_rate_before']:.1%} -> "
          f"{report['chosen_longer_rate_after']:.1%}", file=sys.stderr)
    print(dumps(report))
    return 0


def _texts(path: str, field: str) -> list[str]:
    pairs, _ = _pairs(path)
    if field == "prompt":
        return [" ".join(m.content for m in p.prompt) for p in pairs]
    return [getattr(p, field) for p in pairs]


def _cmd_dedup(args: argparse.Namespace) -> int:
    from ..data.quality import near_duplicates

    result = near_duplicates(_texts(args.data, args.field), args.threshold)
    print(f"  {result['exact_duplicates']} exact and {result['near_duplicates']} near duplicate {args.field}s "
          f"(Jaccard >= {args.threshold}) among {result['items']}", file=sys.stderr)
    print(dumps(result))
    return 0


def _cmd_contamination(args: argparse.Namespace) -> int:
    from ..data.quality import contamination

    result = contamination(_texts(args.train, args.field), _texts(args.eval, args.field), args.n)
    print(f"  {result['contaminated']} of {result['train_items']} training {args.field}s share a {args.n}-gram with the "
          f"evaluation set", file=sys.stderr)
    print(dumps(result))
    return 0


def _cmd_card(args: argparse.Namespace) -> int:
    from ..data.card import card_lines, write_card
    from ..data.quality import data_card
    from ..data.readers import DropReport, iter_preference_pairs

    counter = None
    if args.tokenizer:
        from transformers import AutoTokenizer

        from ..data.templating import count_tokens
        from ..models.io import resolve_model_source

        path, extra = resolve_model_source(args.tokenizer)
        tokenizer = AutoTokenizer.from_pretrained(path, **extra)
        counter = lambda items: count_tokens(tokenizer, items)  # noqa: E731
    elif args.max_length is not None:
        from ..errors import ConfigError

        raise ConfigError("--max-length counts tokens: give --tokenizer (a model folder or tokenizer name) too")
    eval_texts = _texts(args.eval, "prompt") if args.eval else None
    report = DropReport()
    pairs = ((p.source, p) for p in iter_preference_pairs(args.data, "train", None, report))
    if args.show_progress:
        from tqdm.auto import tqdm

        pairs = tqdm(pairs, desc="card", unit="pair")
    card = data_card(pairs, token_counter=counter, max_length=args.max_length, eval_texts=eval_texts,
                     contamination_n=args.n, dedup_sample=args.dedup_sample)
    card["read"] = report.summary("pairs")
    if args.annotations:
        from ..data.annotations import agreement_report, read_annotations

        card["agreement"] = {k: v for k, v in agreement_report(read_annotations(args.annotations), bootstrap=args.bootstrap).items()
                             if k != "item_entropy_bits"}
    paths = write_card(card, args.output_dir, args.title or str(args.data))
    for k, (heading, rows) in enumerate(card_lines(card, args.title or str(args.data))):
        print(("" if k == 0 else f"{heading}: ") + "; ".join(rows), file=sys.stderr)
    print(dumps({kind: str(path) for kind, path in paths.items()}))
    return 0


def _cmd_pairs(args: argparse.Namespace) -> int:
    from ..data.quality import pairs_from_ratings
    from ..data.readers import iter_records, refuse_overwriting_input, to_scored_response
    from ..errors import ConfigError

    if (args.ratings is None) == (args.annotations is None):
        raise ConfigError("give --ratings (rated replies) or --annotations (multi-annotator comparisons), one of them")
    if args.annotations:
        from ..data.annotations import pairs_from_annotations

        refuse_overwriting_input(args.output, args.annotations, args.texts)
        built, counts = pairs_from_annotations(args.annotations, args.method, args.ties, args.texts)
        with atomic_write(args.output) as handle:
            for p in built:
                handle.write(dumps(p) + "\n")
        print(f"  {counts['pairs']} pairs from {counts['items']} annotated items; "
              + ", ".join(f"{k}: {v}" for k, v in counts.items() if k not in ("pairs", "items", "method", "ties")), file=sys.stderr)
        print(dumps(counts))
        return 0
    refuse_overwriting_input(args.output, args.ratings)
    groups: dict[Any, list[tuple[str, float]]] = {}
    for location, record in iter_records(args.ratings):
        scored = to_scored_response(record, location, (args.score_field,))
        key = dumps([m.as_dict() for m in scored.prompt])
        groups.setdefault(key, []).append((scored.response, scored.scores[args.score_field]))
    pairs = pairs_from_ratings(groups, args.rule, args.min_gap, args.seed, args.length_tolerance)
    with atomic_write(args.output) as handle:
        for p in pairs:
            handle.write(dumps({**p, "prompt": json.loads(p["prompt"])}) + "\n")
    print(dumps({"prompts": len(groups), "pairs": len(pairs), "rule": args.rule, "min_gap": args.min_gap,
                 "length_tolerance": args.length_tolerance}))
    return 0


def _cmd_filter(args: argparse.Namespace) -> int:
    from ..data.filtering import PairFilter, filter_pair_file
    from ..errors import ConfigError

    from .common import config_from_values

    rule = config_from_values(PairFilter, args)
    if args.down_weight is not None and rule.mode != "weight":
        raise ConfigError("--down-weight applies with --mode weight only")
    scorer = None
    if not args.model:
        from .common import refuse_scorer_flags

        refuse_scorer_flags(args, "configures the RM of --model, which is not given")
    if args.model:
        if not rule.needs_rm:
            raise ConfigError("--model scores pairs for --min-rm-confidence or --weight-by rm_confidence; neither is set")
        from .common import build_scorer

        scorer = build_scorer(args)
    counts = filter_pair_file(args.data, rule, args.output, args.dropped, scorer, progress=bool(args.show_progress))
    failed = ", ".join(f"{k} {v}" for k, v in counts["failed"].items()) or "none"
    print(f"  kept {counts['kept']} of {counts['read']} ({counts['kept_fraction']:.1%}); failed: {failed}", file=sys.stderr)
    print(dumps(counts))
    return 0


def _cmd_swap(args: argparse.Namespace) -> int:
    from ..data.quality import swap_positions
    from ..data.readers import iter_records, refuse_overwriting_input
    from ..errors import DataFormatError

    refuse_overwriting_input(args.output, args.data)
    written = 0
    with atomic_write(args.output) as handle:
        for location, record in iter_records(args.data):
            for name in ("response_a", "response_b", args.winner_field):
                if name not in record:
                    raise DataFormatError(location, "expected judge data {prompt, response_a, response_b, winner}", name)
            if record[args.winner_field] not in ("A", "B", "tie"):
                raise DataFormatError(location, f"expected A, B or tie, got {record[args.winner_field]!r}", args.winner_field)
            for row in swap_positions([record], args.winner_field):
                handle.write(dumps(row) + "\n")
                written += 1
    print(dumps({"read": written // 2, "written": written}))
    return 0


def _cmd_normalize(args: argparse.Namespace) -> int:
    from ..data.normalization import z_normalize_ratings
    from ..data.readers import iter_records, refuse_overwriting_input

    refuse_overwriting_input(args.output, args.ratings)
    fields = tuple(f.strip() for f in args.score_field.split(",") if f.strip())
    rows, normalizer = z_normalize_ratings(list(iter_records(args.ratings)), fields, args.by, args.annotator_field)
    with atomic_write(args.output) as handle:
        for row in rows:
            handle.write(dumps(row) + "\n")
    stats = normalizer.to_json()
    for name, per in (stats["group_stats"] or {"(all)": stats["global_stats"]}).items():
        print(f"  {name}: " + ", ".join(f"{h} mean {m:.3f} std {sd:.3f}" for h, (m, sd) in per.items()), file=sys.stderr)
    print(dumps({"records": len(rows), "by": args.by, "fields": [f"{f}_z" for f in fields], **stats}))
    return 0


def _cmd_calibrate(args: argparse.Namespace) -> int:
    from ..data.annotations import read_annotations
    from ..data.quality import accuracy_on_gold
    from ..data.readers import iter_records

    from ..errors import DataFormatError

    rows = list(iter_records(args.annotations))  # read once: labels, and timestamps for drift
    ann = read_annotations(args.annotations, records=rows)
    gold = {}
    for location, record in iter_records(args.gold):
        if "label" not in record or record.get("item", record.get("idx")) is None:
            raise DataFormatError(location, "expected a known answer {item, label}", "label" if "label" not in record else "item")
        gold[str(record.get("item", record.get("idx")))] = record["label"]
    labels = {a: {item: row[j] for item, row in zip(ann.items, ann.labels) if row[j] is not None}
              for j, a in enumerate(ann.annotators)}
    times: dict[str, dict[str, float]] | None = None
    if args.time_field:
        times = {}
        for location, record in rows:
            if args.time_field in record:
                stamp = record[args.time_field]
                if isinstance(stamp, bool) or not isinstance(stamp, (int, float)):
                    raise DataFormatError(location, f"expected a timestamp in seconds, got {stamp!r}", args.time_field)
                times.setdefault(str(record.get("annotator")), {})[str(record.get("item"))] = float(stamp)
    report = accuracy_on_gold(labels, gold, args.bootstrap, times=times, window=args.window)
    for name, row in report.items():
        drift = " DRIFTING" if row.get("drifting") else ""
        print(f"  {name}: {row['accuracy']:.3f} on {row['gold_items']} gold items (95% CI {row['ci'][0]:.3f} - {row['ci'][1]:.3f}){drift}",
              file=sys.stderr)
    print(dumps(report))
    return 0


@dataclass(frozen=True, kw_only=True)
class DataAgreementOptions:
    """Options of ``rewardlab data agreement``: raw agreement, Cohen's and Fleiss' kappa, Krippendorff's alpha
    with bootstrap intervals."""

    annotations: str
    """long {item, annotator, label} rows, wide rows with votes, or PandaLM's test set"""
    levels: str = "nominal"
    """Krippendorff measurement levels: nominal, ordinal, interval (comma-separated)"""
    bootstrap: int = 1000
    """item resamples per interval"""
    seed: int = 0
    """seed of the bootstrap"""
    output_dir: str
    """agreement.json goes here"""


def _register_agreement(cmds: Any) -> None:
    q = cmds.add_parser("agreement", help="raw agreement, Cohen's and Fleiss' kappa, Krippendorff's alpha with bootstrap intervals")
    add_config_flags(q, DataAgreementOptions, defaults=True)
    q.set_defaults(func=_cmd_agreement)


@dataclass(frozen=True, kw_only=True)
class DataAggregateOptions:
    """Options of ``rewardlab data aggregate``: one label per item: majority vote or Dawid-Skene (soft labels,
    annotator accuracies)."""

    annotations: str
    """as for 'data agreement'"""
    method: Literal["majority", "dawid-skene"] = "dawid-skene"
    """how votes become a label"""
    tie_policy: Literal["none", "first", "tie"] = "none"
    """majority: a tied vote leaves the item unlabelled, takes the first category, or says 'tie'"""
    output: str
    """JSON Lines: label (and posterior, confidence) per item"""


def _register_aggregate(cmds: Any) -> None:
    q = cmds.add_parser("aggregate", help="one label per item: majority vote or Dawid-Skene (soft labels, annotator accuracies)")
    add_config_flags(q, DataAggregateOptions, defaults=True)
    q.set_defaults(func=_cmd_aggregate)


@dataclass(frozen=True, kw_only=True)
class DataBalanceOptions:
    """Options of ``rewardlab data balance``: a length-balanced pair set (chosen longer in 50%), or length-
    matched pairs (--tolerance)."""

    data: str
    """preference pairs (any format rewardlab reads)"""
    output: str
    """the balanced pairs (JSON Lines)"""
    seed: int = 0
    """seed of which pairs are dropped"""
    tolerance: float | None = None
    """length-matched instead: keep pairs whose word counts differ by at most this fraction of the longer (0:
    equal; default: count balancing only)"""


def _register_balance(cmds: Any) -> None:
    q = cmds.add_parser("balance", help="a length-balanced pair set (chosen longer in 50%%), or length-matched pairs (--tolerance)")
    add_config_flags(q, DataBalanceOptions, defaults=True)
    q.set_defaults(func=_cmd_balance)


@dataclass(frozen=True, kw_only=True)
class DataDedupOptions:
    """Options of ``rewardlab data dedup``: exact and near-duplicate prompts or replies (MinHash LSH)."""

    data: str
    """preference pairs"""
    field: Literal["prompt", "chosen", "rejected"] = "prompt"
    """which text to compare"""
    threshold: float = 0.8
    """estimated Jaccard similarity of word 3-grams"""


def _register_dedup(cmds: Any) -> None:
    q = cmds.add_parser("dedup", help="exact and near-duplicate prompts or replies (MinHash LSH)")
    add_config_flags(q, DataDedupOptions, defaults=True)
    q.set_defaults(func=_cmd_dedup)


@dataclass(frozen=True, kw_only=True)
class DataContaminationOptions:
    """Options of ``rewardlab data contamination``: training items sharing word n-grams with an evaluation set."""

    train: str
    """training pairs"""
    eval: str
    """evaluation pairs"""
    field: Literal["prompt", "chosen", "rejected"] = "prompt"
    """which text to compare"""
    n: int = 13
    """n-gram length"""


def _register_contamination(cmds: Any) -> None:
    q = cmds.add_parser("contamination", help="training items sharing word n-grams with an evaluation set")
    add_config_flags(q, DataContaminationOptions, defaults=True)
    q.set_defaults(func=_cmd_contamination)


@dataclass(frozen=True, kw_only=True)
class DataPairsOptions:
    """Options of ``rewardlab data pairs``: preference pairs from rated replies (UltraFeedback style) or from
    multi-annotator comparisons."""

    ratings: str | None = None
    """{prompt, response, score} records (several responses per prompt)"""
    score_field: str = "score"
    """the rating field"""
    rule: Literal["best_random", "best_worst", "all"] = "best_random"
    """ratings: best vs a random other (UltraFeedback), best vs worst, or every pair above --min-gap"""
    min_gap: float = 0.0
    """ratings: only pairs whose ratings differ by more than this"""
    length_tolerance: float | None = None
    """ratings: only pair replies whose word counts differ by at most this fraction (length-matched pairs)"""
    seed: int = 0
    """seed of best_random's pick"""
    annotations: str | None = None
    """comparisons labelled A / B / tie by several annotators (PandaLM's test set, or rows with prompt,
    response_a, response_b and votes); each pair gets agreement (and confidence with dawid-skene)"""
    method: Literal["majority", "dawid-skene"] = "majority"
    """annotations: how votes become a label"""
    ties: Literal["drop", "keep"] = "drop"
    """annotations: items labelled tie are dropped (counted) or written as tie pairs"""
    texts: str | None = None
    """annotations in long rows: a file of {item, prompt, response_a, response_b}"""
    output: str
    """pairs (JSON Lines, with margin or agreement)"""


def _register_pairs(cmds: Any) -> None:
    q = cmds.add_parser("pairs", help="preference pairs from rated replies (UltraFeedback style) or from multi-annotator comparisons")
    add_config_flags(q, DataPairsOptions, defaults=True)
    q.set_defaults(func=_cmd_pairs)


@dataclass(frozen=True, kw_only=True)
class DataFilterOptions:
    """Options of ``rewardlab data filter``: drop or down-weight pairs by agreement, Dawid-Skene confidence,
    rating gap or an RM's confidence; strata weights."""

    data: str
    """pair records (e.g. from 'data pairs'); the fields the criteria read"""
    output: str
    """kept pairs, each with weight (JSON Lines; training reads weight)"""
    dropped: str | None = None
    """dropped pairs with dropped_because (JSON Lines)"""
    show_progress: bool = False
    """a progress bar"""


def _register_filter(cmds: Any) -> None:
    q = cmds.add_parser("filter", help="drop or down-weight pairs by agreement, Dawid-Skene confidence, rating gap or an RM's "
                                       "confidence; strata weights")
    add_config_flags(q, DataFilterOptions, defaults=True)
    from ..data.filtering import PairFilter
    from .common import add_scorer_flags

    add_config_flags(q, PairFilter)  # the criteria: one flag per PairFilter field
    add_scorer_flags(q, required=False, exclude=("show_progress",),
                     model_help="reward model for --min-rm-confidence / --weight-by rm_confidence")
    q.set_defaults(func=_cmd_filter)


@dataclass(frozen=True, kw_only=True)
class DataSwapOptions:
    """Options of ``rewardlab data swap``: judge data in both orders, the winner flipped (position-bias
    augmentation)."""

    data: str
    """{prompt, response_a, response_b, winner} records"""
    winner_field: str = "winner"
    """the field holding A, B or tie"""
    output: str
    """each record, then its swapped copy (JSON Lines)"""


def _register_swap(cmds: Any) -> None:
    q = cmds.add_parser("swap", help="judge data in both orders, the winner flipped (position-bias augmentation)")
    add_config_flags(q, DataSwapOptions, defaults=True)
    q.set_defaults(func=_cmd_swap)


@dataclass(frozen=True, kw_only=True)
class DataNormalizeOptions:
    """Options of ``rewardlab data normalize``: z-normalize ratings per annotator (or globally): adds <field>_z."""

    ratings: str
    """rating records"""
    score_field: str = "score"
    """rating field(s), comma-separated"""
    by: Literal["annotator", "global"] = "annotator"
    """whose mean and std"""
    annotator_field: str = "annotator"
    """who rated"""
    output: str
    """the records with <field>_z added (JSON Lines)"""


def _register_normalize(cmds: Any) -> None:
    q = cmds.add_parser("normalize", help="z-normalize ratings per annotator (or globally): adds <field>_z")
    add_config_flags(q, DataNormalizeOptions, defaults=True)
    q.set_defaults(func=_cmd_normalize)


@dataclass(frozen=True, kw_only=True)
class DataCalibrateOptions:
    """Options of ``rewardlab data calibrate``: each annotator's accuracy on gold items (bootstrap CI), and
    drift over time."""

    annotations: str
    """annotations (long rows carry a time field for drift)"""
    gold: str
    """{item, label} records: the known answers"""
    time_field: str | None = None
    """the long rows' timestamp field (seconds) for accuracy by time window"""
    window: float = 86400.0
    """time window for drift, seconds"""
    bootstrap: int = 1000
    """resamples per interval"""


def _register_calibrate(cmds: Any) -> None:
    q = cmds.add_parser("calibrate", help="each annotator's accuracy on gold items (bootstrap CI), and drift over time")
    add_config_flags(q, DataCalibrateOptions, defaults=True)
    q.set_defaults(func=_cmd_calibrate)


@dataclass(frozen=True, kw_only=True)
class DataCardOptions:
    """Options of ``rewardlab data card``: a data card (Markdown, HTML with plots, JSON): sizes, lengths,
    truncation, labels, duplicates, contamination, agreement."""

    data: str
    """preference pairs (streamed)"""
    annotations: str | None = None
    """multi-annotator labels of the same data, for an agreement section"""
    bootstrap: int = 200
    """item resamples for the agreement intervals"""
    tokenizer: str | None = None
    """a tokenizer (model folder or name) for token lengths"""
    max_length: int | None = None
    """with --tokenizer: count the pairs longer than this"""
    eval: str | None = None
    """evaluation pairs: a contamination section (shared word n-grams of prompts)"""
    n: int = 13
    """n-gram length for --eval"""
    dedup_sample: int = 20000
    """prompts checked for duplicates (the first N)"""
    title: str | None = None
    """the card's title (default: the data path)"""
    show_progress: bool = False
    """a progress bar"""
    output_dir: str
    """card.md, card.html, card.json and plots go here"""


def _register_card(cmds: Any) -> None:
    q = cmds.add_parser("card", help="a data card (Markdown, HTML with plots, JSON): sizes, lengths, truncation, labels, duplicates, "
                                     "contamination, agreement")
    add_config_flags(q, DataCardOptions, defaults=True)
    q.set_defaults(func=_cmd_card)


def register(sub: Any) -> None:
    p = sub.add_parser("data", help="preference-data quality: agreement, aggregation, length balance, duplicates, contamination, card")
    cmds = p.add_subparsers(dest="data_command", required=True, parser_class=type(p), help="what to check or build")
    for add in (_register_agreement, _register_aggregate, _register_balance, _register_dedup, _register_contamination,
                _register_pairs, _register_filter, _register_swap, _register_normalize, _register_calibrate, _register_card):
        add(cmds)
