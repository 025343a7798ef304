"""TRL's GRPOTrainer (its own generation, reward call and logging) with a tiny policy, rewarded by a running
``rewardlab serve`` through RemoteScorer (issue 32): the rewards TRL logs are what the server returns."""

import httpx
import pytest

pytest.importorskip("trl")
pytestmark = pytest.mark.interop

from rewardlab.scoring.local import load_reward_model  # noqa: E402
from rewardlab.scoring.config import RemoteConfig  # noqa: E402
from rewardlab.scoring.remote import RemoteScorer  # noqa: E402
from rewardlab.serving.adapters import trl_reward_function  # noqa: E402
from rewardlab.serving.app import create_app  # noqa: E402

from ..serving.server import running  # noqa: E402


def test_grpo_logs_the_servers_rewards(tiny_llama_dir, tiny_rm_dir, tmp_path):
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer

    rm = load_reward_model(tiny_rm_dir)
    data = Dataset.from_list([{"prompt": [{"role": "user", "content": f"Tell me about topic {i}."}]} for i in range(4)])
    args = GRPOConfig(output_dir=str(tmp_path / "grpo"), per_device_train_batch_size=4, num_generations=2,
                      max_completion_length=8, max_steps=2, logging_steps=1, report_to=[], use_cpu=True, bf16=False,
                      save_strategy="no", seed=0)
    with running(create_app(rm)) as (url, _):
        reward = trl_reward_function(RemoteScorer(RemoteConfig(model=url)), name="served", record=True)
        trainer = GRPOTrainer(model=AutoModelForCausalLM.from_pretrained(tiny_llama_dir), reward_funcs=[reward], args=args,
                              train_dataset=data, processing_class=AutoTokenizer.from_pretrained(tiny_llama_dir))
        trainer.train()
        calls = reward.take()
        checked = [httpx.post(url + "/v1/score", json={"prompts": list(c.prompts), "responses": list(c.completions)}).json()["rewards"]
                   for c in calls]
    assert trainer.state.global_step == 2 and calls
    for call, again in zip(calls, checked):
        assert list(call.rewards) == pytest.approx(again, abs=1e-6)  # what TRL got is what the server says
    logged = [h["rewards/served/mean"] for h in trainer.state.log_history if "rewards/served/mean" in h]
    means = [sum(c.rewards) / len(c.rewards) for c in calls]
    assert logged and logged == pytest.approx(means[: len(logged)], abs=1e-4)
