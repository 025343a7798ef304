"""``rewardlab rlhf``: iterative RLHF on TRL (:func:`rewardlab.rlhf.run_rlhf`); ``rewardlab rlhf-ratings``: import
people's ratings of the blind sample file (:func:`rewardlab.rlhf.import_human_ratings`)."""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass
from typing import Any

from ..errors import RewardlabError
from .common import add_config_flags

__all__ = ["register"]


def _config(args: argparse.Namespace) -> Any:
    from ..config import config_from_file
    from ..rlhf.config import RLHFConfig, quick_config

    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(RLHFConfig) if getattr(args, f.name, None) is not None}
    if args.quick and args.config:
        raise RewardlabError("give --quick or --config, not both")
    if args.quick:
        return quick_config(**values)
    if args.config:
        return config_from_file(RLHFConfig, args.config, build=RLHFConfig.from_options, **values)
    return RLHFConfig.from_options(**values)


def _cmd_rlhf(args: argparse.Namespace) -> int:
    from ..rlhf.loop import run_rlhf

    result = run_rlhf(_config(args), args.output_dir, resume=args.resume)
    print(f"stopped: {result.stop_reason}")
    for e in result.evaluations:
        gold = "" if e.get("gold_mean") is None else f" gold {e['gold_mean']:.3f}"
        print(f"  step {e['step']:>4} round {e['round']}: proxy {e['proxy_mean']:+.3f}{gold} KL(k3) {e['kl_k3']:.3f} "
              f"length {e['length_words']:.1f}")
    print(f"report: {result.output_dir}/report.md")
    return 0


def _cmd_ratings(args: argparse.Namespace) -> int:
    from ..rlhf.report import import_human_ratings

    result = import_human_ratings(args.run_dir, args.ratings)
    print(f"{result['ratings']} ratings: win rate {result['win_rate']:.3f} (SE {result['win_rate_se']:.3f}); report rewritten")
    return 0


@dataclass(frozen=True, kw_only=True)
class RlhfOptions:
    """Options of ``rewardlab rlhf``: iterative RLHF on TRL GRPO: optimize a policy against a rewardlab RM,
    evaluate, relabel, update."""

    output_dir: str
    """the run folder (config, metrics, samples, rounds, report, checkpoints)"""
    config: str | None = None
    """a YAML/JSON of RLHFConfig fields (flags win)"""
    quick: bool = False
    """the built-in small run: SmolLM2-135M, demo proxy and gold, 2 rounds x 30 steps"""
    resume: bool = False
    """continue the run in --output-dir from its last checkpoint"""


def register(sub: Any) -> None:
    from ..rlhf.config import RLHFConfig

    p = sub.add_parser("rlhf", help="iterative RLHF on TRL GRPO: optimize a policy against a rewardlab RM, evaluate, relabel, update",
                       description="Rounds of GRPO (TRL) against the proxy reward, with evaluation on held-out prompts, "
                                   "reward-hacking monitors, labelling of the policy's replies and reward-model updates "
                                   "(docs/rlhf.md). Every option is a field of rewardlab.rlhf.RLHFConfig.")
    add_config_flags(p, RlhfOptions, defaults=True)
    add_config_flags(p, RLHFConfig)
    p.set_defaults(func=_cmd_rlhf)
    q = sub.add_parser("rlhf-ratings", help="import people's ratings of an RLHF run's blind sample file (human_eval.jsonl)")
    q.add_argument("run_dir", help="the RLHF run folder")
    q.add_argument("ratings", help="jsonl of {id, preferred: a|b|tie}")
    q.set_defaults(func=_cmd_ratings)
