"""``rewardlab`` label-steps, bon, bon-curve and beam-search: each subcommand calls the Python API one to one."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ..errors import RewardlabError

from .common import add_generator_flags, add_scorer_flags, build_scorer, make_generator

__all__ = ["register"]


def _cmd_label_steps(args: argparse.Namespace) -> int:
    from ..labeling.checkers import make_checker
    from ..labeling.math_shepherd import assemble_labels, label_solutions, read_solutions_to_label

    solutions = read_solutions_to_label(args.data, args.limit)
    stats = label_solutions(solutions, make_generator(args), make_checker(args.checker), args.output, args.n,
                            args.max_new_tokens)
    labelled = assemble_labels(solutions, args.output, args.kind)
    if args.steps_output:
        with open(args.steps_output, "w") as handle:
            for s in labelled:
                handle.write(json.dumps({"prompt": s.prompt[0].content, "steps": list(s.steps),
                                         "step_labels": list(s.step_labels), "answer": s.answer, "source": s.source}) + "\n")
    print(json.dumps({**stats, "solutions": len(solutions), "label_kind": args.kind}))
    return 0


def _read_candidates(path: str) -> list[dict[str, Any]]:
    from ..data.readers import iter_records
    from ..errors import DataFormatError
    from ..labeling.checkers import gsm8k_answer

    rows = []
    for location, record in iter_records(path):
        if "ground_truth" in record:  # GSM8K example model solutions: 4 labelled candidates
            names = [k for k, v in record.items() if isinstance(v, dict) and "solution" in v]
            rows.append({"prompt": record["question"], "candidates": [record[k]["solution"] for k in names],
                         "correct": [bool(record[k]["is_correct"]) for k in names],
                         "answers": [gsm8k_answer(record[k]["solution"]) for k in names],
                         "gold": gsm8k_answer(record["ground_truth"]), "source": location})
        elif isinstance(record.get("candidates"), list) and "prompt" in record:
            rows.append({**record, "source": location})
        else:
            raise DataFormatError(location, "expected {prompt, candidates[, answers, correct, gold]} or GSM8K example solutions", "candidates")
    return rows


def _cmd_bon(args: argparse.Namespace) -> int:
    from ..search.best_of_n import best_of_n, majority_vote, weighted_vote
    from ..scoring import load_process_reward_model

    if not (args.prm or args.model):
        raise RewardlabError("give --model (an ORM or DPO policy) or --prm")
    scorer = load_process_reward_model(args.prm, args.aggregation) if args.prm else build_scorer(args)
    rows = _read_candidates(args.data)
    with open(args.output, "w") as handle:
        hits = []
        for row in rows:
            result = best_of_n(scorer, row["prompt"], row["candidates"])
            line: dict[str, Any] = {"source": row["source"], "best_index": result.index, "rewards": list(result.rewards),
                                    "n": len(row["candidates"]), "kl_bound": result.kl}
            if row.get("answers"):
                line["majority_answer"] = majority_vote(row["answers"])
                line["weighted_answer"] = weighted_vote(row["answers"], result.rewards)
            if row.get("correct"):
                line["best_correct"] = bool(row["correct"][result.index])
                hits.append(line["best_correct"])
            handle.write(json.dumps(line) + "\n")
    from ..search.best_of_n import best_of_n_kl

    summary: dict[str, Any] = {"items": len(rows), "kl_bound": best_of_n_kl(len(rows[0]["candidates"])) if rows else None}
    if hits:
        summary["bon_accuracy"] = sum(hits) / len(hits)
    print(json.dumps(summary))
    return 0


def _cmd_bon_curve(args: argparse.Namespace) -> int:
    import numpy as np

    from ..scoring import load_process_reward_model
    from ..search.best_of_n import bon_accuracy_curve

    rows = _read_candidates(args.data)[: args.limit]
    if not all(r.get("correct") for r in rows):
        raise RewardlabError(f"{args.data}: every item needs per-candidate 'correct' labels for an accuracy curve")
    k = min(len(r["candidates"]) for r in rows)
    rows = [{**r, "candidates": r["candidates"][:k], "correct": r["correct"][:k], "answers": (r.get("answers") or [None] * k)[:k]} for r in rows]
    prompts = [r["prompt"] for r in rows for _ in range(k)]
    texts = [c for r in rows for c in r["candidates"]]
    rewards = {}
    if args.model:
        rewards["orm"] = np.array(build_scorer(args).score(prompts, texts)).reshape(len(rows), k)
    if args.prm:
        prm = load_process_reward_model(args.prm)
        steps = [[s for s in t.split(prm.separator) if s.strip()] or [t] for t in texts]
        from ..search.aggregation import aggregate

        step_scores = prm.score_steps(prompts, steps)
        for how in ("min", "product"):
            rewards[f"prm_{how}"] = np.array([aggregate(s, how) for s in step_scores]).reshape(len(rows), k)
    ns = list(range(1, k + 1))
    curves = bon_accuracy_curve(np.array([r["correct"] for r in rows]), [r["answers"] for r in rows],
                                [r.get("gold") for r in rows], rewards, ns, seed=args.seed)
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bon_curve.json").write_text(json.dumps({"n": ns, "curves": curves, "questions": len(rows)}, indent=2))
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(5, 4))
        for name, values in curves.items():
            ax.plot(ns, values, marker="o", label=name)
        ax.set(xlabel="N candidates", ylabel="accuracy", title=f"Best-of-N on {len(rows)} questions")
        ax.legend()
        fig.tight_layout()
        fig.savefig(out / "bon_curve.png", dpi=120)
    except ImportError:
        pass
    print(json.dumps({"n": ns, "curves": curves}))
    return 0


def _cmd_beam_search(args: argparse.Namespace) -> int:
    from ..data.records import Message
    from ..scoring import load_process_reward_model
    from ..search.beam import prm_beam_search

    result = prm_beam_search(make_generator(args), load_process_reward_model(args.prm, args.aggregation),
                             (Message("user", args.prompt),), args.beam_width, args.expansions, args.max_steps, args.aggregation)
    payload = {"best_steps": list(result.best_steps), "best_score": result.best_score,
               "tree": [{"id": n.id, "parent": n.parent, "depth": n.depth, "step": n.step, "score": n.score,
                         "finished": n.finished} for n in result.tree]}
    if args.output:
        Path(args.output).write_text(json.dumps(payload, indent=2))
    print(json.dumps({"best_steps": payload["best_steps"], "best_score": result.best_score, "nodes": len(result.tree)}))
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("label-steps", help="Math-Shepherd Monte-Carlo step labels (hard and soft), resumable")
    add_generator_flags(p)
    p.add_argument("--data", required=True, help="GSM8K jsonl, GSM8K example model solutions, or {prompt, steps, answer}")
    p.add_argument("--output", required=True, help="per-step results (JSON Lines, appended; a re-run skips finished steps)")
    p.add_argument("--steps-output", default=None, help="also write step-labelled solutions for rewardlab train --objective prm")
    p.add_argument("--kind", choices=["soft", "hard"], default="soft", help="label written to --steps-output")
    p.add_argument("--checker", choices=["gsm8k", "boxed", "exact"], default="gsm8k")
    p.add_argument("--n", type=int, default=8, help="completions sampled per step")
    p.add_argument("--max-new-tokens", type=int, default=256)
    p.add_argument("--limit", type=int, default=None, help="label only the first N solutions")
    p.set_defaults(func=_cmd_label_steps)

    p = sub.add_parser("bon", help="best-of-N over a file of candidates with an ORM, a PRM or a DPO policy")
    add_scorer_flags(p, required=False)
    p.add_argument("--prm", default=None, help="use this process reward model (with --aggregation) instead of --model")
    p.add_argument("--aggregation", choices=["min", "product", "last", "mean", "geometric_mean"], default="min")
    p.add_argument("--data", required=True, help="{prompt, candidates[, answers, correct]} jsonl, or GSM8K example solutions")
    p.add_argument("--output", required=True)
    p.set_defaults(func=_cmd_bon)

    p = sub.add_parser("bon-curve", help="accuracy vs N: majority, ORM, PRM-min, PRM-product, oracle (+ plot)")
    add_scorer_flags(p, required=False)
    p.add_argument("--prm", default=None, help="a process reward model folder")
    p.add_argument("--data", required=True, help="candidates with per-candidate 'correct' labels (e.g. GSM8K example solutions)")
    p.add_argument("--output-dir", required=True)
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_cmd_bon_curve)

    p = sub.add_parser("beam-search", help="PRM-guided step-level beam search with a generator")
    add_generator_flags(p)
    p.add_argument("--prm", required=True)
    p.add_argument("--prompt", required=True)
    p.add_argument("--beam-width", type=int, default=2)
    p.add_argument("--expansions", type=int, default=2)
    p.add_argument("--max-steps", type=int, default=4)
    p.add_argument("--aggregation", choices=["min", "product", "last", "mean", "geometric_mean"], default="min")
    p.add_argument("--output", default=None, help="write the result and the search tree as JSON")
    p.set_defaults(func=_cmd_beam_search)
