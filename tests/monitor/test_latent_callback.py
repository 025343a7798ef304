"""The latent-space monitor over a reward model's own features, and the TRL callback inside a real GRPOTrainer run."""

import json
import zlib

import numpy as np
import pytest
import torch

from rewardlab.monitor.latent import LatentOutlierMonitor
from rewardlab.monitor.monitor import MonitorConfig, RewardHackingMonitor
from rewardlab.monitor.rollouts import Rollout


def gaussian_embed(shift_from_step: int, dims: int = 64):
    def embed(prompts, responses):
        rows = []
        for p, r in zip(prompts, responses):
            rng = np.random.default_rng(zlib.crc32(r.encode()))  # not hash(): it changes with PYTHONHASHSEED
            v = rng.normal(size=dims)
            if int(p) >= shift_from_step:
                v[:8] += 4.0  # a direction the reference never visits
            rows.append(v)
        return np.array(rows)
    return embed


def test_latent_outlier_share_is_near_the_nominal_rate_when_stationary_and_high_after_a_shift():
    plugin = LatentOutlierMonitor(gaussian_embed(shift_from_step=31), dims=16, quantile=0.95)
    monitor = RewardHackingMonitor(MonitorConfig(min_window_rollouts=64), plugins=[plugin])
    for step in range(1, 41):
        monitor.add([Rollout(step, str(step), f"reply {step} {i}", 0.0 + 0.001 * i) for i in range(32)])
        monitor.end_step(step)
    shares = [w["latent_outlier_share"] for w in monitor.windows[1:]]
    before, after = shares[:14], shares[15:]
    assert np.mean(before) < 0.15 and min(after) > 0.5
    assert [a.rule for a in monitor.alarms if a.rule == "latent_outliers"] == ["latent_outliers"]
    assert monitor.alarms[0].step > 30


def test_local_scorer_embed_is_what_the_reward_head_reads(tiny_llama_dir):
    from rewardlab.models.io import build_reward_model
    from rewardlab.scoring.config import RewardModelConfig
    from rewardlab.scoring.local import LocalScorer

    model, tok = build_reward_model(str(tiny_llama_dir))
    scorer = LocalScorer(model, tok, RewardModelConfig(model="in-memory", max_length=64, layout="padded"))
    prompts, replies = ["Tell me about bees.", "Hi"], ["Bees make honey.", "Hello there, how are you?"]
    features = scorer.embed(prompts, replies)
    assert features.shape == (2, model.hf_model.config.hidden_size)
    with torch.no_grad():
        rewards = model.hf_model.score(features).squeeze(-1)
    assert rewards.tolist() == pytest.approx(scorer.score(prompts, replies), abs=1e-4)


def test_the_callback_feeds_the_monitor_inside_grpo_and_stops_on_an_alarm(tiny_llama_dir, tmp_path):
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer

    from rewardlab.monitor.callback import HeldoutProbe, RewardHackingCallback
    from rewardlab.scoring.protocol import FunctionScorer
    from rewardlab.serving.adapters import trl_reward_function

    def proxy_fn(prompt, reply):
        return float(len(reply))

    proxy = trl_reward_function(FunctionScorer(proxy_fn, "length"), "proxy", record=True)
    gold = trl_reward_function(FunctionScorer(lambda p, r: -float(len(r)), "short"), "gold", record=True)
    alarms = tmp_path / "alarms.jsonl"
    # every rule off but one that must fire on the first compared window: mean reward above -1 (always true)
    from rewardlab.monitor.rules import AlarmRule

    monitor = RewardHackingMonitor(MonitorConfig(min_window_rollouts=4), rules=[AlarmRule("always", "reward_mean", -1.0, patience=1)],
                                   alarms_path=alarms)
    data = Dataset.from_list([{"prompt": [{"role": "user", "content": f"Tell me about topic {i}."}]} for i in range(8)])
    args = GRPOConfig(output_dir=str(tmp_path / "grpo"), per_device_train_batch_size=4, num_generations=2,
                      max_completion_length=8, max_steps=6, logging_steps=1, report_to=[], use_cpu=True, bf16=False,
                      save_strategy="no", seed=0, reward_weights=[1.0, 0.0])
    tokenizer = AutoTokenizer.from_pretrained(tiny_llama_dir)
    trainer = GRPOTrainer(model=AutoModelForCausalLM.from_pretrained(tiny_llama_dir), reward_funcs=[proxy, gold], args=args,
                          train_dataset=data, processing_class=tokenizer)
    probe = HeldoutProbe(["Tell me about rain."], {"gold": FunctionScorer(lambda p, r: -float(len(r)))}, every=1, samples=2,
                         max_new_tokens=4)
    callback = RewardHackingCallback(monitor, proxy, gold=gold, heldout=probe, stop_on_alarm=True).attach(trainer)
    trainer.train()
    # window 1 (step 1, 4 rollouts) is the reference; window 2 (step 2) fires; the run stops there
    assert trainer.state.global_step == 2 and callback.stopped_by.rule == "always"
    assert [w["last_step"] for w in monitor.windows] == [1, 2]
    assert all(w["rollouts"] == 4 for w in monitor.windows)
    assert monitor.windows[1]["gold_mean"] == pytest.approx(-monitor.windows[1]["reward_mean"])  # the gold rode along
    logged = [h for h in trainer.state.log_history if "monitor/reward_mean" in h]
    assert logged and logged[-1]["monitor/reward_mean"] == pytest.approx(monitor.windows[-1]["reward_mean"])
    assert any("heldout/gold_mean" in h for h in trainer.state.log_history)
    assert json.loads(alarms.read_text().splitlines()[0])["rule"] == "always"
