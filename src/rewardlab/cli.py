"""``rewardlab`` command line: each subcommand mirrors a Python function one to one.

* ``rewardlab train``  -> :func:`rewardlab.train` (flags generated from :class:`TrainConfig`)
* ``rewardlab score``  -> :func:`rewardlab.load_reward_model` + ``LocalScorer.score``
* ``rewardlab eval``   -> :func:`rewardlab.evaluation.benchmark.evaluate_benchmark` + report
* ``rewardlab diagnose`` -> length bias, probes, shift (:mod:`rewardlab.evaluation.diagnostics`)
* ``rewardlab ratings`` -> :func:`rewardlab.evaluation.ratings.bradley_terry_ratings`, Elo, win rates
* ``rewardlab judge``  -> :class:`rewardlab.judges.judge.PairwiseJudge` over a cached client
* ``rewardlab judge-agreement`` -> :func:`rewardlab.judges.agreement.agreement_summary`
* ``rewardlab demo``   -> :func:`rewardlab.run_demo`

Errors from bad input print one line naming the file, line and field, and exit with status 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import typing
from pathlib import Path
from typing import Any

from .config import config_from_file, field_docs
from .errors import RewardlabError, SequenceTooLongError

__all__ = ["main"]


def _add_config_flags(parser: argparse.ArgumentParser, cls: type) -> None:
    docs, hints = field_docs(cls), typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        base = args[0] if typing.get_origin(hint) is not typing.Literal and args else hint
        flag = "--" + f.name.replace("_", "-")
        default = f.default if f.default is not dataclasses.MISSING else "required"
        help_text = f"{docs.get(f.name, '')} (default: {default})"
        if typing.get_origin(base) is dict:
            parser.add_argument(flag, type=_json_object, default=None, help=help_text + " (a JSON object)", metavar="JSON")
        elif base is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        elif typing.get_origin(hint) is typing.Literal:
            parser.add_argument(flag, choices=typing.get_args(hint), default=None, help=help_text)
        else:
            parser.add_argument(flag, type=base, default=None, help=help_text, metavar=f.name.upper())


def _json_object(text: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise argparse.ArgumentTypeError(f"not valid JSON: {err.msg}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("expected a JSON object")
    return value


def _config_from_args(cls: type, args: argparse.Namespace) -> Any:
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls)}
    if args.config:
        return config_from_file(cls, args.config, **values)
    missing = [f.name for f in dataclasses.fields(cls) if f.default is dataclasses.MISSING and values[f.name] is None]
    if missing:
        raise RewardlabError("missing required option(s): " + ", ".join("--" + m.replace("_", "-") for m in missing))
    return cls(**{k: v for k, v in values.items() if v is not None})


def _cmd_train(args: argparse.Namespace) -> int:
    from .training.config import TrainConfig
    from .training.loop import train

    result = train(_config_from_args(TrainConfig, args))
    print(json.dumps({"output_dir": str(result.output_dir), "steps": result.steps, **result.final_metrics}))
    return 0


def _read_score_inputs(data: str, split: str) -> tuple[list[tuple[str, str]], list[Any], list[str], list[int]]:
    """Records to score: ``rows`` of (kind, location), flattened prompts/responses, item -> row."""
    from .data.readers import iter_records, pair_sides, to_prompt_response

    rows: list[tuple[str, str]] = []
    prompts: list[Any] = []
    responses: list[str] = []
    item_row: list[int] = []
    for location, record in iter_records(data, split):
        if "chosen" in record:
            (chosen_prompt, chosen), (rejected_prompt, rejected) = pair_sides(record, location)
            prompts += [chosen_prompt, rejected_prompt]
            responses += [chosen, rejected]
            item_row += [len(rows), len(rows)]
            rows.append(("pair", location))
        else:
            prompt, response = to_prompt_response(record, location)
            prompts.append(prompt)
            responses.append(response)
            item_row.append(len(rows))
            rows.append(("single", location))
    return rows, prompts, responses, item_row


def _build_scorer(args: argparse.Namespace, combine: Any = None) -> Any:
    """A DPO implicit-reward scorer when --reference/--reference-free is given, else a LocalScorer."""
    from .models.dpo import DPOSettings, load_dpo_scorer
    from .scoring import load_reward_model

    if args.reference or args.reference_free:
        dpo = DPOSettings(args.beta, args.reference_free, args.length_normalize)
        return load_dpo_scorer(args.model, args.reference, dpo, args.precision, args.max_length or 1024, args.batch_size, args.device)
    return load_reward_model(args.model, device=args.device, precision=args.precision, batch_size=args.batch_size,
                             max_length=args.max_length, combine=combine, original_scale=getattr(args, "original_scale", False))


def _add_scorer_flags(p: argparse.ArgumentParser, required: bool = True) -> None:
    p.add_argument("--model", required=required, help="reward model folder (rewardlab's or any HF sequence-classification RM), or a DPO policy with --reference")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-length", type=int, default=None, help="default: the model's training max_length")
    p.add_argument("--precision", choices=["fp32", "bf16", "fp16"], default="fp32")
    p.add_argument("--device", default=None, help="e.g. cpu, cuda, cuda:1 (default: cpu)")
    p.add_argument("--reference", default=None, help="DPO implicit reward: the reference model (--model is the policy)")
    p.add_argument("--reference-free", action="store_true", help="DPO implicit reward with log pi_ref = 0")
    p.add_argument("--beta", type=float, default=0.1, help="DPO beta (default 0.1)")
    p.add_argument("--length-normalize", action="store_true", help="DPO: mean instead of sum of response token log-probs")


def _cmd_eval(args: argparse.Namespace) -> int:
    from .evaluation.benchmark import REWARDBENCH_SECTIONS, EvalSettings, evaluate_benchmark, read_benchmark
    from .evaluation.report import write_report

    items = read_benchmark(args.data, args.split, args.subset_field)
    settings = EvalSettings(args.tie_policy, args.bootstrap, weighting=args.weighting,
                            sections=args.sections or dict(REWARDBENCH_SECTIONS), seed=args.seed)
    results = {"benchmark": evaluate_benchmark(_build_scorer(args), items, settings), "data": args.data}
    bench = results["benchmark"]
    if args.save_temperature:
        from .models.io import update_metadata

        if "calibration" not in bench or not Path(args.model).is_dir():
            raise RewardlabError("--save-temperature needs a local reward-model folder and pairwise items to fit on")
        update_metadata(args.model, temperature=bench["calibration"]["temperature"])
        bench["temperature_saved_to"] = str(Path(args.model) / "rewardlab.json")
    report = write_report(results, args.output_dir, title=f"rewardlab eval: {args.model}")
    print(json.dumps({"overall": bench["overall"], "sections": {k: v["accuracy"] for k, v in bench["sections"].items()},
                      "subsets": {k: v["accuracy"] for k, v in bench["subsets"].items()}, "report": str(report)}))
    return 0


def _cmd_diagnose(args: argparse.Namespace) -> int:
    from .evaluation.benchmark import read_benchmark
    from .evaluation.diagnostics import distribution_shift, length_bias, load_probes, run_probes
    from .evaluation.report import write_report

    scorer = _build_scorer(args)
    items = read_benchmark(args.data, args.split)
    results: dict[str, Any] = {"data": args.data, "length_bias": length_bias(scorer, items, args.tie_policy),
                               "probes": run_probes(scorer, items, load_probes(args.probes))}
    if args.compare:
        other = read_benchmark(args.compare, args.split)
        mine = scorer.score([i.prompt for i in items], [i.chosen for i in items])
        theirs = scorer.score([i.prompt for i in other], [i.chosen for i in other])
        results["shift"] = distribution_shift(mine, theirs)
    if args.ensemble:
        from .evaluation.diagnostics import ensemble_disagreement
        from .scoring import load_reward_model

        members = [scorer] + [load_reward_model(path, device=args.device) for path in args.ensemble.split(",")]
        results["ensemble"] = ensemble_disagreement(members, [i.prompt for i in items], [i.chosen for i in items])
    report = write_report(results, args.output_dir, title=f"rewardlab diagnose: {args.model}")
    flags = {"length_bias": results["length_bias"]["flagged"],
             **{k: v["flagged"] for k, v in results["probes"].items() if "flagged" in v}}
    print(json.dumps({"flagged": flags, "report": str(report)}))
    return 0


def _cmd_ratings(args: argparse.Namespace) -> int:
    from .data.readers import iter_records
    from .errors import DataFormatError
    from .evaluation.ratings import FitError, bradley_terry_ratings, elo_ratings, length_controlled_win_rate, win_rate
    from .evaluation.report import write_report

    a, b, outcome, lengths = [], [], [], []
    values = {"model_a": 1.0, "model_b": 0.0, "tie": 0.5}
    for location, record in iter_records(args.battles):
        for key in ("model_a", "model_b", "winner"):
            if not isinstance(record.get(key), str):
                raise DataFormatError(location, "expected a string ('winner' is model_a, model_b or tie)", key)
        if record["winner"] not in values:
            raise DataFormatError(location, f"expected model_a, model_b or tie, got {record['winner']!r}", "winner")
        a.append(record["model_a"])
        b.append(record["model_b"])
        outcome.append(values[record["winner"]])
        lengths.append((record.get("length_a"), record.get("length_b")))
    ratings = bradley_terry_ratings(a, b, outcome, n_rounds=args.bootstrap, seed=args.seed)
    results: dict[str, Any] = {"ratings": {"bradley_terry": ratings.table(), "elo": elo_ratings(a, b, outcome),
                                           "battles": len(a), "bootstrap_rounds": args.bootstrap}}
    if args.baseline:
        rows = {}
        for model in sorted(set(a) | set(b)):
            if model == args.baseline:
                continue
            pairs = [(o if x == model else 1 - o, la - lb if x == model else lb - la) if None not in (la, lb) else (o if x == model else 1 - o, None)
                     for x, y, o, (la, lb) in zip(a, b, outcome, lengths) if {x, y} == {model, args.baseline}]
            if not pairs:
                continue
            rate, se = win_rate([p[0] for p in pairs])
            row: dict[str, Any] = {"win_rate": rate, "standard_error": se, "battles": len(pairs)}
            if all(p[1] is not None for p in pairs):
                try:
                    row["length_controlled_win_rate"] = length_controlled_win_rate([p[0] for p in pairs], [p[1] for p in pairs])
                except FitError as err:
                    row["length_controlled_win_rate"] = None
                    row["length_controlled_note"] = str(err)
            rows[model] = row
        results["win_rates"] = {"baseline": args.baseline, "models": rows}
    report = write_report(results, args.output_dir, title="rewardlab ratings")
    print(json.dumps({"ratings": ratings.table(), "report": str(report)}))
    return 0


def _cmd_judge(args: argparse.Namespace) -> int:
    from .judges.agreement import agreement_summary, self_preference, verbosity_curve
    from .judges.cache import BudgetExceeded, CachedClient
    from .judges.clients import LocalHFClient, OpenAIChatClient
    from .judges.data import read_judge_items
    from .judges.judge import PairwiseJudge, pairwise_summary

    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    items = read_judge_items(args.data, args.limit)
    if args.backend == "openai":
        if not args.base_url:
            raise RewardlabError("--backend openai needs --base-url (e.g. http://localhost:8000/v1)")
        client = OpenAIChatClient(args.base_url, args.model, args.api_key_env, timeout=args.timeout, max_retries=args.max_retries)
    else:
        client = LocalHFClient(args.model, answer_prefix="Verdict: [[" if args.force_verdict else "")
    if args.force_verdict and args.backend != "local":
        raise RewardlabError("--force-verdict works with --backend local (it writes the start of the model's answer)")
    # the cache key must change with the answer prefix: it is part of what the model is asked
    cached = CachedClient(client, args.cache or out / ("judge_cache_forced.sqlite" if args.force_verdict else "judge_cache.sqlite"),
                          args.max_calls)
    judge = PairwiseJudge(cached, args.template, args.rubric or "", both_orders=not args.single_order,
                          on_disagreement=args.on_disagreement, max_tokens=args.max_tokens,
                          use_logprobs=args.logprobs, concurrency=args.concurrency)
    from tqdm.auto import tqdm

    results, stopped = [], None
    try:
        for start in tqdm(range(0, len(items), args.chunk), desc="judging (chunks)"):  # a budget stop keeps finished chunks
            chunk = items[start : start + args.chunk]
            results += judge.judge([i.prompt for i in chunk], [i.response_a for i in chunk], [i.response_b for i in chunk])
    except BudgetExceeded as err:
        stopped = str(err)
    judged = items[: len(results)]
    with (out / "verdicts.jsonl").open("w") as handle:
        for item, r in zip(judged, results):
            handle.write(json.dumps({"key": item.key, "source": item.source, "winner": r.winner,
                                     "forward": r.forward.winner, "swapped": r.swapped.winner if r.swapped else None,
                                     "probabilities": r.probabilities, "raw_forward": r.forward.raw,
                                     "raw_swapped": r.swapped.raw if r.swapped else None}) + "\n")
    summary: dict[str, Any] = {"judge_model": args.model, "backend": args.backend, "template": args.template,
                               "both_orders": not args.single_order, "temperature": 0.0, **pairwise_summary(results),
                               "backend_calls": cached.backend_calls, "cache_hits": cached.cache_hits, "stopped": stopped}
    if any(i.human_votes for i in judged):
        summary["agreement"] = agreement_summary([r.winner for r in results], [list(i.human_votes) for i in judged])
    summary["verbosity"] = verbosity_curve([r.winner for r in results], [len(i.response_a.split()) for i in judged],
                                           [len(i.response_b.split()) for i in judged])
    if args.candidate_models:
        summary["self_preference_risk"] = self_preference(args.model, args.candidate_models.split(","))
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps({k: v for k, v in summary.items() if k != "verbosity"}, indent=2))
    return 0 if stopped is None else 3


def _cmd_judge_agreement(args: argparse.Namespace) -> int:
    from .judges.agreement import agreement_summary
    from .judges.data import read_judge_items, read_verdict_file

    items = read_judge_items(args.humans)
    table = {}
    for path in args.verdicts:
        verdicts = read_verdict_file(path)
        missing = [i.key for i in items if i.key not in verdicts]
        if missing:
            raise RewardlabError(f"{path}: no verdict for {len(missing)} items (first idx {missing[0]})")
        table[Path(path).name] = agreement_summary([verdicts[i.key] for i in items], [list(i.human_votes) for i in items])
    print(json.dumps(table, indent=2))
    if args.output:
        Path(args.output).write_text(json.dumps(table, indent=2))
    return 0


def _make_generator(args: argparse.Namespace) -> Any:
    from .labeling.generators import ChatEndpointGenerator, LocalHFGenerator

    if args.generator == "openai":
        from .judges.clients import OpenAIChatClient

        if not args.base_url:
            raise RewardlabError("--generator openai needs --base-url (e.g. http://localhost:8000/v1)")
        return ChatEndpointGenerator(OpenAIChatClient(args.base_url, args.model, args.api_key_env), args.temperature)
    return LocalHFGenerator(args.model, temperature=args.temperature, seed=args.seed)


def _cmd_label_steps(args: argparse.Namespace) -> int:
    from .labeling.checkers import make_checker
    from .labeling.math_shepherd import assemble_labels, label_solutions, read_solutions_to_label

    solutions = read_solutions_to_label(args.data, args.limit)
    stats = label_solutions(solutions, _make_generator(args), make_checker(args.checker), args.output, args.n,
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
    from .data.readers import iter_records
    from .errors import DataFormatError
    from .labeling.checkers import gsm8k_answer

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
    from .search.best_of_n import best_of_n, majority_vote, weighted_vote
    from .scoring import load_process_reward_model

    if not (args.prm or args.model):
        raise RewardlabError("give --model (an ORM or DPO policy) or --prm")
    scorer = load_process_reward_model(args.prm, args.aggregation) if args.prm else _build_scorer(args)
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
    from .search.best_of_n import best_of_n_kl

    summary: dict[str, Any] = {"items": len(rows), "kl_bound": best_of_n_kl(len(rows[0]["candidates"])) if rows else None}
    if hits:
        summary["bon_accuracy"] = sum(hits) / len(hits)
    print(json.dumps(summary))
    return 0


def _cmd_bon_curve(args: argparse.Namespace) -> int:
    import numpy as np

    from .scoring import load_process_reward_model
    from .search.best_of_n import bon_accuracy_curve

    rows = _read_candidates(args.data)[: args.limit]
    if not all(r.get("correct") for r in rows):
        raise RewardlabError(f"{args.data}: every item needs per-candidate 'correct' labels for an accuracy curve")
    k = min(len(r["candidates"]) for r in rows)
    rows = [{**r, "candidates": r["candidates"][:k], "correct": r["correct"][:k], "answers": (r.get("answers") or [None] * k)[:k]} for r in rows]
    prompts = [r["prompt"] for r in rows for _ in range(k)]
    texts = [c for r in rows for c in r["candidates"]]
    rewards = {}
    if args.model:
        rewards["orm"] = np.array(_build_scorer(args).score(prompts, texts)).reshape(len(rows), k)
    if args.prm:
        prm = load_process_reward_model(args.prm)
        steps = [[s for s in t.split(prm.separator) if s.strip()] or [t] for t in texts]
        from .search.aggregation import aggregate

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
    from .data.records import Message
    from .scoring import load_process_reward_model
    from .search.beam import prm_beam_search

    result = prm_beam_search(_make_generator(args), load_process_reward_model(args.prm, args.aggregation),
                             (Message("user", args.prompt),), args.beam_width, args.expansions, args.max_steps, args.aggregation)
    payload = {"best_steps": list(result.best_steps), "best_score": result.best_score,
               "tree": [{"id": n.id, "parent": n.parent, "depth": n.depth, "step": n.step, "score": n.score,
                         "finished": n.finished} for n in result.tree]}
    if args.output:
        Path(args.output).write_text(json.dumps(payload, indent=2))
    print(json.dumps({"best_steps": payload["best_steps"], "best_score": result.best_score, "nodes": len(result.tree)}))
    return 0


def _add_generator_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--generator", choices=["local", "openai"], default="local")
    p.add_argument("--model", default="builtin:smollm2", help="local causal LM (folder or builtin:smollm2), or the endpoint's model name")
    p.add_argument("--base-url", default=None, help="OpenAI-compatible endpoint for --generator openai")
    p.add_argument("--api-key-env", default="OPENAI_API_KEY")
    p.add_argument("--temperature", type=float, default=0.7)
    p.add_argument("--seed", type=int, default=0)


def _cmd_score(args: argparse.Namespace) -> int:
    from .models.dpo import DPOScorer
    from .scoring import ConstrainedReward, WeightedSum

    rows, prompts, responses, item_row = _read_score_inputs(args.data, args.split)
    settings: dict[str, Any] = {}
    missing: list[int] = []
    values: list[Any]
    combine = None
    if args.weights is not None:
        combine = WeightedSum(args.weights)
    elif args.primary is not None:
        combine = ConstrainedReward(args.primary, args.thresholds or {}, args.penalty)
    scorer = _build_scorer(args, combine)
    if isinstance(scorer, DPOScorer):
        dpo = scorer.settings
        settings = {"dpo_beta": dpo.beta, "reference_free": dpo.reference_free, "length_normalized": dpo.length_normalize}
        values = scorer.score(prompts, responses)
    else:
        local = scorer
        local.show_progress = True
        ids = local.tokenize(prompts, responses, on_too_long="none")
        missing = [i for i, seq in enumerate(ids) if seq is None]
        if missing and not args.skip_too_long:
            raise SequenceTooLongError(
                f"{len(missing)} response(s) do not fit in --max-length {local.max_length} even without their prompt "
                f"(first at {rows[item_row[missing[0]]][1]}); raise --max-length, or pass --skip-too-long to write "
                "them with reward null"
            )
        named = iter(local.named(local.score_ids([seq for seq in ids if seq is not None])))
        multi = len(local.heads) > 1
        values = []
        for seq in ids:
            if seq is None:
                values.append(None)
                continue
            row = next(named)
            combined = combine(row) if combine else (None if multi else row[local.heads[0]])
            values.append({"rewards": row, "reward": combined} if multi else combined)
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    position = 0
    with out.open("w") as handle:
        for index, (kind, location) in enumerate(rows):
            line: dict[str, Any] = {"index": index, "source": location}
            sides = (("chosen", 0), ("rejected", 1)) if kind == "pair" else (("", 0),)
            for side, offset in sides:
                value = values[position + offset]
                prefix = f"{side}_" if side else ""
                if isinstance(value, dict):
                    line[f"{prefix}rewards"], line[f"{prefix}reward"] = value["rewards"], value["reward"]
                else:
                    line[f"{prefix}reward"] = value
            position += len(sides)
            handle.write(json.dumps({**line, **settings}) + "\n")
    note = f"; {len(missing)} response(s) too long, written with reward null (first at {rows[item_row[missing[0]]][1]})" if missing else ""
    print(f"[rewardlab] wrote {len(rows)} lines to {out}{note}", file=sys.stderr)
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    run_demo(output_dir=args.output_dir, data=args.data, model=args.model, max_steps=args.max_steps)
    return 0


def build_parser() -> argparse.ArgumentParser:
    from .training.config import TrainConfig

    parser = argparse.ArgumentParser(prog="rewardlab", description="Train, label, use and check reward models.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a reward model (any objective)", description=TrainConfig.__doc__)
    p.add_argument("--config", help="YAML or JSON file of TrainConfig options; flags override it")
    _add_config_flags(p, TrainConfig)
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("score", help="score responses (or preference pairs) with a reward model")
    _add_scorer_flags(p)
    p.add_argument("--data", required=True, help="jsonl/json/parquet of {prompt, response}, {messages} or {prompt?, chosen, rejected}")
    p.add_argument("--output", required=True, help="scores.jsonl to write, one line per input record")
    p.add_argument("--split", default="train", help="split when --data is a datasets name")
    p.add_argument("--weights", type=_json_object, default=None, metavar="JSON",
                   help='multi-objective: combine heads as a weighted sum, e.g. \'{"helpfulness": 1, "safety": 0.5}\'')
    p.add_argument("--primary", default=None, help="multi-objective: the head to maximize under --thresholds")
    p.add_argument("--thresholds", type=_json_object, default=None, metavar="JSON",
                   help='multi-objective: constraint heads and minimum rewards, e.g. \'{"safety": 0.0}\'')
    p.add_argument("--penalty", type=float, default=float("-inf"), help="reward when a constraint fails (default -inf)")
    p.add_argument("--original-scale", action="store_true", help="map regression heads back to the original score scale")
    p.add_argument("--skip-too-long", action="store_true",
                   help="write responses that cannot fit in --max-length with reward null (and say how many) instead of stopping")
    p.set_defaults(func=_cmd_score)

    p = sub.add_parser("eval", help="RewardBench-style accuracy per subset and section, with CIs and calibration")
    _add_scorer_flags(p)
    p.add_argument("--data", required=True, help="RewardBench layout (prompt, chosen, rejected [list for best-of-K], subset) or any pair format")
    p.add_argument("--output-dir", required=True, help="results.json, report.md and plots go here")
    p.add_argument("--split", default="train")
    p.add_argument("--subset-field", default="subset", help="the field naming each record's subset (default: subset)")
    p.add_argument("--tie-policy", choices=["half", "zero", "exclude"], default="half")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap rounds per interval (0: none)")
    p.add_argument("--weighting", choices=["rewardbench", "observed"], default="rewardbench",
                   help="section weights: RewardBench's documented example counts, or this file's counts")
    p.add_argument("--sections", type=_json_object, default=None, metavar="JSON",
                   help='section -> subsets, e.g. \'{"Safety": ["hh-harmless"], "Chat": ["pandalm"]}\' (default: RewardBench\'s)')
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--save-temperature", action="store_true", help="write the fitted calibration temperature into the model's rewardlab.json")
    p.set_defaults(func=_cmd_eval)

    p = sub.add_parser("diagnose", help="length bias, perturbation probes and distribution shift of a reward model")
    _add_scorer_flags(p)
    p.add_argument("--data", required=True, help="preference pairs to probe")
    p.add_argument("--output-dir", required=True)
    p.add_argument("--split", default="train")
    p.add_argument("--probes", default=None, help="a folder of extra probe templates (*.json), added to the built-in ones")
    p.add_argument("--compare", default=None, help="a second set of pairs: compare the reward distributions of their chosen replies")
    p.add_argument("--ensemble", default=None, help="comma-separated reward-model folders: report their disagreement with --model")
    p.add_argument("--tie-policy", choices=["half", "zero", "exclude"], default="half")
    p.set_defaults(func=_cmd_diagnose)

    p = sub.add_parser("ratings", help="Bradley-Terry and Elo ratings (+ win rates) from pairwise battles")
    p.add_argument("--battles", required=True, help="jsonl of {model_a, model_b, winner: model_a|model_b|tie, length_a?, length_b?}")
    p.add_argument("--output-dir", required=True)
    p.add_argument("--baseline", default=None, help="report each model's win rate (and length-controlled win rate) against this one")
    p.add_argument("--bootstrap", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_cmd_ratings)

    p = sub.add_parser("judge", help="pairwise LLM-as-judge, both orders, cached, with flip rate and human agreement")
    p.add_argument("--data", required=True, help="pairs (any pair format; A = chosen) or the PandaLM test set layout")
    p.add_argument("--output-dir", required=True, help="verdicts.jsonl, summary.json and the cache go here")
    p.add_argument("--backend", choices=["local", "openai"], default="local")
    p.add_argument("--model", default="builtin:smollm2", help="local: a causal LM folder or builtin:smollm2; openai: the model name")
    p.add_argument("--base-url", default=None, help="OpenAI-compatible endpoint, e.g. http://localhost:8000/v1")
    p.add_argument("--api-key-env", default="OPENAI_API_KEY", help="environment variable holding the API key (never logged)")
    p.add_argument("--template", default="pairwise", help="pairwise | reference | a template file")
    p.add_argument("--rubric", default=None, help="extra instructions inserted into the template")
    p.add_argument("--single-order", action="store_true", help="judge in the given order only (default: both orders)")
    p.add_argument("--on-disagreement", choices=["tie", "average"], default="tie")
    p.add_argument("--logprobs", action="store_true", help="ask for token log-probabilities (probability-weighted verdicts)")
    p.add_argument("--force-verdict", action="store_true",
                   help="local backend: start the answer with 'Verdict: [[' so weak models emit a parseable verdict (no reasoning)")
    p.add_argument("--cache", default=None, help="SQLite cache file (default: OUTPUT_DIR/judge_cache.sqlite)")
    p.add_argument("--max-calls", type=int, default=None, help="stop cleanly after this many backend calls (cache hits are free)")
    p.add_argument("--limit", type=int, default=None, help="judge only the first N pairs")
    p.add_argument("--max-tokens", type=int, default=256)
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--chunk", type=int, default=16, help="pairs per chunk (a budget stop keeps finished chunks)")
    p.add_argument("--timeout", type=float, default=60.0)
    p.add_argument("--max-retries", type=int, default=5)
    p.add_argument("--candidate-models", default=None, help="comma-separated names of the models that wrote the responses (self-preference check)")
    p.set_defaults(func=_cmd_judge)

    p = sub.add_parser("judge-agreement", help="agreement of shipped judge verdict files with human votes")
    p.add_argument("--humans", required=True, help="PandaLM test set with annotator1..3")
    p.add_argument("--verdicts", required=True, nargs="+", help="verdict files (pandalm_result or gpt_result, keyed by idx)")
    p.add_argument("--output", default=None, help="write the table as JSON")
    p.set_defaults(func=_cmd_judge_agreement)

    p = sub.add_parser("label-steps", help="Math-Shepherd Monte-Carlo step labels (hard and soft), resumable")
    _add_generator_flags(p)
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
    _add_scorer_flags(p, required=False)
    p.add_argument("--prm", default=None, help="use this process reward model (with --aggregation) instead of --model")
    p.add_argument("--aggregation", choices=["min", "product", "last", "mean", "geometric_mean"], default="min")
    p.add_argument("--data", required=True, help="{prompt, candidates[, answers, correct]} jsonl, or GSM8K example solutions")
    p.add_argument("--output", required=True)
    p.set_defaults(func=_cmd_bon)

    p = sub.add_parser("bon-curve", help="accuracy vs N: majority, ORM, PRM-min, PRM-product, oracle (+ plot)")
    _add_scorer_flags(p, required=False)
    p.add_argument("--prm", default=None, help="a process reward model folder")
    p.add_argument("--data", required=True, help="candidates with per-candidate 'correct' labels (e.g. GSM8K example solutions)")
    p.add_argument("--output-dir", required=True)
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_cmd_bon_curve)

    p = sub.add_parser("beam-search", help="PRM-guided step-level beam search with a generator")
    _add_generator_flags(p)
    p.add_argument("--prm", required=True)
    p.add_argument("--prompt", required=True)
    p.add_argument("--beam-width", type=int, default=2)
    p.add_argument("--expansions", type=int, default=2)
    p.add_argument("--max-steps", type=int, default=4)
    p.add_argument("--aggregation", choices=["min", "product", "last", "mean", "geometric_mean"], default="min")
    p.add_argument("--output", default=None, help="write the result and the search tree as JSON")
    p.set_defaults(func=_cmd_beam_search)

    p = sub.add_parser("demo", help="train, evaluate and score on the embedded default (offline)")
    p.add_argument("--output-dir", default=None, help="where to write data and the model (default: a temp folder)")
    p.add_argument("--data", default=None, help="real preference data instead of the built-in set")
    p.add_argument("--model", default="builtin:minilm", help="backbone (default: builtin:minilm)")
    p.add_argument("--max-steps", type=int, default=150)
    p.set_defaults(func=_cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        import transformers

        transformers.utils.logging.set_verbosity_error()  # the new head's "newly initialized" notice is expected
        transformers.utils.logging.disable_progress_bar()
        return int(args.func(args))
    except RewardlabError as err:
        print(f"rewardlab: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
