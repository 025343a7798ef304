"""``rewardlab monitor``: reward-hacking statistics and alarms over a rollout dump of any trainer
(:func:`rewardlab.monitor.monitor_file`)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any

from .common import add_config_flags, config_from_values

__all__ = ["register"]


def _cmd_monitor(args: argparse.Namespace) -> int:
    from ..monitor.monitor import MonitorConfig
    from ..monitor.report import monitor_file
    from ..monitor.rollouts import RolloutFields

    result = monitor_file(args.rollouts, args.output_dir, config_from_values(MonitorConfig, args),
                          config_from_values(RolloutFields, args, prefix="field-"), reference=args.reference)
    print(f"{result.rollouts} rollouts, {len(result.windows)} windows, {len(result.alarms)} alarm(s)")
    for alarm in result.alarms:
        print("  " + alarm.describe())
    print(f"report: {result.output_dir}/report.md; alarms: {result.output_dir}/alarms.jsonl")
    return 1 if result.alarms and args.fail_on_alarm else 0


@dataclass(frozen=True, kw_only=True)
class MonitorOptions:
    """Options of ``rewardlab monitor``: reward-hacking alarms over a rollout dump (OpenRLHF, verl, TRL, any
    trainer)."""

    output_dir: str
    """folder for windows.jsonl, alarms.jsonl, report.md, monitor.png"""
    reference: str | None = None
    """a dump of reference-policy rollouts (default: the first window)"""
    fail_on_alarm: bool = False
    """exit with status 1 when any alarm fired (for CI gates)"""


def register(sub: Any) -> None:
    from ..monitor.monitor import MonitorConfig
    from ..monitor.rollouts import RolloutFields

    p = sub.add_parser("monitor", help="reward-hacking alarms over a rollout dump (OpenRLHF, verl, TRL, any trainer)",
                       description="Reads one JSON object per rollout (step, prompt, response, reward; optionally gold, "
                                   "ensemble member rewards, log-probs or a KL), computes window statistics against the "
                                   "first window (or --reference) and fires the alarm rules (docs/monitoring.md). Writes "
                                   "windows.jsonl, alarms.jsonl, report.md and monitor.png in --output-dir.")
    p.add_argument("rollouts", help="the rollout dump (.jsonl, .json or .parquet, optionally .gz)")
    add_config_flags(p, MonitorOptions, defaults=True)
    add_config_flags(p, MonitorConfig)
    add_config_flags(p, RolloutFields, prefix="field-")
    p.set_defaults(func=_cmd_monitor)
