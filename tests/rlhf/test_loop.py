"""The iterative RLHF loop on a randomly initialised tiny causal LM with model-free and tiny reward models."""

import json

import pytest

from rewardlab.errors import ConfigError, DataFormatError
from rewardlab.rlhf import RLHFConfig, run_rlhf
from rewardlab.scoring.protocol import FunctionScorer


def words(prompt, reply):
    return float(len(reply.split()))


def fewer_words(prompt, reply):
    return -float(len(reply.split()))


def small(policy, **overrides):
    base = dict(policy=str(policy), rounds=2, steps_per_round=2, eval_every=1, eval_prompts=2, eval_samples=2, label_prompts=4,
                label_samples=3, prompts_per_step=2, num_generations=2, max_completion_length=8, bon_samples=4, checkpoint_every=1,
                min_distinct=None, rm_steps=2, rm_batch_size=2)
    base.update(overrides)
    return RLHFConfig(**base)


@pytest.fixture(scope="module")
def tiny_rm(tiny_rm_dir):
    return tiny_rm_dir


def test_two_rounds_of_two_steps_write_every_output(tiny_llama_dir, tmp_path):
    result = run_rlhf(small(tiny_llama_dir, labeler="proxy"), tmp_path / "run", gold=FunctionScorer(fewer_words),
                      proxy=FunctionScorer(words))
    out = tmp_path / "run"
    assert result.stop_reason == "max rounds (2)" and [r["steps"] for r in result.rounds] == [2, 4]
    assert [e["step"] for e in result.evaluations] == [0, 1, 2, 3, 4]
    first = result.evaluations[0]
    assert first["kl_k1"] == 0.0 and first["kl_k3"] == 0.0 and first["win_rate"] == 0.5  # the reference against itself
    assert all(e["kl_k3"] > 0 for e in result.evaluations[1:])
    train = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if '"train"' in line]
    assert [t["step"] for t in train] == [1, 2, 3, 4] and all(t["kl_coef"] == 0.0 for t in train)
    samples = [json.loads(line) for line in (out / "eval" / "step_4.jsonl").read_text().splitlines()]
    assert len(samples) == 4 and {"prompt", "response", "proxy", "gold", "kl_k1", "kl_k3"} <= set(samples[0])
    assert samples[0]["proxy"] == words(None, samples[0]["response"])
    rollouts = (out / "rollouts.jsonl").read_text().splitlines()
    assert len(rollouts) == 4 * 4  # 4 steps x (2 prompts x 2 completions)
    for name in ("report.md", "rlhf.png", "rounds.json", "bon.json", "human_eval.jsonl", "human_eval_key.jsonl", "config.json"):
        assert (out / name).exists(), name
    from transformers import AutoModelForCausalLM

    assert AutoModelForCausalLM.from_pretrained(out / "round_2" / "policy") is not None
    blind = [json.loads(line) for line in (out / "human_eval.jsonl").read_text().splitlines()]
    assert len(blind) == 2 and set(blind[0]) == {"id", "prompt", "reply_a", "reply_b"}


def test_a_proxy_that_pays_for_length_grows_it_the_gold_falls_and_the_alarm_stops_the_run(tiny_llama_dir, tmp_path):
    config = small(tiny_llama_dir, rounds=1, steps_per_round=24, eval_every=4, eval_samples=4, prompts_per_step=4,
                   num_generations=4, max_completion_length=24, learning_rate=1e-2, bon_samples=0, checkpoint_every=100,
                   labeler="proxy")
    result = run_rlhf(config, tmp_path / "run", gold=FunctionScorer(fewer_words), proxy=FunctionScorer(words))
    evals = result.evaluations
    assert result.stop_reason.startswith("reward-hacking alarm: step")
    assert result.rounds[0]["steps"] < 24  # stopped early
    assert evals[-1]["length_words"] > evals[0]["length_words"] and evals[-1]["gold_mean"] < evals[0]["gold_mean"]
    alarms = [json.loads(line) for line in (tmp_path / "run" / "alarms.jsonl").read_text().splitlines()]
    assert alarms and alarms[0]["rule"] in config.stop_alarms_list
    assert "Alarms against the gold's peak" in (tmp_path / "run" / "report.md").read_text()


def test_the_adaptive_coefficient_moves_towards_its_target():
    from rewardlab.control import AdaptiveKLController
    from rewardlab.rlhf.callbacks import KLCallback

    class Trainer:
        beta = 0.0

    trainer = Trainer()
    callback = KLCallback(trainer, AdaptiveKLController(0.1, target=2.0, horizon=100), batch_completions=10)
    logs = {"loss": 0.0, "kl": 0.5, "completions/mean_length": 10.0}  # 5 nats per sequence: above the target
    callback.on_log(None, None, None, logs)
    assert logs["kl_coef"] == 0.1 and logs["kl_per_sequence_train"] == 5.0 and trainer.beta > 0.1
    raised = trainer.beta
    for _ in range(5):
        callback.on_log(None, None, None, {"loss": 0.0, "kl": 0.01, "completions/mean_length": 10.0})  # 0.1 nats: below
    assert trainer.beta < raised


def test_the_reward_model_is_updated_between_rounds_with_accuracy_before_and_after(tiny_llama_dir, tiny_rm, tmp_path,
                                                                                   monkeypatch):
    import rewardlab.rlhf.rounds as rounds
    from rewardlab.data.demo import demo_pairs
    from rewardlab.data.readers import write_preference_pairs

    old_pairs = tmp_path / "old_pairs.jsonl"
    write_preference_pairs(demo_pairs("train", 6), old_pairs)
    config = small(tiny_llama_dir, proxy=str(tiny_rm), proxy_data=str(old_pairs), labeler="gold", kl_coef=0.05,
                   kl_control="adaptive", kl_target=0.01)
    original, calls = rounds.update_reward_model, []

    def killed_once(*args, **kwargs):  # the first RM update dies; the resumed run redoes only the update
        calls.append(1)
        if len(calls) == 1:
            raise KeyboardInterrupt("killed")
        return original(*args, **kwargs)

    monkeypatch.setattr(rounds, "update_reward_model", killed_once)
    with pytest.raises(KeyboardInterrupt):
        run_rlhf(config, tmp_path / "run", gold=FunctionScorer(fewer_words))
    result = run_rlhf(config, tmp_path / "run", gold=FunctionScorer(fewer_words), resume=True)
    assert [r["steps"] for r in result.rounds] == [2, 4] and len(calls) == 2
    update = result.rounds[0]["reward_model"]
    assert update["updated"] and update["new_pairs"] > 0 and update["old_pairs"] == 6 and 0 <= update["accuracy_after"] <= 1
    trained_on = (tmp_path / "run" / "round_1" / "rm_train_pairs.jsonl").read_text().splitlines()
    assert len(trained_on) == 6 + update["new_pairs"]
    state = json.loads((tmp_path / "run" / "state.json").read_text())
    assert state["proxy"] == str(tmp_path / "run" / "round_1" / "reward_model")
    from transformers import AutoModelForSequenceClassification

    assert AutoModelForSequenceClassification.from_pretrained(state["proxy"]) is not None
    coefs = [json.loads(line)["kl_coef"] for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines() if '"train"' in line]
    assert coefs[0] == 0.05 and coefs[-1] != 0.05  # the adaptive coefficient was applied and logged per step


def test_a_killed_run_resumes_from_its_checkpoint_and_keeps_finished_rounds(tiny_llama_dir, tmp_path, monkeypatch):
    import rewardlab.rlhf.callbacks as callbacks

    config = small(tiny_llama_dir, labeler="proxy", bon_samples=0)
    reference = run_rlhf(config, tmp_path / "whole", gold=FunctionScorer(fewer_words), proxy=FunctionScorer(words))
    original = callbacks.EvaluationCallback.on_step_end

    def killed(self, args, state, control, **kwargs):
        if state.global_step == 4:
            raise KeyboardInterrupt("killed")
        return original(self, args, state, control, **kwargs)

    monkeypatch.setattr(callbacks.EvaluationCallback, "on_step_end", killed)
    with pytest.raises(KeyboardInterrupt):
        run_rlhf(config, tmp_path / "killed", gold=FunctionScorer(fewer_words), proxy=FunctionScorer(words))
    monkeypatch.setattr(callbacks.EvaluationCallback, "on_step_end", original)
    resumed = run_rlhf(config, tmp_path / "killed", gold=FunctionScorer(fewer_words), proxy=FunctionScorer(words), resume=True)
    assert [e["step"] for e in resumed.evaluations] == [0, 1, 2, 3, 4]  # nothing twice, nothing lost
    assert [r["steps"] for r in resumed.rounds] == [2, 4]
    for a, b in zip(reference.evaluations[:3], resumed.evaluations[:3]):
        assert a["gold_mean"] == b["gold_mean"] and a["kl_k3"] == pytest.approx(b["kl_k3"], abs=1e-6)
    rollouts = [json.loads(line)["step"] for line in (tmp_path / "killed" / "rollouts.jsonl").read_text().splitlines()]
    assert rollouts == sorted(rollouts) and len(rollouts) == 16


def test_people_label_the_pairs_and_the_run_continues_after_resume(tiny_llama_dir, tiny_rm, tmp_path):
    config = small(tiny_llama_dir, proxy=str(tiny_rm), labeler="human", bon_samples=0)
    first = run_rlhf(config, tmp_path / "run", gold=FunctionScorer(fewer_words))
    assert first.stop_reason.startswith("awaiting labels") and len(first.rounds) == 1
    exported = [json.loads(line) for line in (tmp_path / "run" / "round_1" / "pairs_to_label.jsonl").read_text().splitlines()]
    labels = tmp_path / "run" / "round_1" / "labels.jsonl"
    labels.write_text("".join(json.dumps({"id": row["id"], "preferred": "a"}) + "\n" for row in exported[:-1]))
    with pytest.raises(DataFormatError, match="have no label"):
        run_rlhf(config, tmp_path / "run", gold=FunctionScorer(fewer_words), resume=True)
    labels.write_text(labels.read_text() + json.dumps({"id": "pair-999", "preferred": "a"}) + "\n")
    with pytest.raises(DataFormatError, match="not one of the exported pairs"):
        run_rlhf(config, tmp_path / "run", gold=FunctionScorer(fewer_words), resume=True)
    labels.write_text("".join(json.dumps({"id": row["id"], "preferred": "b"}) + "\n" for row in exported))
    done = run_rlhf(config, tmp_path / "run", gold=FunctionScorer(fewer_words), resume=True)
    assert done.stop_reason == "max rounds (2)" and done.rounds[0]["reward_model"]["updated"]


def test_bad_settings_are_clear_errors(tiny_llama_dir, tmp_path):
    with pytest.raises(ConfigError, match="unknown option"):
        RLHFConfig.from_options(polcy="x")
    with pytest.raises(ConfigError, match="need"):
        run_rlhf(small(tiny_llama_dir, min_gold_gain=0.1, labeler="proxy"), tmp_path / "a", proxy=FunctionScorer(words))
    with pytest.raises(ConfigError, match="adaptive"):
        RLHFConfig(kl_control="adaptive", kl_coef=0.0)
    with pytest.raises(ConfigError, match="stop_alarms"):
        RLHFConfig(stop_alarms="proxy_gold_gap,nonsense")
    with pytest.raises(ConfigError, match="judge"):
        RLHFConfig(labeler="judge")
    run_rlhf(small(tiny_llama_dir, rounds=1, steps_per_round=1, labeler="proxy", bon_samples=0), tmp_path / "b",
             proxy=FunctionScorer(words))
    with pytest.raises(ConfigError, match="already holds"):
        run_rlhf(small(tiny_llama_dir, rounds=1, steps_per_round=1, labeler="proxy"), tmp_path / "b", proxy=FunctionScorer(words))
    with pytest.raises(ConfigError, match="other settings for \\['bon_samples', 'steps_per_round'\\]"):
        run_rlhf(small(tiny_llama_dir, rounds=1, steps_per_round=3, labeler="proxy"), tmp_path / "b", proxy=FunctionScorer(words),
                 resume=True)


def test_the_cli_runs_a_config_file_and_imports_ratings(tiny_llama_dir, tiny_rm, tmp_path, capsys):
    from rewardlab.cli import main

    config = tmp_path / "run.yaml"
    config.write_text(f"policy: {tiny_llama_dir}\nproxy: {tiny_rm}\ngold: {tiny_rm}\nrounds: 1\nsteps_per_round: 2\n"
                      "eval_every: 1\neval_prompts: 2\neval_samples: 2\nprompts_per_step: 2\nnum_generations: 2\n"
                      "max_completion_length: 8\nbon_samples: 4\nmin_distinct: null\n")
    assert main(["rlhf", "--config", str(config), "--output-dir", str(tmp_path / "run"), "--learning-rate", "1e-4"]) == 0
    out = capsys.readouterr().out
    assert "stopped: max rounds (1)" in out and "step    2" in out
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["learning_rate"] == 1e-4 and saved["proxy"] == str(tiny_rm)  # flags win over the file
    key = [json.loads(line) for line in (tmp_path / "run" / "human_eval_key.jsonl").read_text().splitlines()]
    ratings = tmp_path / "ratings.jsonl"
    ratings.write_text("".join(json.dumps({"id": k["id"], "preferred": k["policy"]}) + "\n" for k in key))
    assert main(["rlhf-ratings", str(tmp_path / "run"), str(ratings)]) == 0
    assert "win rate 1.000" in capsys.readouterr().out
    assert "final policy's win rate against the reference 1.000" in (tmp_path / "run" / "report.md").read_text()
    bad = tmp_path / "bad.yaml"
    bad.write_text("polisy: x\n")
    assert main(["rlhf", "--config", str(bad), "--output-dir", str(tmp_path / "x")]) == 2
    assert "unknown option(s) ['polisy']" in capsys.readouterr().err


def test_without_trl_the_command_names_the_extra_to_install(tiny_llama_dir, tmp_path, monkeypatch, capsys):
    import sys

    from rewardlab.cli import main

    monkeypatch.setitem(sys.modules, "trl", None)  # import trl now raises ImportError, as when it is not installed
    assert main(["rlhf", "--policy", str(tiny_llama_dir), "--output-dir", str(tmp_path / "r")]) == 2
    assert 'rewardlab rlhf needs \'trl\': pip install "rewardlab[rl]"' in capsys.readouterr().err


def test_a_refused_start_writes_nothing(tiny_llama_dir, tmp_path):
    with pytest.raises(ConfigError, match="need"):
        run_rlhf(small(tiny_llama_dir, labeler="gold"), tmp_path / "run")  # no gold for the gold labeller
    assert not (tmp_path / "run").exists()


def test_a_lora_policy_trains_one_adapter_and_saves_a_merged_folder(tiny_llama_dir, tmp_path):
    from transformers import AutoModelForCausalLM

    config = small(tiny_llama_dir, rounds=2, steps_per_round=1, lora_rank=4, lora_alpha=8, labeler="proxy", bon_samples=0,
                   learning_rate=1e-2)
    result = run_rlhf(config, tmp_path / "run", gold=FunctionScorer(fewer_words), proxy=FunctionScorer(words))
    assert [r["steps"] for r in result.rounds] == [1, 2]
    assert result.evaluations[0]["kl_k3"] == 0.0 and result.evaluations[-1]["kl_k3"] > 0  # the adapter moved the policy
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "run" / "round_2" / "policy")  # plain transformers, no peft
    assert not any("lora" in name for name, _ in merged.named_parameters())


def test_an_llm_judge_labels_the_pairs(tiny_llama_dir, tiny_rm, tmp_path, monkeypatch):
    from tests.judges.openai_server import FakeOpenAI

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")

    def rate(messages):  # a judge that likes longer replies (the rated text is in the last message)
        return f"Score: [[{min(10, 1 + len(messages[-1]['content']) % 10)}]]"

    with FakeOpenAI(rate) as server:
        config = small(tiny_llama_dir, proxy=str(tiny_rm), labeler="judge", judge_model="judge-1",
                       judge_base_url=server.base_url, bon_samples=0)
        result = run_rlhf(config, tmp_path / "run", gold=FunctionScorer(fewer_words))
        assert server.requests and server.requests[0]["model"] == "judge-1"
    update = result.rounds[0]["reward_model"]
    assert update["labeler"] == "judge" and update["updated"] and update["new_pairs"] + update["ties"] > 0
