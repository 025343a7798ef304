"""``rewardlab`` train, score and demo: each subcommand calls the Python API one to one."""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..jsonsafe import dumps

from ..errors import RewardlabError
from .common import add_config_flags, add_scorer_flags, add_train_flags, build_scorer, train_config_from_args

__all__ = ["register"]


def _cmd_train(args: argparse.Namespace) -> int:
    from ..training.loop import train

    result = train(train_config_from_args(args))
    print(dumps({"output_dir": str(result.output_dir), "steps": result.steps, **result.final_metrics}))
    return 0


def _cmd_score(args: argparse.Namespace) -> int:
    from ..scoring.files import score_file

    if Path(args.output).is_dir():
        raise RewardlabError(f"--output {args.output} is a folder; give the path of the .jsonl file to write")

    if args.ray is not None:  # blocks scored by a pool of Ray actors, each with its own scorer
        from ..distributed.scoring import score_file_ray
        from .common import scorer_config_from_args

        result = score_file_ray(scorer_config_from_args(args), args.data, args.output, address=None if args.ray == "local" else args.ray,
                                actors=args.ray_actors, gpus_per_actor=args.ray_gpus_per_actor, split=args.split,
                                connect_timeout=args.ray_timeout,
                                resume=args.resume, skip_too_long=args.skip_too_long)
    else:
        result = score_file(build_scorer(args), args.data, args.output, split=args.split, resume=args.resume,
                            skip_too_long=args.skip_too_long)
    note = f"; {result.too_long} response(s) too long, written with reward null (first at {result.first_too_long})" if result.too_long else ""
    resumed = f" ({result.resumed_lines} from the earlier run)" if result.resumed_lines else ""
    print(f"[rewardlab] wrote {result.lines} lines to {result.output}{resumed}{note}", file=sys.stderr)
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from ..demo import run_demo, run_ensemble_demo

    if args.ensemble > 1:
        if args.data:
            raise RewardlabError("demo --ensemble runs on the built-in data (its OOD comparison needs it): drop --data")
        run_ensemble_demo(output_dir=args.output_dir, model=args.model, members=args.ensemble, max_steps=args.max_steps)
    else:
        run_demo(output_dir=args.output_dir, data=args.data, model=args.model, max_steps=args.max_steps)
    return 0


def _cmd_cache(args: argparse.Namespace) -> int:
    import time

    from ..data.token_store import default_cache_dir, list_stores, remove_stores, select_stores

    root = Path(args.dir) if args.dir else default_cache_dir()
    stores = select_stores(list_stores(root), stale_only=args.stale, older_than_days=args.older_than)
    now = time.time()
    for store in stores:
        examples = "-" if store.examples is None else str(store.examples)
        print(f"{store.root.name}  {store.size_bytes / 2**20:8.1f} MB  {examples:>8} examples  "
              f"used {(now - store.last_used) / 86400:6.1f} days ago  {store.status:<14}  {store.source}")
    total = sum(s.size_bytes for s in stores) / 2**20
    if args.clear:
        remove_stores(stores)
        print(f"[rewardlab] deleted {len(stores)} token store(s), {total:.1f} MB, from {root}", file=sys.stderr)
    else:
        stale = sum(s.stale for s in stores)
        print(f"[rewardlab] {len(stores)} token store(s), {total:.1f} MB, in {root} ({stale} stale); "
              "--clear deletes the ones listed", file=sys.stderr)
    return 0


@dataclass(frozen=True, kw_only=True)
class TrainOptions:
    """Options of ``rewardlab train``: train a reward model (any objective)."""

    config: str | None = None
    """YAML or JSON file of TrainConfig options; flags override it"""


@dataclass(frozen=True, kw_only=True)
class ScoreOptions:
    """Options of ``rewardlab score``: score responses (or preference pairs) with any scorer: RM, PRM, DPO
    policy, LLM judge."""

    data: str
    """jsonl/json/parquet of {prompt, response}, {messages} or {prompt?, chosen, rejected}"""
    output: str
    """scores.jsonl to write, one line per input record"""
    split: str = "train"
    """split when --data is a datasets name (default: train)"""
    skip_too_long: bool = False
    """write responses that cannot fit in --max-length with reward null (and say how many) instead of stopping"""
    ray_actors: int = 2
    """with --ray: actors, each holding one copy of the model"""
    ray_gpus_per_actor: float = 0.0
    """with --ray: GPUs per actor (0: CPU actors)"""
    ray_timeout: float = field(default=10.0, metadata={"metavar": "SECONDS"})
    """with --ray ADDRESS: give up when the cluster does not answer within this many seconds"""
    resume: bool = False
    """keep the lines an earlier, interrupted run wrote to --output (same model, data and settings) and score
    the rest"""


@dataclass(frozen=True, kw_only=True)
class CacheOptions:
    """Options of ``rewardlab cache``: list or delete tokenized-data stores (the token cache)."""

    dir: str | None = None
    """cache folder (default: $REWARDLAB_CACHE/tokens or ~/.cache/rewardlab/tokens)"""
    stale: bool = False
    """only stores that can never be read again"""
    older_than: float | None = field(default=None, metadata={"metavar": "DAYS"})
    """only stores last used more than DAYS ago"""
    clear: bool = False
    """delete the stores listed"""


@dataclass(frozen=True, kw_only=True)
class DemoOptions:
    """Options of ``rewardlab demo``: train, evaluate and score on the embedded default (offline)."""

    output_dir: str | None = None
    """where to write data and the model (default: a temp folder)"""
    data: str | None = None
    """real preference data instead of the built-in set"""
    model: str = "builtin:minilm"
    """backbone (default: builtin:minilm)"""
    max_steps: int = 150
    """optimizer steps (default: 150)"""
    ensemble: int = 1
    """K > 1: train a K-head bootstrap ensemble and compare its spread on held-out vs out-of-distribution
    replies (default: 1)"""


def register(sub: Any) -> None:
    from ..training.config import TrainConfig

    p = sub.add_parser("train", help="train a reward model (any objective)", description=TrainConfig.__doc__)
    add_config_flags(p, TrainOptions, defaults=True)
    add_train_flags(p)
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("score", help="score responses (or preference pairs) with any scorer: RM, PRM, DPO policy, LLM judge",
                       description="Score every record of --data into --output (JSON Lines), streamed and resumable. The "
                                   "scoring flags are the fields of the scorer configs in rewardlab.scoring.config.")
    add_scorer_flags(p)
    add_config_flags(p, ScoreOptions, defaults=True)
    p.add_argument("--ray", nargs="?", const="local", default=None, metavar="ADDRESS",
                   help="score with a pool of Ray actors: on a local cluster started for this run, or the cluster at ADDRESS "
                        "(ray://host:10001, auto); needs 'rewardlab[ray]'")
    p.set_defaults(func=_cmd_score)

    p = sub.add_parser("cache", help="list or delete tokenized-data stores (the token cache)",
                       description="List the token cache's stores (size, examples, last use, status, source); with --clear, delete "
                                   "the ones listed. 'stale' stores can never be read again: unfinished builds, stores of an "
                                   "older rewardlab, and stores whose local data file was deleted or modified.")
    add_config_flags(p, CacheOptions, defaults=True)
    p.set_defaults(func=_cmd_cache)

    p = sub.add_parser("demo", help="train, evaluate and score on the embedded default (offline)")
    add_config_flags(p, DemoOptions, defaults=True)
    p.set_defaults(func=_cmd_demo)
