"""Planted changes fire the right alarm within the patience; stationary streams fire none."""

import json
import math

import pytest

from rewardlab.errors import ConfigError
from rewardlab.monitor.monitor import MonitorConfig, RewardHackingMonitor, default_rules
from rewardlab.monitor.rollouts import Rollout
from rewardlab.monitor.rules import AlarmRule

from .streams import stream


def run(rollouts, **config):
    monitor = RewardHackingMonitor(MonitorConfig(**config))
    for r in rollouts:
        monitor.add([r])
    monitor.end_step(rollouts[-1].step)
    monitor.close()
    return monitor


@pytest.mark.parametrize("kind, rule", [
    ("drift", "reward_drift"), ("length", "length_growth"), ("members", "ensemble_disagreement"),
    ("hack", "proxy_gold_gap"), ("repeat", "repetition"),
])
def test_a_planted_change_fires_its_rule_within_the_patience(kind, rule):
    monitor = run(stream(kind=kind, change_at=21, steps=48))  # windows of 2 steps (16 rollouts a step, 32 a window)
    fired = [a for a in monitor.alarms if a.rule == rule]
    assert fired, [a.rule for a in monitor.alarms]
    assert 21 < fired[0].step <= 21 + 2 * 2 * 5, fired[0].describe()  # within a few windows of the change
    assert all(a.step > 20 for a in monitor.alarms)  # nothing before the change


def test_proxy_up_gold_down_also_shows_as_a_gold_drawdown_and_negative_gain():
    monitor = run(stream(kind="hack", change_at=11, steps=40))
    rules = {a.rule for a in monitor.alarms}
    assert {"proxy_gold_gap", "gold_drawdown"} <= rules
    assert monitor.windows[-1]["gold_z"] < 0 < monitor.windows[-1]["proxy_z"]


@pytest.mark.parametrize("kind", ["stationary", "stationary_gold", "stationary_members"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_stationary_stream_fires_no_alarm_over_many_windows(kind, seed):
    monitor = run(stream(kind=kind, change_at=None, steps=200, seed=seed))
    assert len(monitor.windows) == 100
    assert monitor.alarms == [], [a.describe() for a in monitor.alarms]


def test_patience_counts_consecutive_windows_and_a_rule_fires_once_per_excursion():
    rule = AlarmRule("r", "x", 1.0, patience=3)
    from rewardlab.monitor.rules import RuleState

    state = RuleState()
    fired = [state.update(rule, v) for v in [2, 2, 0, 2, 2, 2, 2, 2, float("nan"), 2, 2, 2]]
    assert fired == [False, False, False, False, False, True, False, False, False, False, False, True]


def test_alarms_are_written_one_per_line_with_the_window(tmp_path):
    path = tmp_path / "alarms.jsonl"
    monitor = RewardHackingMonitor(MonitorConfig(), alarms_path=path)
    for r in stream(kind="length", steps=40):
        monitor.add([r])
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert lines and len(lines) == len(monitor.alarms)
    first = lines[0]
    assert set(first) == {"step", "rule", "statistic", "value", "threshold", "direction", "patience", "window"}
    assert first["rule"] == "length_growth" and first["value"] > first["threshold"] == 1.5
    assert first["window"]["last_step"] == first["step"] and first["window"]["rollouts"] >= 32


def test_kl_from_log_probs_is_zero_for_the_reference_against_itself_and_feeds_the_gao_fit():
    rollouts = []
    for step in range(1, 13):
        shift = 0.05 * step
        for i in range(32):
            logps = (-1.0, -2.0, -0.5)
            ref = tuple(v - shift for v in logps) if step > 2 else logps
            d = math.sqrt(3 * (math.expm1(-shift) + shift)) if step > 2 else 0.0  # sqrt of the k3 sequence KL
            gold = d * (1.0 - 0.5 * math.log(d)) if d > 0 else 0.0
            rollouts.append(Rollout(step, "p", f"reply {i}", 0.1 * step + 0.01 * i, gold + 0.01 * (i % 3), None, logps, ref))
    monitor = run(rollouts, gao_min_points=4)
    first = monitor.windows[0]
    assert first["kl_k1"] == 0 and first["kl_k3"] == 0
    last = monitor.windows[-1]
    assert last["kl_k1"] == pytest.approx(3 * 0.6, rel=1e-6) and last["kl_k3"] > 0
    assert last["gao_alpha"] == pytest.approx(1.0, abs=0.05) and last["gao_beta"] == pytest.approx(0.5, abs=0.05)
    assert last["gao_peak_d"] == pytest.approx(math.exp(1.0), rel=0.1)


def test_a_reference_given_up_front_is_used_instead_of_the_first_window():
    ref = stream(kind="stationary", steps=4, change_at=None, seed=9)
    grown = [Rollout(r.step, r.prompt, r.response + " " + " ".join(f"x{r.step}y{i}{len(r.response)}" for i in range(12)), r.reward)
             for r in stream(steps=8, change_at=None)]
    monitor = RewardHackingMonitor(MonitorConfig(), reference=ref)
    for r in grown:
        monitor.add([r])
    monitor.close()
    assert not monitor.windows[0]["reference"] and monitor.windows[0]["length_ratio"] == pytest.approx(2.0)
    assert [a.rule for a in monitor.alarms] == ["length_growth"]


def test_bad_inputs_are_clear_errors():
    with pytest.raises(ConfigError, match="step order"):
        RewardHackingMonitor().add([Rollout(2, "p", "r", 0.0), Rollout(1, "p", "r", 0.0)])
    with pytest.raises(ConfigError, match="min_window_rollouts"):
        MonitorConfig(min_window_rollouts=0)
    with pytest.raises(ConfigError, match="unique"):
        RewardHackingMonitor(rules=[AlarmRule("a", "x", 1.0), AlarmRule("a", "y", 1.0)])
    with pytest.raises(ConfigError, match="direction"):
        AlarmRule("a", "x", 1.0, direction="sideways")  # type: ignore[arg-type]


def test_a_threshold_of_none_switches_its_rule_off():
    names = {r.name for r in default_rules(MonitorConfig(length_ratio_threshold=None, kl_budget=3.0))}
    assert "length_growth" not in names and "kl_budget" in names
    monitor = run(stream(kind="length", steps=40), length_ratio_threshold=None)
    assert "length_growth" not in {a.rule for a in monitor.alarms}
