"""Adapters into RL trainers: TRL's GRPOTrainer runs real steps on rewardlab rewards; verl's reward-function signatures;
``rewardlab serve`` from the CLI as OpenRLHF's remote RM."""

import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest

from rewardlab.scoring.protocol import FunctionScorer
from rewardlab.serving.adapters import compute_score, compute_score_batch, trl_reward_function


@pytest.fixture(scope="module")
def saved_rm(tiny_rm_dir):
    return tiny_rm_dir


def test_trl_grpo_runs_two_real_steps_on_a_rewardlab_scorer(tiny_llama_dir, saved_rm, tmp_path):
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer

    from rewardlab.scoring.local import load_reward_model

    scorer = load_reward_model(saved_rm)
    calls = []

    class Recording:
        def score(self, prompts, responses):
            calls.append(len(responses))
            return scorer.score(prompts, responses)

        def describe(self):
            return scorer.describe()

    reward = trl_reward_function(Recording(), name="rewardlab_rm")
    data = Dataset.from_list([{"prompt": [{"role": "user", "content": f"Tell me about topic {i}."}]} for i in range(4)])
    args = GRPOConfig(output_dir=str(tmp_path / "grpo"), per_device_train_batch_size=2, num_generations=2,
                      max_completion_length=8, max_steps=2, logging_steps=1, report_to=[], use_cpu=True, bf16=False,
                      save_strategy="no", seed=0)
    tokenizer = AutoTokenizer.from_pretrained(tiny_llama_dir)
    trainer = GRPOTrainer(model=AutoModelForCausalLM.from_pretrained(tiny_llama_dir), reward_funcs=[reward], args=args,
                          train_dataset=data, processing_class=tokenizer)
    trainer.train()
    assert trainer.state.global_step == 2 and sum(calls) >= 4
    logged = [h for h in trainer.state.log_history if "rewards/rewardlab_rm/mean" in h]
    assert logged and all(isinstance(h["rewards/rewardlab_rm/mean"], float) for h in logged)


def test_trl_reward_function_takes_text_and_conversational_inputs():
    f = trl_reward_function(FunctionScorer(lambda p, r: float(len(r)) + (0.5 if isinstance(p, list) else 0.0)), "len")
    assert f(["a", "b"], ["xy", "xyz"], answer=["1", "2"]) == [2.0, 3.0]  # extra dataset columns are accepted
    conversational = f([[{"role": "user", "content": "q"}]], [[{"role": "assistant", "content": "four"}]])
    assert conversational == [4.5] and f.__name__ == "len"


def test_verl_reward_functions_score_through_a_configured_scorer(saved_rm, monkeypatch):
    import rewardlab.serving.adapters as adapters
    from rewardlab.scoring.local import load_reward_model

    monkeypatch.setattr(adapters, "_VERL_SCORER", None)
    monkeypatch.setenv("REWARDLAB_REWARD_MODEL", str(saved_rm))
    monkeypatch.delenv("REWARDLAB_REWARD_URL", raising=False)
    expected = load_reward_model(saved_rm).score(["2+2?", ""], ["4", "five"])
    single = compute_score("gsm8k", "4", ground_truth="4", extra_info={"prompt": "2+2?"})
    batch = compute_score_batch(["gsm8k", "x"], ["4", "five"], ["4", None], [{"question": "2+2?"}, None])
    assert single == pytest.approx(expected[0], abs=1e-5) and batch == pytest.approx(expected, abs=1e-5)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_rewardlab_serve_cli_answers_openrlhf_with_a_key_and_stops_on_sigterm(saved_rm):
    import os

    port = _free_port()
    env = {**os.environ, "RL_SERVE_KEY": "s3cret"}  # a reward-model server that requires a key (issue 33, item 9)
    proc = subprocess.Popen([sys.executable, "-m", "rewardlab.cli", "serve", "--model", str(saved_rm), "--port", str(port),
                             "--api-key-env", "RL_SERVE_KEY"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                if httpx.get(url + "/health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None, proc.stdout.read()
            time.sleep(0.3)
        body = {"query": ["<|im_start|>user\nHi<|im_end|><|im_start|>assistant\nHello<|im_end|>"],
                "prompts": ["<|im_start|>user\nHi<|im_end|><|im_start|>assistant\n"], "labels": [""]}
        assert httpx.post(url + "/get_reward", json=body).status_code == 401
        assert httpx.post(url + "/get_reward", json=body, headers={"Authorization": "Bearer wrong"}).status_code == 401
        reply = httpx.post(url + "/get_reward", json=body, headers={"Authorization": "Bearer s3cret"}).json()
        assert len(reply["rewards"]) == 1 and isinstance(reply["rewards"][0], float)
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    # uvicorn finishes in-flight requests and the shutdown, then re-raises SIGTERM for process managers to see
    assert proc.returncode in (0, -signal.SIGTERM) and "Application shutdown complete" in out, out
    assert "127.0.0.1" in out and "Traceback" not in out


def test_a_recording_reward_function_keeps_an_ensembles_member_rewards():
    from rewardlab.scoring.config import EnsembleRule
    from rewardlab.scoring.ensemble import EnsembleScorer

    ensemble = EnsembleScorer([FunctionScorer(lambda p, r: 1.0, "a"), FunctionScorer(lambda p, r: float(len(r)), "b")],
                              EnsembleRule(aggregate="min"))
    f = trl_reward_function(ensemble, "ens", record=True)
    assert f(["q", "q"], ["x", "xyz"]) == [1.0, 1.0]  # the aggregate (min) is what the trainer optimizes
    (call,) = f.take()
    assert call.members == [[1.0, 1.0], [1.0, 3.0]] and call.rewards == [1.0, 1.0]
    plain = trl_reward_function(FunctionScorer(lambda p, r: 2.0), "plain", record=True)
    plain(["q"], ["x"])
    assert plain.take()[0].members is None
