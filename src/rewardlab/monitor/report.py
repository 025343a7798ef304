"""Monitoring a finished or running trainer's rollout dump (``rewardlab monitor``): windows, alarms, report, plot."""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..jsonsafe import dumps
from ..plotting import pyplot, save_figure
from .monitor import MonitorConfig, RewardHackingMonitor
from .rollouts import RolloutFields, read_rollouts
from .rules import Alarm

__all__ = ["MonitorResult", "monitor_file", "plot_windows", "write_report"]

PLOTTED = ("reward_mean", "reward_w1", "gold_mean", "proxy_gold_gap", "gold_drawdown", "length_ratio",
           "repetition_increase", "distinct_2_ratio", "disagreement_ratio", "kl", "d_over_peak", "latent_outlier_share")


@dataclass(frozen=True)
class MonitorResult:
    """What a monitored dump gave: the windows' statistics, the alarms, and the files written."""

    rollouts: int
    windows: list[dict[str, Any]]
    alarms: list[Alarm]
    output_dir: str


def _shown(value: Any) -> str:
    if isinstance(value, float):
        return "-" if not math.isfinite(value) else f"{value:.3g}"
    return str(value)


def plot_windows(windows: list[dict[str, Any]], alarms: list[Alarm], path: str | os.PathLike) -> bool:
    """Every plotted statistic against step, each alarm a vertical line on its statistic's panel (and faint on the
    others). False when matplotlib is missing (``pip install 'rewardlab[plots]'``)."""
    plt = pyplot()
    if plt is None:
        return False
    present = [s for s in PLOTTED if any(isinstance(w.get(s), (int, float)) and math.isfinite(w[s]) for w in windows)]
    if not present:
        return False
    cols = 3
    rows = (len(present) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 2.6 * rows), squeeze=False)
    steps = [w["last_step"] for w in windows]
    for ax, stat in zip(axes.flat, present):
        ax.plot(steps, [w.get(stat, float("nan")) for w in windows], marker="o", markersize=3)
        ax.set_title(stat, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        for alarm in alarms:
            own = alarm.statistic == stat
            ax.axvline(alarm.step, color="red" if own else "grey", alpha=0.8 if own else 0.2, linestyle="--")
            if own:
                ax.axhline(alarm.threshold, color="red", alpha=0.4, linewidth=0.8)
    for ax in list(axes.flat)[len(present):]:
        ax.axis("off")
    save_figure(fig, path)
    return True


def write_report(windows: list[dict[str, Any]], alarms: list[Alarm], path: str | os.PathLike, source: str, plotted: bool,
                 config: MonitorConfig) -> None:
    """``report.md``: the alarms (first one per rule), then a table of the windows' main statistics."""
    lines = [f"# Reward-hacking monitor: {source}", "",
             f"{len(windows)} windows (at least {config.min_window_rollouts} rollouts each; the first is the reference), "
             f"{len(alarms)} alarm(s).", ""]
    if alarms:
        lines += ["| step | rule | statistic | value | threshold | window steps |", "| --- | --- | --- | --- | --- | --- |"]
        lines += [f"| {a.step} | {a.rule} | {a.statistic} | {a.value:.4g} | {'>' if a.direction == 'above' else '<'} "
                  f"{a.threshold:g} | {a.window['first_step']}-{a.window['last_step']} |" for a in alarms]
    else:
        lines.append("No alarm fired.")
    shown = [s for s in ("rollouts", *PLOTTED) if any(isinstance(w.get(s), (int, float)) and math.isfinite(w[s]) for w in windows)]
    lines += ["", "## Windows", "", "| steps | " + " | ".join(shown) + " |", "| --- " * (len(shown) + 1) + "|"]
    lines += [f"| {w['first_step']}-{w['last_step']}{' (ref)' if w['reference'] else ''} | "
              + " | ".join(_shown(w.get(s, float('nan'))) for s in shown) + " |" for w in windows]
    if plotted:
        lines += ["", "![statistics against step](monitor.png)"]
    lines += ["", "Settings: `" + dumps(asdict(config)) + "`", ""]
    Path(path).write_text("\n".join(lines))


def monitor_file(path: str | os.PathLike, output_dir: str | os.PathLike, config: MonitorConfig = MonitorConfig(),
                 fields: RolloutFields = RolloutFields(), reference: str | os.PathLike | None = None) -> MonitorResult:
    """Monitor a rollout dump as if live: rollouts sorted by step (stable), fed window by window.

    Writes ``windows.jsonl``, ``alarms.jsonl`` (one alarm per line), ``report.md`` and ``monitor.png`` in ``output_dir``.
    ``reference`` is an optional dump of reference-policy rollouts (else the first window is the reference).
    """
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    alarms_path = out / "alarms.jsonl"
    alarms_path.write_text("")  # a fresh run: alarms of an earlier run of the same folder are not kept
    rollouts = sorted(read_rollouts(path, fields), key=lambda r: r.step)
    ref = list(read_rollouts(reference, fields)) if reference is not None else None
    monitor = RewardHackingMonitor(config, reference=ref, alarms_path=alarms_path)
    from tqdm.auto import tqdm

    for rollout in tqdm(rollouts, desc="monitor", unit="rollout", disable=len(rollouts) < 10000):
        monitor.add([rollout])
    if rollouts:
        monitor.end_step(rollouts[-1].step)
    monitor.close()
    monitor.write_windows(out / "windows.jsonl")
    plotted = plot_windows(monitor.windows, monitor.alarms, out / "monitor.png")
    write_report(monitor.windows, monitor.alarms, out / "report.md", str(path), plotted, config)
    return MonitorResult(len(rollouts), monitor.windows, monitor.alarms, str(out))
