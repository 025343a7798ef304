"""``rewardlab serve``: the reward server (``rewardlab.serving.app``) around any scorer the scoring flags describe."""

from __future__ import annotations

import argparse
from typing import Any

from .common import add_config_flags, add_scorer_flags, build_scorer, config_from_values

__all__ = ["register"]


def _cmd_serve(args: argparse.Namespace) -> int:
    from ..serving.app import ServeConfig, serve

    serve(build_scorer(args), config_from_values(ServeConfig, args))
    return 0


def register(sub: Any) -> None:
    from ..serving.app import ServeConfig

    p = sub.add_parser("serve", help="serve rewards over HTTP (OpenRLHF /get_reward, /v1/score) with dynamic batching",
                       description="An HTTP reward server for RL trainers around any scorer (RM, PRM, DPO policy, judge, "
                                   "multi-head with --weights/--primary). Binds 127.0.0.1 unless --host says otherwise.")
    add_scorer_flags(p, exclude=("api_key_env",))
    add_config_flags(p, ServeConfig)
    p.set_defaults(func=_cmd_serve)
