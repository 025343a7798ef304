"""``rewardlab serve``: the reward server (``rewardlab.serving.app``) around any scorer the scoring flags describe."""

from __future__ import annotations

import argparse
from typing import Any

from ..errors import RewardlabError
from .common import add_config_flags, add_scorer_flags, build_scorer, config_from_values

__all__ = ["register"]


def _port_free(host: str, port: int) -> None:
    """Fail before the model loads when the port is taken (uvicorn would say so only after the load)."""
    import socket

    if port == 0:
        return
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, port))
        except OSError as err:
            raise RewardlabError(f"cannot listen on {host}:{port}: {err.strerror} (another server there? choose --port)") from None


def _cmd_serve(args: argparse.Namespace) -> int:
    from ..serving.app import ServeConfig, require_server_extras, serve

    config = config_from_values(ServeConfig, args)
    require_server_extras(config)  # before the model loads: a missing package is one line, not a traceback
    _port_free(config.host, config.port)

    # --api-key-env is the server's own bearer token (ServeConfig); the served scorer's key (a judge's or a remote
    # server's) has its own flag, so a reward-model server can require a key.
    serve(build_scorer(args, api_key_env=args.scorer_api_key_env), config)
    return 0


def register(sub: Any) -> None:
    from ..serving.app import ServeConfig

    p = sub.add_parser("serve", help="serve rewards over HTTP (OpenRLHF /get_reward, /v1/score) with dynamic batching",
                       description="An HTTP reward server for RL trainers around any scorer (RM, PRM, DPO policy, judge, "
                                   "multi-head with --weights/--primary). Binds 127.0.0.1 unless --host says otherwise.")
    add_scorer_flags(p, exclude=("api_key_env",))
    p.add_argument("--scorer-api-key-env", default=None,
                   help="environment variable with the API key of the served scorer when it is an LLM judge or a remote "
                        "server (not the reward server's own key: that is --api-key-env)")
    add_config_flags(p, ServeConfig)
    p.set_defaults(func=_cmd_serve)
