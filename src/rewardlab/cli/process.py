"""``rewardlab`` label-steps, bon, bon-curve and beam-search: each subcommand calls the Python API one to one."""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

from ..jsonsafe import dumps

from ..errors import RewardlabError

from .common import JUDGE_OPTIONS, add_config_flags, add_generator_flags, add_scorer_flags, build_scorer, make_generator

__all__ = ["register"]


def _cmd_label_steps(args: argparse.Namespace) -> int:
    from ..labeling.checkers import make_checker
    from ..labeling.math_shepherd import assemble_labels, label_solutions, read_solutions_to_label

    from ..data.readers import refuse_overwriting_input

    refuse_overwriting_input(args.output, args.data)
    if args.steps_output:
        refuse_overwriting_input(args.steps_output, args.data, args.output)
    solutions = read_solutions_to_label(args.data, args.limit)
    if args.ray is not None:  # steps fanned out over Ray actors, each with its own generator; same labels
        from ..distributed.labeling import label_solutions_ray

        stats = label_solutions_ray(solutions, lambda: make_generator(args), make_checker(args.checker), args.output, args.n,
                                    args.max_new_tokens, args.seed, args.ray_actors,
                                    address=None if args.ray == "local" else args.ray, connect_timeout=args.ray_timeout)
    else:
        stats = label_solutions(solutions, make_generator(args), make_checker(args.checker), args.output, args.n,
                                args.max_new_tokens, seed=args.seed)
    labelled = assemble_labels(solutions, args.output, args.kind)
    if args.steps_output:
        with open(args.steps_output, "w") as handle:
            for s in labelled:
                handle.write(dumps({"prompt": s.prompt[0].content, "steps": list(s.steps),
                                         "step_labels": list(s.step_labels), "answer": s.answer, "source": s.source}) + "\n")
    print(dumps({**stats, "solutions": len(solutions), "label_kind": args.kind}))
    return 0


def _cmd_bon(args: argparse.Namespace) -> int:
    from ..search.best_of_n import best_of_n_file

    if bool(args.prm) == bool(args.model):
        raise RewardlabError("give one of --model (any scorer: ORM, DPO policy, judge, PRM folder) or --prm")
    scorer = build_scorer(args, model=args.prm, kind="process") if args.prm else build_scorer(args)
    print(dumps(best_of_n_file(scorer, args.data, args.output)))
    return 0


def _cmd_bon_curve(args: argparse.Namespace) -> int:
    from ..scoring.config import InProcessConfig, ProcessConfig
    from ..scoring.process import ProcessScorer
    from ..search.best_of_n import bon_curve

    scorers: dict[str, Any] = {}
    if args.model:
        scorers["orm"] = build_scorer(args, progress=True)
    if args.prm:  # the shared in-process flags (device, batch size, max length, ...) apply to the PRM too
        shared = {f.name: getattr(args, f.name) for f in fields(InProcessConfig)
                  if f.name != "model" and getattr(args, f.name, None) is not None}
        prm = ProcessScorer.load(ProcessConfig(model=args.prm, **shared))
        scorers.update(prm_min=prm.with_aggregation("min"), prm_product=prm.with_aggregation("product"))
    result = bon_curve(scorers, args.data, args.output_dir, args.limit, args.seed)
    print(dumps({"n": result["n"], "kl": result["kl"], "curves": result["curves"]}))
    return 0


def _cmd_overopt(args: argparse.Namespace) -> int:
    from ..overopt.harness import run_overopt

    if args.quick or args.config:
        from ..overopt.experiment import OveroptConfig, load_config, run_experiment

        if args.quick and args.config:
            raise RewardlabError("--quick is the default configuration; give --quick or --config, not both")
        if args.data or args.model:
            raise RewardlabError("an experiment samples its own pool and trains its own proxies: drop --data and --model")
        from .common import refuse_scorer_flags

        refuse_scorer_flags(args, "configures --model's scorer; an experiment trains its own proxies (mitigations go in --config)")
        if args.config:
            if args.seed != 0 or args.bootstrap != 200 or args.betas:
                raise RewardlabError("with --config, seed, bootstrap and betas are settings of the configuration file")
            config = load_config(args.config)
        else:
            config = OveroptConfig(seed=args.seed, bootstrap=args.bootstrap,
                                   betas=tuple(float(b) for b in args.betas.split(",")) if args.betas else None)
        summary = run_experiment(config, args.output_dir)
        print(dumps({k: v for k, v in summary.items() if k != "config"}))
        print(f"[rewardlab] report: {Path(args.output_dir) / 'report.md'}", file=sys.stderr)
        return 0
    if not args.data or not args.model:
        raise RewardlabError("give --data (a gold-labelled pool) and --model (the proxy), or --quick")

    result = run_overopt(build_scorer(args, progress=True), args.data, args.output_dir,
                         [float(b) for b in args.betas.split(",")] if args.betas else None, args.bootstrap, args.seed)
    fits = {name: {k: f[k] for k in ("alpha", "beta", "r_squared", "peak_d")} for name, f in result["fits"].items()}
    print(dumps({"best_of_n_gold": result["best_of_n"]["gold"], "d": result["best_of_n"]["d"], "fits": fits,
                 "report": str(Path(args.output_dir) / "report.md")}))
    return 0


def _cmd_overopt_pool(args: argparse.Namespace) -> int:
    from ..overopt.gold import demo_gold_scorer
    from ..overopt.pool import sample_pool

    if args.prompts.startswith("demo"):
        from ..data.demo import demo_pairs

        count = int(args.prompts.split(":")[1]) if ":" in args.prompts else 24
        prompts: list = list(dict.fromkeys(p.prompt[0].content for p in demo_pairs("test", 4 * count)))[:count]
    else:
        from ..data.readers import iter_records
        from ..errors import DataFormatError

        prompts = []
        for location, record in iter_records(args.prompts):
            if not isinstance(record.get("prompt"), (str, list)):
                raise DataFormatError(location, "expected a prompt (text or chat messages)", "prompt")
            prompts.append(record["prompt"])
    if args.gold != "demo":
        raise RewardlabError("--gold: only 'demo' (the demo instructions' checks) is built in; label pools yourself for others")
    stats = sample_pool(make_generator(args), prompts, args.n, args.output, demo_gold_scorer(), args.max_new_tokens, args.seed)
    print(dumps(stats))
    return 0


def _cmd_beam_search(args: argparse.Namespace) -> int:
    from ..data.records import Message
    from ..search.beam import prm_beam_search

    scorer = build_scorer(args, model=args.prm)
    result = prm_beam_search(make_generator(args), scorer, (Message("user", args.prompt),), args.beam_width, args.expansions,
                             args.max_steps, show_progress=True)
    payload = {"best_steps": list(result.best_steps), "best_score": result.best_score,
               "tree": [{"id": n.id, "parent": n.parent, "depth": n.depth, "step": n.step, "score": n.score,
                         "finished": n.finished} for n in result.tree]}
    if args.output:
        Path(args.output).write_text(dumps(payload, indent=2))
    print(dumps({"best_steps": payload["best_steps"], "best_score": result.best_score, "nodes": len(result.tree)}))
    return 0


@dataclass(frozen=True, kw_only=True)
class LabelStepsOptions:
    """Options of ``rewardlab label-steps``: Math-Shepherd Monte-Carlo step labels (hard and soft), resumable."""

    data: str
    """GSM8K jsonl, GSM8K example model solutions, or {prompt, steps, answer}"""
    output: str
    """per-step results (JSON Lines, appended; a re-run skips finished steps)"""
    steps_output: str | None = None
    """also write step-labelled solutions for rewardlab train --objective prm"""
    kind: Literal["soft", "hard"] = "soft"
    """label written to --steps-output"""
    checker: Literal["gsm8k", "boxed", "exact"] = "gsm8k"
    """how a completion's final answer is read and compared with the gold answer"""
    n: int = 8
    """completions sampled per step"""
    max_new_tokens: int = 256
    """most tokens per sampled completion"""
    limit: int | None = None
    """label only the first N solutions"""
    ray_actors: int = 2
    """with --ray: actors, each with its own generator"""
    ray_timeout: float = field(default=10.0, metadata={"metavar": "SECONDS"})
    """with --ray ADDRESS: give up when the cluster does not answer within this many seconds"""


@dataclass(frozen=True, kw_only=True)
class BonOptions:
    """Options of ``rewardlab bon``: best-of-N over a file of candidates with any scorer (ORM, PRM, DPO policy,
    judge)."""

    prm: str | None = None
    """a process reward model folder (same as --model PRM --kind process)"""
    data: str
    """{prompt, candidates[, answers, correct]} jsonl, or GSM8K example solutions"""
    output: str
    """JSON Lines: the pick, every reward and the votes per item"""


@dataclass(frozen=True, kw_only=True)
class BonCurveOptions:
    """Options of ``rewardlab bon-curve``: accuracy vs N: majority, ORM, PRM-min, PRM-product, oracle (+ plot)."""

    prm: str | None = None
    """a process reward model folder (curves for min and product aggregation)"""
    data: str
    """candidates with per-candidate 'correct' labels (e.g. GSM8K example solutions)"""
    output_dir: str
    """bon_curve.json and bon_curve.png go here"""
    limit: int | None = None
    """use only the first N questions"""
    seed: int = 0
    """seed of the subset sampling for N < K"""


@dataclass(frozen=True, kw_only=True)
class OveroptOptions:
    """Options of ``rewardlab overopt``: over-optimization: gold vs proxy reward against sqrt(KL), best-of-n and
    KL-regularized, Gao fits."""

    quick: bool = False
    """the whole small experiment (the default configuration): a SmolLM2 pool of 24 demo prompts x 16, MiniLM
    proxies on 250 and 1,000 pairs x 2 seeds, mitigations, 2 re-training rounds, report (resumable)"""
    config: str | None = None
    """a YAML experiment configuration (the fields of OveroptConfig; see docs/overoptimization.md), run like
    --quick"""
    data: str | None = None
    """a candidate pool with gold per candidate: {prompt, candidates, gold|correct} or GSM8K example model
    solutions"""
    output_dir: str
    """overopt.json, report.md and overopt.png go here"""
    betas: str | None = None
    """comma-separated KL coefficients (default: a geometric grid from the proxy's spread)"""
    bootstrap: int = 200
    """prompt resamples for the fits' intervals"""
    seed: int = 0
    """seed of the resampling"""


@dataclass(frozen=True, kw_only=True)
class OveroptPoolOptions:
    """Options of ``rewardlab overopt-pool``: sample a gold-labelled candidate pool from a policy for rewardlab
    overopt (resumable)."""

    prompts: str = "demo:24"
    """'demo:K' (K built-in instruction prompts) or a file of {prompt} records"""
    n: int = 16
    """candidates sampled per prompt"""
    max_new_tokens: int = 64
    """most tokens per candidate"""
    gold: str = "demo"
    """the gold reward: 'demo' (the demo instructions' programmatic checks)"""
    output: str
    """the pool (JSON Lines; an interrupted run resumes it)"""


@dataclass(frozen=True, kw_only=True)
class BeamSearchOptions:
    """Options of ``rewardlab beam-search``: PRM-guided step-level beam search with a generator."""

    prompt: str
    """the question to solve step by step"""
    beam_width: int = 2
    """partial solutions kept after each step"""
    expansions: int = 2
    """next steps sampled per kept solution"""
    max_steps: int = 4
    """most steps before the search stops"""
    output: str | None = None
    """write the result and the search tree as JSON"""


def register(sub: Any) -> None:
    p = sub.add_parser("label-steps", help="Math-Shepherd Monte-Carlo step labels (hard and soft), resumable")
    add_generator_flags(p)
    add_config_flags(p, LabelStepsOptions, defaults=True)
    p.add_argument("--ray", nargs="?", const="local", default=None, metavar="ADDRESS",
                   help="sample on a pool of Ray actors (a local cluster, or the one at ADDRESS); the labels equal a single-process run's")
    p.set_defaults(func=_cmd_label_steps)

    p = sub.add_parser("bon", help="best-of-N over a file of candidates with any scorer (ORM, PRM, DPO policy, judge)")
    add_scorer_flags(p, required=False)
    add_config_flags(p, BonOptions, defaults=True)
    p.set_defaults(func=_cmd_bon)

    p = sub.add_parser("bon-curve", help="accuracy vs N: majority, ORM, PRM-min, PRM-product, oracle (+ plot)")
    add_scorer_flags(p, required=False, exclude=("aggregation",))
    add_config_flags(p, BonCurveOptions, defaults=True)
    p.set_defaults(func=_cmd_bon_curve)

    p = sub.add_parser("overopt", help="over-optimization: gold vs proxy reward against sqrt(KL), best-of-n and KL-regularized, Gao fits")
    add_scorer_flags(p, required=False, model_help="the proxy reward model (any scorer)")
    add_config_flags(p, OveroptOptions, defaults=True)
    p.set_defaults(func=_cmd_overopt)

    p = sub.add_parser("overopt-pool", help="sample a gold-labelled candidate pool from a policy for rewardlab overopt (resumable)")
    add_generator_flags(p)
    add_config_flags(p, OveroptPoolOptions, defaults=True)
    p.set_defaults(func=_cmd_overopt_pool)

    p = sub.add_parser("beam-search", help="PRM-guided step-level beam search with a generator")
    add_generator_flags(p)
    add_scorer_flags(p, model_flag="--prm", exclude=JUDGE_OPTIONS,
                     model_help="the scorer of partial solutions: a process reward model folder (or any reward model)")
    add_config_flags(p, BeamSearchOptions, defaults=True)
    p.set_defaults(func=_cmd_beam_search)
