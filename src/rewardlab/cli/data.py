"""``rewardlab data``: preference-data quality before any training run (agreement, aggregation, length balance,
duplicates, contamination, a data card); each subcommand calls the Python API one to one."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ..jsonsafe import dumps

__all__ = ["register"]


def _pairs(path: str) -> Any:
    from ..data.readers import DropReport, iter_preference_pairs

    report = DropReport()
    return (p for p in iter_preference_pairs(path, "train", None, report)), report


def _write_pairs(pairs: Any, output: str) -> None:
    with open(output, "w") as handle:
        for p in pairs:
            handle.write(json.dumps({"prompt": [m.as_dict() for m in p.prompt], "chosen": p.chosen, "rejected": p.rejected,
                                     **({"margin": p.margin} if p.margin is not None else {}), "source": p.source}) + "\n")


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
    with open(args.output, "w") as handle:
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
    pairs, _ = _pairs(args.data)
    kept, report = length_balance(list(pairs), args.seed)
    _write_pairs(kept, args.output)
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
    from ..data.quality import data_card
    from ..data.readers import DropReport, iter_preference_pairs

    report = DropReport()
    card = data_card(((p.source, p) for p in iter_preference_pairs(args.data, "train", None, report)))
    card["read"] = report.summary("pairs")
    if args.annotations:
        from ..data.annotations import agreement_report, read_annotations

        card["agreement"] = {k: v for k, v in agreement_report(read_annotations(args.annotations), bootstrap=args.bootstrap).items()
                             if k != "item_entropy_bits"}
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "card.json").write_text(dumps(card, indent=2))
    lines = [f"# Data card: {args.data}", "", f"{card['pairs']} pairs ({card['read']}).", "",
             f"* Words, chosen: mean {card['chosen_mean_words']:.1f}, 5/50/95% {list(card['chosen_words_quantiles'].values())}",
             f"* Words, rejected: mean {card['rejected_mean_words']:.1f}, 5/50/95% {list(card['rejected_words_quantiles'].values())}",
             f"* Chosen longer: {card['chosen_longer_rate']:.1%} ('always pick the longer reply' scores this much)",
             f"* Ties: {card['ties']}; pairs with a margin: {card['with_margin']}",
             f"* Repeated prompts among the first {card['repeated_prompts_in_first']['checked']}: {card['repeated_prompts_in_first']['repeats']}"]
    if "agreement" in card:
        a = card["agreement"]
        lines += ["", "## Annotator agreement", "", f"{a['items']} items, annotators {', '.join(a['annotators'])}: raw agreement "
                  f"{a['raw_agreement']:.3f}, Fleiss' kappa {a['fleiss_kappa']:.3f}, Krippendorff's alpha (nominal) "
                  f"{a['krippendorff_alpha_nominal']:.3f}; intervals in card.json."]
    (out / "card.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines), file=sys.stderr)
    return 0


def _cmd_pairs(args: argparse.Namespace) -> int:
    from ..data.quality import pairs_from_ratings
    from ..data.readers import iter_records, refuse_overwriting_input, to_scored_response

    refuse_overwriting_input(args.output, args.ratings)
    groups: dict[Any, list[tuple[str, float]]] = {}
    for location, record in iter_records(args.ratings):
        scored = to_scored_response(record, location, (args.score_field,))
        key = dumps([m.as_dict() for m in scored.prompt])
        groups.setdefault(key, []).append((scored.response, scored.scores[args.score_field]))
    pairs = pairs_from_ratings(groups, args.rule, args.min_gap, args.seed)
    with open(args.output, "w") as handle:
        for p in pairs:
            handle.write(dumps({**p, "prompt": json.loads(p["prompt"])}) + "\n")
    print(dumps({"prompts": len(groups), "pairs": len(pairs), "rule": args.rule, "min_gap": args.min_gap}))
    return 0


def _cmd_filter(args: argparse.Namespace) -> int:
    from ..data.readers import iter_records, refuse_overwriting_input

    refuse_overwriting_input(args.output, args.labels)
    kept = dropped = 0
    with open(args.output, "w") as handle:
        for location, record in iter_records(args.labels):
            confidence = record.get("confidence")
            if not isinstance(confidence, (int, float)):
                from ..errors import DataFormatError

                raise DataFormatError(location, "expected a number (from 'rewardlab data aggregate --method dawid-skene')", "confidence")
            if confidence >= args.min_confidence:
                handle.write(dumps({**record, "weight": float(confidence)}) + "\n")
                kept += 1
            else:
                dropped += 1
    print(dumps({"kept": kept, "dropped": dropped, "min_confidence": args.min_confidence}))
    return 0


def _cmd_calibrate(args: argparse.Namespace) -> int:
    from ..data.annotations import read_annotations
    from ..data.quality import accuracy_on_gold
    from ..data.readers import iter_records

    ann = read_annotations(args.annotations)
    gold = {str(r.get("item", r.get("idx"))): r["label"] for _, r in iter_records(args.gold)}
    labels = {a: {item: row[j] for item, row in zip(ann.items, ann.labels) if row[j] is not None}
              for j, a in enumerate(ann.annotators)}
    times = None
    if args.time_field:
        times = {}
        for location, record in iter_records(args.annotations):
            if args.time_field in record:
                times.setdefault(str(record.get("annotator")), {})[str(record.get("item"))] = float(record[args.time_field])
    report = accuracy_on_gold(labels, gold, args.bootstrap, times=times, window=args.window)
    for name, row in report.items():
        drift = " DRIFTING" if row.get("drifting") else ""
        print(f"  {name}: {row['accuracy']:.3f} on {row['gold_items']} gold items (95% CI {row['ci'][0]:.3f} - {row['ci'][1]:.3f}){drift}",
              file=sys.stderr)
    print(dumps(report))
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("data", help="preference-data quality: agreement, aggregation, length balance, duplicates, contamination, card")
    cmds = p.add_subparsers(dest="data_command", required=True, parser_class=type(p), help="what to check or build")
    q = cmds.add_parser("agreement", help="raw agreement, Cohen's and Fleiss' kappa, Krippendorff's alpha with bootstrap intervals")
    q.add_argument("--annotations", required=True, help="long {item, annotator, label} rows, wide rows with votes, or PandaLM's test set")
    q.add_argument("--levels", default="nominal", help="Krippendorff measurement levels: nominal, ordinal, interval (comma-separated)")
    q.add_argument("--bootstrap", type=int, default=1000, help="item resamples per interval")
    q.add_argument("--seed", type=int, default=0, help="seed of the bootstrap")
    q.add_argument("--output-dir", required=True, help="agreement.json goes here")
    q.set_defaults(func=_cmd_agreement)
    q = cmds.add_parser("aggregate", help="one label per item: majority vote or Dawid-Skene (soft labels, annotator accuracies)")
    q.add_argument("--annotations", required=True, help="as for 'data agreement'")
    q.add_argument("--method", choices=["majority", "dawid-skene"], default="dawid-skene", help="how votes become a label")
    q.add_argument("--tie-policy", choices=["none", "first", "tie"], default="none",
                   help="majority: a tied vote leaves the item unlabelled, takes the first category, or says 'tie'")
    q.add_argument("--output", required=True, help="JSON Lines: label (and posterior, confidence) per item")
    q.set_defaults(func=_cmd_aggregate)
    q = cmds.add_parser("balance", help="a length-balanced pair set (chosen longer in 50%%)")
    q.add_argument("--data", required=True, help="preference pairs (any format rewardlab reads)")
    q.add_argument("--output", required=True, help="the balanced pairs (JSON Lines)")
    q.add_argument("--seed", type=int, default=0, help="seed of which pairs are dropped")
    q.set_defaults(func=_cmd_balance)
    q = cmds.add_parser("dedup", help="exact and near-duplicate prompts or replies (MinHash LSH)")
    q.add_argument("--data", required=True, help="preference pairs")
    q.add_argument("--field", choices=["prompt", "chosen", "rejected"], default="prompt", help="which text to compare")
    q.add_argument("--threshold", type=float, default=0.8, help="estimated Jaccard similarity of word 3-grams")
    q.set_defaults(func=_cmd_dedup)
    q = cmds.add_parser("contamination", help="training items sharing word n-grams with an evaluation set")
    q.add_argument("--train", required=True, help="training pairs")
    q.add_argument("--eval", required=True, help="evaluation pairs")
    q.add_argument("--field", choices=["prompt", "chosen", "rejected"], default="prompt", help="which text to compare")
    q.add_argument("--n", type=int, default=13, help="n-gram length")
    q.set_defaults(func=_cmd_contamination)
    q = cmds.add_parser("pairs", help="preference pairs from rated replies (UltraFeedback style), with the rating gap as margin")
    q.add_argument("--ratings", required=True, help="{prompt, response, score} records (several responses per prompt)")
    q.add_argument("--score-field", default="score", help="the rating field")
    q.add_argument("--rule", choices=["best_random", "best_worst", "all"], default="best_random",
                   help="best vs a random other (UltraFeedback), best vs worst, or every pair above --min-gap")
    q.add_argument("--min-gap", type=float, default=0.0, help="only pairs whose ratings differ by more than this")
    q.add_argument("--seed", type=int, default=0, help="seed of best_random's pick")
    q.add_argument("--output", required=True, help="pairs (JSON Lines, with margin)")
    q.set_defaults(func=_cmd_pairs)
    q = cmds.add_parser("filter", help="keep aggregated items whose Dawid-Skene confidence reaches a threshold (as a weight)")
    q.add_argument("--labels", required=True, help="the output of 'data aggregate --method dawid-skene'")
    q.add_argument("--min-confidence", type=float, default=0.9, help="lowest posterior of the chosen label kept")
    q.add_argument("--output", required=True, help="the kept items, each with weight = confidence")
    q.set_defaults(func=_cmd_filter)
    q = cmds.add_parser("calibrate", help="each annotator's accuracy on gold items (bootstrap CI), and drift over time")
    q.add_argument("--annotations", required=True, help="annotations (long rows carry a time field for drift)")
    q.add_argument("--gold", required=True, help="{item, label} records: the known answers")
    q.add_argument("--time-field", default=None, help="the long rows' timestamp field (seconds) for accuracy by time window")
    q.add_argument("--window", type=float, default=86400.0, help="time window for drift, seconds")
    q.add_argument("--bootstrap", type=int, default=1000, help="resamples per interval")
    q.set_defaults(func=_cmd_calibrate)
    q = cmds.add_parser("card", help="a data card: sizes, lengths, chosen-longer rate, ties, repeats (+ agreement)")
    q.add_argument("--data", required=True, help="preference pairs (streamed)")
    q.add_argument("--annotations", default=None, help="multi-annotator labels of the same data, for an agreement section")
    q.add_argument("--bootstrap", type=int, default=200, help="item resamples for the agreement intervals")
    q.add_argument("--output-dir", required=True, help="card.md and card.json go here")
    q.set_defaults(func=_cmd_card)
