"""``rewardlab`` command line: each subcommand mirrors a Python function one to one.

* ``rewardlab train``  -> :func:`rewardlab.train` (flags generated from :class:`TrainConfig`)
* ``rewardlab score``  -> :func:`rewardlab.load_reward_model` + :func:`rewardlab.score_file`
* ``rewardlab eval``   -> :func:`rewardlab.evaluation.benchmark.evaluate_benchmark` + report
* ``rewardlab diagnose`` -> length bias, probes, shift (:mod:`rewardlab.evaluation.diagnostics`)
* ``rewardlab ratings`` -> :func:`rewardlab.evaluation.ratings.bradley_terry_ratings`, Elo, win rates
* ``rewardlab judge``  -> :class:`rewardlab.judges.judge.PairwiseJudge` over a cached client
* ``rewardlab judge-agreement`` -> :func:`rewardlab.judges.agreement.agreement_summary`
* ``rewardlab label-steps | bon | bon-curve | beam-search`` -> :mod:`rewardlab.labeling`, :mod:`rewardlab.search`
* ``rewardlab overopt-pool | overopt`` -> :func:`rewardlab.overopt.pool.sample_pool`, :func:`rewardlab.overopt.harness.run_overopt`
* ``rewardlab data agreement | aggregate | balance | dedup | contamination | card`` -> :mod:`rewardlab.data.annotations`,
  :mod:`rewardlab.data.quality`
* ``rewardlab serve``  -> :func:`rewardlab.serving.app.serve` (``create_app(scorer)`` for ASGI servers)
* ``rewardlab monitor`` -> :func:`rewardlab.monitor.monitor_file` (reward-hacking alarms over a rollout dump)
* ``rewardlab rlhf`` -> :func:`rewardlab.rlhf.run_rlhf` (iterative RLHF on TRL); ``rlhf-ratings`` -> :func:`rewardlab.rlhf.import_human_ratings`
* ``rewardlab kl``     -> :meth:`rewardlab.scoring.dpo.DPOScorer.kl_to_reference` (estimators in :mod:`rewardlab.control`)
* ``rewardlab cache``  -> :func:`rewardlab.data.token_store.list_stores` / ``select_stores`` / ``remove_stores``
* ``rewardlab demo``   -> :func:`rewardlab.run_demo`

One module per area (``core``, ``evaluate``, ``judges``, ``process``), each with a
``register(subparsers)``; shared flag helpers live in ``common``.

Errors from bad input print one line naming the file, line and field, and exit with status 2.
"""

from __future__ import annotations

import argparse
import sys

from ..errors import RewardlabError
from . import control, core, data, evaluate, judges, monitor, process, rlhf, serve
from .common import Parser

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rewardlab", description="Train, label, use and check reward models.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    for module in (core, evaluate, judges, process, serve, control, data, monitor, rlhf):
        module.register(sub)
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
