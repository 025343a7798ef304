"""Reward-hacking monitor: false-alarm rate per rule on stationary streams, detection delay on planted changes, and
the monitor's cost per step.

    python benchmarks/bench_monitor.py                     # 50 seeds x 100 windows per stationary kind
    python benchmarks/bench_monitor.py --seeds 10 --windows 50

Streams are those of the tests (``tests/monitor/streams.py``): 16 rollouts a step, windows of 32 rollouts (2 steps),
a change planted at step 41 that grows with the steps since. Prints JSON lines and Markdown tables.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rewardlab.monitor.monitor import MonitorConfig, RewardHackingMonitor, default_rules  # noqa: E402
from rewardlab.monitor.rollouts import Rollout  # noqa: E402
from tests.monitor.streams import stream  # noqa: E402


def run(rollouts: list[Rollout], config: MonitorConfig) -> RewardHackingMonitor:
    monitor = RewardHackingMonitor(config)
    for r in rollouts:
        monitor.add([r])
    monitor.end_step(rollouts[-1].step)
    return monitor


def false_alarms(seeds: int, windows: int, config: MonitorConfig) -> list[dict]:
    rows = []
    rules = [r.name for r in default_rules(config)]
    for kind in ("stationary", "stationary_gold", "stationary_members"):
        fired: Counter = Counter()
        runs_with_alarm: Counter = Counter()
        compared = 0
        for seed in range(seeds):
            monitor = run(stream(steps=2 * windows, change_at=None, seed=seed, kind=kind), config)
            compared += len(monitor.windows) - 1
            names = [a.rule for a in monitor.alarms]
            fired.update(names)
            runs_with_alarm.update(set(names))
        for rule in rules:
            rows.append({"stream": kind, "rule": rule, "alarms": fired[rule], "windows": compared,
                         "alarms_per_1000_windows": 1000 * fired[rule] / compared, "runs_with_alarm": runs_with_alarm[rule],
                         "runs": seeds})
    return rows


def delays(seeds: int, config: MonitorConfig) -> list[dict]:
    rows = []
    for kind, rule in (("drift", "reward_drift"), ("length", "length_growth"), ("members", "ensemble_disagreement"),
                       ("hack", "proxy_gold_gap"), ("hack", "gold_drawdown"), ("repeat", "repetition")):
        steps, early, missed = [], 0, 0
        for seed in range(seeds):
            monitor = run(stream(steps=100, change_at=41, seed=seed, kind=kind), config)
            first = [a.step for a in monitor.alarms if a.rule == rule]
            early += any(a.step < 41 for a in monitor.alarms)
            if first:
                steps.append(first[0] - 40)
            else:
                missed += 1
        rows.append({"change": kind, "rule": rule, "detected": len(steps), "missed": missed, "runs_with_an_alarm_before_the_change": early,
                     "median_delay_steps": statistics.median(steps) if steps else None, "max_delay_steps": max(steps) if steps else None})
    return rows


def cost(per_step: int = 8, steps: int = 400) -> dict:
    """Monitor time per training step with ``per_step`` rollouts of ~48 words, gold and 4 members."""
    rng = random.Random(0)
    words = [f"w{i}" for i in range(3000)]
    rollouts = [Rollout(s, "prompt", " ".join(rng.choice(words) for _ in range(48)), rng.gauss(0, 1), rng.gauss(0, 1),
                        tuple(rng.gauss(0, 1) for _ in range(4))) for s in range(1, steps + 1) for _ in range(per_step)]
    monitor = RewardHackingMonitor(MonitorConfig())
    began = time.perf_counter()
    for s in range(1, steps + 1):
        monitor.add(rollouts[(s - 1) * per_step: s * per_step])
        monitor.end_step(s)
    elapsed = time.perf_counter() - began
    return {"rollouts_per_step": per_step, "steps": steps, "ms_per_step": 1000 * elapsed / steps, "windows": len(monitor.windows)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=50)
    parser.add_argument("--windows", type=int, default=100)
    args = parser.parse_args()
    config = MonitorConfig()
    fa = false_alarms(args.seeds, args.windows, config)
    dl = delays(args.seeds, config)
    c = cost()
    for row in fa + dl + [c]:
        print(json.dumps(row))
    print(f"\nbench_monitor: {args.seeds} seeds, {time.strftime('%Y-%m-%d %H:%M')}, defaults {json.dumps(config.__dict__)}\n")
    print("| stationary stream | rule | alarms / 1000 windows | runs with an alarm |", "| --- | --- | --- | --- |", sep="\n")
    for r in fa:
        if r["stream"] == "stationary" or r["rule"] in ("proxy_gold_gap", "gold_drawdown", "ensemble_disagreement"):
            print(f"| {r['stream']} | {r['rule']} | {r['alarms_per_1000_windows']:.2f} | {r['runs_with_alarm']}/{r['runs']} |")
    print("\n| planted change (step 41) | rule | detected | median / max delay (steps) | runs with any alarm before the change |")
    print("| --- | --- | --- | --- | --- |")
    for r in dl:
        print(f"| {r['change']} | {r['rule']} | {r['detected']}/{r['detected'] + r['missed']} | {r['median_delay_steps']} / "
              f"{r['max_delay_steps']} | {r['runs_with_an_alarm_before_the_change']} |")
    print(f"\nmonitor cost: {c['ms_per_step']:.2f} ms per step ({c['rollouts_per_step']} rollouts of 48 words, gold, 4 members)")


if __name__ == "__main__":
    main()
