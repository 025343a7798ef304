"""The streaming monitor: rollouts in, per-window statistics against a reference window, alarms out.

Windows are tumbling and close at a step boundary once they hold ``min_window_rollouts`` rollouts, so a trainer
with 8 rollouts a step gets windows of 4 steps and one with 1,024 a step gets a window per step. The reference is
the first window (the policy before it has moved far), or rollouts given up front (e.g. the reference policy's
replies). Statistics (names as logged; "ref" is the reference window):

=============================  ================================================================================
``reward_mean/std/q10/q50/q90``  proxy reward summary
``reward_w1``                  1-Wasserstein distance to the ref rewards, in ref reward stds (drift)
``reward_psi``                 population stability index against the ref rewards' deciles
``length_mean``, ``length_ratio``  reply length (words) and its ratio to the ref mean
``length_reward_spearman``     rank correlation of length and reward in the window
``distinct_2``, ``distinct_2_ratio``  distinct bigrams (Li et al. 2016) and the ratio to the ref
``repeated_ngram_rate``, ``repetition_increase``  mean in-reply repeated n-gram share, and its rise over the ref
``disagreement_mean``, ``disagreement_ratio``, ``disagreement_trend``  mean std across ensemble members, ratio to
                               the ref, slope over the last ``trend_windows`` windows
``gold_mean/std``, ``proxy_gold_spearman``  gold summary and rank agreement with the proxy on the window's rollouts
``proxy_z``, ``gold_z``, ``proxy_gold_gap``  shifts of the means in ref stds, and ``proxy_z - gold_z``
``gold_smoothed``, ``gold_drawdown``  trailing mean of the last windows' gold, and its best so far minus now,
                               in ref gold stds
``kl_k1``, ``kl_k3``, ``kl``, ``sqrt_kl``  per-sequence KL in nats (from log-probs; ``kl`` falls back to given KLs)
``gao_alpha/beta/peak_d``, ``d_over_peak``  running fit of gold gain = d (alpha - beta log d) (Gao et al.,
                               arXiv:2210.10760, RL form) over the windows so far; ``d* = exp(alpha / beta - 1)``
plugin statistics              e.g. ``latent_outlier_share`` (:class:`~rewardlab.monitor.latent.LatentOutlierMonitor`)
=============================  ================================================================================
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np

from ..config import validate_fields
from ..errors import ConfigError
from ..jsonsafe import dumps
from . import stats
from .rollouts import Rollout
from .rules import Alarm, AlarmRule, RuleState

__all__ = ["MonitorConfig", "RewardHackingMonitor", "WindowPlugin", "default_rules"]


@runtime_checkable
class WindowPlugin(Protocol):
    """An extra statistic source: fitted once on the reference window, then asked for numbers on every window."""

    name: str

    def fit(self, reference: Sequence[Rollout]) -> None: ...

    def statistics(self, window: Sequence[Rollout]) -> dict[str, float]: ...


@dataclass(frozen=True)
class MonitorConfig:
    """Windows, statistics and the thresholds of the default alarm rules (None switches a rule off).
    Defaults and their false-alarm rates: docs/monitoring.md."""

    min_window_rollouts: int = 32
    """A window closes at the first step boundary at which it holds at least this many rollouts."""
    patience: int = 2
    """Consecutive windows a statistic must stay beyond its threshold before a rule fires."""
    ngram: int = 3
    """n of the repeated n-gram rate (words)."""
    trend_windows: int = 5
    """Windows the disagreement trend is fitted over."""
    smooth_windows: int = 5
    """Windows averaged (trailing) for the gold drawdown: the peak of a noisy series is biased up, a mean of a few
    windows is not fooled by one lucky window."""
    gao_min_points: int = 4
    """Windows with gold and KL needed before the running Gao fit is made."""
    drift_threshold: float | None = 1.5
    """Rule reward_drift: reward_w1 (Wasserstein distance to the reference rewards, in reference stds) above this."""
    length_ratio_threshold: float | None = 1.5
    """Rule length_growth: mean reply length over the reference's above this."""
    repetition_threshold: float | None = 0.1
    """Rule repetition: repeated n-gram rate above the reference's by more than this (absolute share)."""
    distinct_ratio_threshold: float | None = 0.6
    """Rule diversity_collapse: distinct-2 over the reference's below this."""
    disagreement_ratio_threshold: float | None = 2.0
    """Rule ensemble_disagreement: members' mean std over the reference's above this (ensemble proxies only)."""
    gap_threshold: float | None = 1.0
    """Rule proxy_gold_gap: proxy_z - gold_z above this (the proxy ran ahead of the gold; needs gold)."""
    drawdown_threshold: float | None = 0.5
    """Rule gold_drawdown: the gold (trailing mean of ``smooth_windows`` windows) below its best so far by more than
    this many reference gold stds (needs gold)."""
    peak_threshold: float | None = 1.0
    """Rule past_predicted_peak: sqrt(KL) over the running Gao fit's predicted peak d* above this (needs gold and KL)."""
    kl_budget: float | None = None
    """Rule kl_budget: per-sequence KL (nats) above this budget (off unless set)."""
    latent_threshold: float | None = 0.25
    """Rule latent_outliers: share of rollouts that are latent-space outliers above this (needs the latent plugin)."""

    def __post_init__(self) -> None:
        validate_fields(self)
        for name in ("min_window_rollouts", "patience", "ngram", "trend_windows", "smooth_windows"):
            if getattr(self, name) < 1:
                raise ConfigError(f"option '{name}' must be >= 1, got {getattr(self, name)}")
        if self.gao_min_points < 3:
            raise ConfigError(f"option 'gao_min_points' must be >= 3 (two parameters are fitted), got {self.gao_min_points}")


def default_rules(config: MonitorConfig = MonitorConfig()) -> list[AlarmRule]:
    """The rules whose thresholds ``config`` sets (None: left out).

    >>> [r.name for r in default_rules(MonitorConfig(drift_threshold=None))][:3]
    ['length_growth', 'repetition', 'diversity_collapse']
    """
    table: list[tuple[str, str, float | None, Literal["above", "below"]]] = [
        ("reward_drift", "reward_w1", config.drift_threshold, "above"),
        ("length_growth", "length_ratio", config.length_ratio_threshold, "above"),
        ("repetition", "repetition_increase", config.repetition_threshold, "above"),
        ("diversity_collapse", "distinct_2_ratio", config.distinct_ratio_threshold, "below"),
        ("ensemble_disagreement", "disagreement_ratio", config.disagreement_ratio_threshold, "above"),
        ("proxy_gold_gap", "proxy_gold_gap", config.gap_threshold, "above"),
        ("gold_drawdown", "gold_drawdown", config.drawdown_threshold, "above"),
        ("past_predicted_peak", "d_over_peak", config.peak_threshold, "above"),
        ("kl_budget", "kl", config.kl_budget, "above"),
        ("latent_outliers", "latent_outlier_share", config.latent_threshold, "above"),
    ]
    return [AlarmRule(name, stat, float(t), direction, config.patience)
            for name, stat, t, direction in table if t is not None]


def _ratio(value: float, reference: float) -> float:
    return value / reference if reference > 0 and math.isfinite(reference) else float("nan")


class RewardHackingMonitor:
    """Feed rollouts as they come (:meth:`add`), tell it when a step ends (:meth:`end_step`); read ``windows`` and
    ``alarms``. With ``alarms_path`` every alarm is appended to that jsonl as it fires (one JSON object per line:
    step, rule, statistic, value, threshold, direction, patience, window).

    >>> import random
    >>> rng = random.Random(0)
    >>> monitor = RewardHackingMonitor(MonitorConfig(min_window_rollouts=20))
    >>> for step in range(1, 41):
    ...     words = 10 if step <= 20 else 10 + 2 * (step - 20)   # replies start to grow at step 21
    ...     _ = monitor.add([Rollout(step, "q", " ".join(["w%d" % rng.randrange(999) for _ in range(words)]), rng.gauss(0, 1))
    ...                  for _ in range(10)])
    ...     _ = monitor.end_step(step)
    >>> [alarm.rule for alarm in monitor.alarms]
    ['length_growth']
    """

    def __init__(self, config: MonitorConfig = MonitorConfig(), rules: Sequence[AlarmRule] | None = None,
                 reference: Sequence[Rollout] | None = None, plugins: Sequence[WindowPlugin] = (),
                 alarms_path: str | os.PathLike | None = None):
        self.config = config
        self.rules = list(default_rules(config) if rules is None else rules)
        names = [r.name for r in self.rules]
        if len(set(names)) != len(names):
            raise ConfigError(f"alarm rule names must be unique, got {names}")
        self.plugins = list(plugins)
        self.alarms_path = None if alarms_path is None else Path(alarms_path)
        self.windows: list[dict[str, Any]] = []
        self.alarms: list[Alarm] = []
        self._buffer: list[Rollout] = []
        self._last_step: int | None = None
        self._states = {r.name: RuleState() for r in self.rules}
        self._ref: dict[str, Any] | None = None
        self._best_gold = -math.inf
        if reference is not None:
            self._set_reference(list(reference))

    # -- feeding --------------------------------------------------------------------------------------------------
    def add(self, rollouts: Iterable[Rollout]) -> list[Alarm]:
        """Add rollouts (steps never go back); a window that is full when a later step starts closes first."""
        fired: list[Alarm] = []
        for rollout in rollouts:
            if self._last_step is not None and rollout.step < self._last_step:
                raise ConfigError(f"rollouts must come in step order: step {rollout.step} after step {self._last_step}")
            if self._last_step is not None and rollout.step > self._last_step:
                fired += self.end_step(self._last_step)
            self._buffer.append(rollout)
            self._last_step = rollout.step
        return fired

    def end_step(self, step: int) -> list[Alarm]:
        """Say that ``step`` is over: the window closes if it holds enough rollouts. Returns the alarms fired."""
        if len(self._buffer) < self.config.min_window_rollouts or (self._buffer and self._buffer[-1].step > step):
            return []
        return self._close()

    def close(self) -> list[Alarm]:
        """End of the run: the last, partial window gets its statistics (marked ``partial``); rules skip it when it
        holds fewer than half a window (its numbers are too noisy to alarm on)."""
        return self._close(partial=True) if self._buffer else []

    # -- windows --------------------------------------------------------------------------------------------------
    def _set_reference(self, rollouts: list[Rollout]) -> None:
        if len(rollouts) < 2:
            raise ConfigError(f"the reference needs at least 2 rollouts, got {len(rollouts)}")
        rewards = [r.reward for r in rollouts]
        golds = [r.gold for r in rollouts if r.gold is not None]
        lengths = [stats.reply_length(r.response) for r in rollouts]
        self._ref = {
            "rewards": rewards, "reward_mean": float(np.mean(rewards)), "reward_std": float(np.std(rewards, ddof=1)),
            "length_mean": float(np.mean(lengths)), "distinct_2": stats.distinct_n([r.response for r in rollouts], 2),
            "repetition": float(np.mean([stats.repeated_ngram_rate(r.response, self.config.ngram) for r in rollouts])),
            "disagreement": self._disagreement(rollouts),
            "gold_mean": float(np.mean(golds)) if golds else float("nan"),
            "gold_std": float(np.std(golds, ddof=1)) if len(golds) > 1 else float("nan"),
        }
        for plugin in self.plugins:
            plugin.fit(rollouts)

    @staticmethod
    def _disagreement(rollouts: Sequence[Rollout]) -> float:
        spreads = [float(np.std(r.members, ddof=1)) for r in rollouts if r.members is not None and len(r.members) > 1]
        return float(np.mean(spreads)) if spreads else float("nan")

    def _statistics(self, window: list[Rollout]) -> dict[str, Any]:
        ref, cfg = self._ref, self.config
        assert ref is not None
        rewards = [r.reward for r in window]
        responses = [r.response for r in window]
        lengths = [stats.reply_length(t) for t in responses]
        out: dict[str, Any] = {"first_step": window[0].step, "last_step": window[-1].step, "rollouts": len(window)}
        out.update({f"reward_{k}": v for k, v in stats.summarize(rewards).items()})
        out["reward_w1"] = stats.wasserstein_distance(rewards, ref["rewards"]) / ref["reward_std"] if ref["reward_std"] > 0 else float("nan")
        out["reward_psi"] = stats.population_stability_index(rewards, ref["rewards"])
        out["length_mean"] = float(np.mean(lengths))
        out["length_ratio"] = _ratio(out["length_mean"], ref["length_mean"])
        out["length_reward_spearman"] = stats.rank_correlation(lengths, rewards)
        out["distinct_2"] = stats.distinct_n(responses, 2)
        out["distinct_2_ratio"] = _ratio(out["distinct_2"], ref["distinct_2"])
        out["repeated_ngram_rate"] = float(np.mean([stats.repeated_ngram_rate(t, cfg.ngram) for t in responses]))
        out["repetition_increase"] = out["repeated_ngram_rate"] - ref["repetition"]
        out["disagreement_mean"] = self._disagreement(window)
        out["disagreement_ratio"] = _ratio(out["disagreement_mean"], ref["disagreement"])
        history = [w["disagreement_mean"] for w in self.windows[-(cfg.trend_windows - 1):]] if cfg.trend_windows > 1 else []
        out["disagreement_trend"] = stats.linear_trend([*history, out["disagreement_mean"]])
        self._gold_statistics(window, out)
        self._kl_statistics(window, out)
        for plugin in self.plugins:
            out.update(plugin.statistics(window))
        return out

    def _gold_statistics(self, window: list[Rollout], out: dict[str, Any]) -> None:
        ref = self._ref
        assert ref is not None
        scored = [r for r in window if r.gold is not None]
        golds = [float(r.gold) for r in scored if r.gold is not None]
        out["gold_rollouts"] = len(scored)
        out["gold_mean"] = float(np.mean(golds)) if golds else float("nan")
        out["gold_std"] = float(np.std(golds, ddof=1)) if len(golds) > 1 else float("nan")
        out["proxy_gold_spearman"] = stats.rank_correlation([r.reward for r in scored], golds) if golds else float("nan")
        out["proxy_z"] = stats.standardized_shift(out["reward_mean"], ref["reward_mean"], ref["reward_std"])
        out["gold_z"] = stats.standardized_shift(out["gold_mean"], ref["gold_mean"], ref["gold_std"]) if golds else float("nan")
        out["proxy_gold_gap"] = out["proxy_z"] - out["gold_z"]
        if golds:
            recent = [w for w in self.windows[-(self.config.smooth_windows - 1):] if w.get("gold_rollouts")] \
                if self.config.smooth_windows > 1 else []
            weights = [w["gold_rollouts"] for w in recent] + [len(golds)]
            out["gold_smoothed"] = float(np.average([w["gold_mean"] for w in recent] + [out["gold_mean"]], weights=weights))
            self._best_gold = max(self._best_gold, out["gold_smoothed"])
            out["gold_drawdown"] = (self._best_gold - out["gold_smoothed"]) / ref["gold_std"] if ref["gold_std"] > 0 else float("nan")
        else:
            out["gold_smoothed"] = out["gold_drawdown"] = float("nan")

    def _kl_statistics(self, window: list[Rollout], out: dict[str, Any]) -> None:
        pairs = [stats.sequence_kl_from_logprobs(r.logprobs, r.reference_logprobs) for r in window
                 if r.logprobs is not None and r.reference_logprobs is not None]
        given = [r.kl for r in window if r.kl is not None]
        out["kl_k1"] = float(np.mean([p[0] for p in pairs])) if pairs else float("nan")
        out["kl_k3"] = float(np.mean([p[1] for p in pairs])) if pairs else float("nan")
        out["kl"] = out["kl_k3"] if pairs else (float(np.mean(given)) if given else float("nan"))
        out["sqrt_kl"] = math.sqrt(max(out["kl"], 0.0)) if math.isfinite(out["kl"]) else float("nan")
        out.update(self._gao_fit(out))

    def _gao_fit(self, current: dict[str, Any]) -> dict[str, float]:
        none = {"gao_alpha": float("nan"), "gao_beta": float("nan"), "gao_peak_d": float("nan"), "d_over_peak": float("nan")}
        ref_gold = self._ref["gold_mean"] if self._ref else float("nan")
        points = [(w["sqrt_kl"], w["gold_mean"] - ref_gold) for w in [*self.windows, current]
                  if math.isfinite(w.get("sqrt_kl", float("nan"))) and math.isfinite(w.get("gold_mean", float("nan")))
                  and w["sqrt_kl"] > 0]
        if len(points) < self.config.gao_min_points or not math.isfinite(ref_gold):
            return none
        from ..overopt.fits import fit_gao

        d, gain = zip(*points)
        if np.ptp(d) == 0:
            return none
        fit = fit_gao(d, gain, "rl")
        peak = fit.peak_d if fit.peak_d is not None else float("nan")
        return {"gao_alpha": fit.alpha, "gao_beta": fit.beta, "gao_peak_d": peak,
                "d_over_peak": current["sqrt_kl"] / peak if peak and math.isfinite(peak) else float("nan")}

    def _close(self, partial: bool = False) -> list[Alarm]:
        window, self._buffer = self._buffer, []
        if self._ref is None:
            self._set_reference(window)
            row = {**self._statistics(window), "reference": True, "partial": partial}
            self.windows.append(row)
            return []
        row = {**self._statistics(window), "reference": False, "partial": partial}
        self.windows.append(row)
        if partial and len(window) < self.config.min_window_rollouts / 2:
            return []
        fired = []
        for rule in self.rules:
            value = row.get(rule.statistic)
            if self._states[rule.name].update(rule, value):
                fired.append(Alarm(row["last_step"], rule.name, rule.statistic, float(value), rule.threshold,  # type: ignore[arg-type]  # fires on numbers only
                                   rule.direction, rule.patience, row))
        self.alarms += fired
        if fired and self.alarms_path is not None:
            self.alarms_path.parent.mkdir(parents=True, exist_ok=True)
            with self.alarms_path.open("a") as handle:
                for alarm in fired:
                    handle.write(dumps(alarm.to_json()) + "\n")
        return fired

    def latest(self) -> dict[str, Any]:
        """The last closed window's statistics (empty before the first), e.g. to log beside a trainer's own."""
        return dict(self.windows[-1]) if self.windows else {}

    def write_windows(self, path: str | os.PathLike) -> None:
        """Every window's statistics, one JSON object per line."""
        Path(path).write_text("".join(dumps(w) + "\n" for w in self.windows))
