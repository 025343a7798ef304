"""Reward-side controls: ensembles (aggregation, scaling, per-member output), length penalty and debias, the KL command."""

import json

import numpy as np
import pytest

from rewardlab.cli import main
from rewardlab.errors import ConfigError
from rewardlab.scoring.config import EnsembleRule
from rewardlab.scoring.ensemble import EnsembleScorer, aggregate_members
from rewardlab.scoring.length import LengthDebiased, LengthPenalty
from rewardlab.scoring.protocol import FunctionScorer

from ..conftest import write_jsonl


def test_ensemble_aggregations_against_hand_computed_values():
    members = [FunctionScorer(lambda p, r, k=k: float(k * len(r))) for k in (1, 2, 3)]  # rewards 1x, 2x, 3x the length
    ensemble = EnsembleScorer(members, EnsembleRule("mean", scale="none"))
    detail = ensemble.score_detailed(["q", "q"], ["ab", "abcd"])
    assert detail.members.tolist() == [[2, 4], [4, 8], [6, 12]]
    std = np.std([2, 4, 6])  # population std across members: 1.633
    for how, expected in {"mean": 4.0, "min": 2.0, "mean_minus_std": 4.0 - 0.5 * std, "uncertainty_weighted": 4.0 - 0.5 * std ** 2}.items():
        assert EnsembleScorer(members, EnsembleRule(how, lam=0.5, scale="none")).score(["q"], ["ab"])[0] == pytest.approx(expected)
    assert detail.std.tolist() == pytest.approx([std, 2 * std])
    with pytest.raises(ConfigError, match="at least 2"):
        EnsembleScorer(members[:1])
    with pytest.raises(ConfigError, match="aggregation must be"):
        aggregate_members(np.zeros((2, 1)), "median")


def test_reference_scaling_puts_members_on_one_scale_and_score_file_writes_each_member(tmp_path):
    from rewardlab.scoring.files import score_file

    shifted = [FunctionScorer(lambda p, r: float(len(r))), FunctionScorer(lambda p, r: 100.0 + 10.0 * len(r))]
    ensemble = EnsembleScorer(shifted, EnsembleRule("mean", scale="reference", reference="unused"), names=["a", "b"])
    with pytest.raises(ConfigError, match="fit_scale"):
        ensemble.score(["q"], ["x"])
    ensemble.fit_scale(["q"] * 4, ["a", "ab", "abc", "abcd"])
    detail = ensemble.score_detailed(["q", "q"], ["ab", "abcdef"])
    assert detail.members[0] == pytest.approx(detail.members[1]) and detail.std == pytest.approx([0, 0], abs=1e-9)
    data = write_jsonl(tmp_path / "in.jsonl", [{"prompt": "q", "response": "abc"}])
    score_file(ensemble, data, tmp_path / "out.jsonl", show_progress=False)
    line = json.loads((tmp_path / "out.jsonl").read_text())
    assert set(line["rewards"]) == {"a", "b", "std"} and line["reward"] == pytest.approx(line["rewards"]["a"])
    assert line["ensemble_aggregate"] == "mean"


@pytest.fixture
def two_rms(tiny_llama_dir, tmp_path):
    import torch

    from rewardlab.models.io import RewardModelMetadata, build_reward_model, save_pretrained

    folders = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        model, tok = build_reward_model(str(tiny_llama_dir))
        folder = tmp_path / f"rm{seed}"
        save_pretrained(model, tok, RewardModelMetadata(pooling=model.pooling, max_length=128, reward_mean=0.1 * seed,
                                                        reward_std=1.0 + seed), folder)
        folders.append(folder)
    return folders


def test_cli_scores_with_an_ensemble_of_saved_models_on_their_saved_scale(two_rms, tmp_path):
    from rewardlab.scoring.local import load_reward_model

    data = write_jsonl(tmp_path / "in.jsonl", [{"prompt": "Hi", "response": "Hello there"}, {"prompt": "Hi", "response": "Bye"}])
    out = tmp_path / "s.jsonl"
    assert main(["score", "--model", str(two_rms[0]), "--ensemble", str(two_rms[1]), "--ensemble-aggregate", "min",
                 "--data", str(data), "--output", str(out)]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    members = [load_reward_model(f, normalize=True).score(["Hi", "Hi"], ["Hello there", "Bye"]) for f in two_rms]
    for i, row in enumerate(rows):
        assert row["rewards"][str(two_rms[0])] == pytest.approx(members[0][i], abs=1e-5)
        assert row["reward"] == pytest.approx(min(members[0][i], members[1][i]), abs=1e-5)


def test_length_penalty_arithmetic_and_debias_removes_the_length_correlation():
    verbose = FunctionScorer(lambda p, r: 0.5 + 0.3 * len(r.split()) + (1.0 if "good" in r else 0.0))
    texts = ["good", "bad answer", "a good long answer here", "bad " * 8, "good " * 5, "meh"]
    assert LengthPenalty(verbose, 0.3).score(["q"] * 2, ["good", "bad answer"]) == pytest.approx([1.5, 0.5])
    normalized = LengthPenalty(verbose, 1.0, "normalized").fit(texts)
    lengths = np.array([len(t.split()) for t in texts])
    assert normalized.score(["q"], ["good"])[0] == pytest.approx(1.8 - (1 - lengths.mean()) / lengths.std())
    debiased = LengthDebiased(verbose).fit(["q"] * len(texts), texts)
    after = np.array(debiased.score(["q"] * len(texts), texts))
    before = np.array(verbose.score(["q"] * len(texts), texts))
    assert abs(np.corrcoef(before, lengths)[0, 1]) > 0.8 and abs(np.corrcoef(after, lengths)[0, 1]) < 1e-9
    assert debiased.describe()["settings"]["length_debias"]["slope"] == pytest.approx(debiased.slope)


def test_diagnose_shows_the_length_correlation_before_and_after_debias(two_rms, tmp_path):
    pairs = [{"prompt": f"q{i}", "chosen": "word " * (3 + i % 5), "rejected": "no"} for i in range(12)]
    data = write_jsonl(tmp_path / "p.jsonl", pairs)
    assert main(["diagnose", "--model", str(two_rms[0]), "--length-debias", "--length-reference", str(data),
                 "--data", str(data), "--output-dir", str(tmp_path / "d")]) == 0
    result = json.loads((tmp_path / "d" / "results.json").read_text())
    assert "length_bias_without_length_control" in result and "length_bias" in result
    with pytest.raises(ConfigError, match="length_reference"):
        from rewardlab.scoring.config import scorer_config

        scorer_config("m", length_debias=True)


def test_kl_command_is_zero_for_the_reference_itself_and_positive_for_another_policy(tiny_llama_dir, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    other = tmp_path / "other"
    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    model.save_pretrained(other)
    AutoTokenizer.from_pretrained(tiny_llama_dir).save_pretrained(other)
    data = write_jsonl(tmp_path / "r.jsonl", [{"prompt": "Tell me about bees.", "response": "Bees make honey in hives."},
                                               {"prompt": "Hi", "response": "Hello!"}])
    assert main(["kl", "--policy", str(tiny_llama_dir), "--reference", str(tiny_llama_dir), "--data", str(data),
                 "--output", str(tmp_path / "same.json")]) == 0
    same = json.loads((tmp_path / "same.json").read_text())
    assert same["k1_mean"] == pytest.approx(0, abs=1e-6) and same["k3_mean"] == pytest.approx(0, abs=1e-6) and same["tokens"] > 5
    assert main(["kl", "--policy", str(other), "--reference", str(tiny_llama_dir), "--data", str(data),
                 "--output", str(tmp_path / "kl.json")]) == 0
    moved = json.loads((tmp_path / "kl.json").read_text())
    assert moved["k3_mean"] > 0 and len(moved["k3_per_sequence"]) == 2 and all(v >= 0 for v in moved["k3_per_sequence"])


def test_token_logprobs_sum_to_the_sequence_logprob(tiny_llama_dir):
    from rewardlab.scoring.dpo import load_dpo_scorer

    scorer = load_dpo_scorer(str(tiny_llama_dir), None, reference_free=True)
    prompts, responses = ["Tell me about bees.", "Hi"], ["Bees make honey in hives.", "Hello!"]
    per_token = scorer.token_logprobs(scorer.policy, prompts, responses)
    assert [float(t.sum()) for t in per_token] == pytest.approx(scorer.logprobs(scorer.policy, prompts, responses).tolist(), abs=1e-4)


def test_an_infinite_reward_is_written_as_strict_json_with_the_reason(tmp_path):
    import json

    from rewardlab.scoring.files import score_file
    from rewardlab.scoring.protocol import FunctionScorer

    data = tmp_path / "d.jsonl"
    data.write_text('{"prompt": "q", "response": "ok"}\n{"prompt": "q", "response": "bad"}\n')
    scorer = FunctionScorer(lambda p, r: float("-inf") if r == "bad" else 1.0)  # what ConstrainedReward gives a violation
    score_file(scorer, data, tmp_path / "out.jsonl")

    def refuse(constant):
        raise ValueError(f"non-standard JSON constant {constant}")

    lines = [json.loads(line, parse_constant=refuse) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert lines[0]["reward"] == 1.0 and "reward_infinite" not in lines[0]
    assert lines[1]["reward"] is None and lines[1]["reward_infinite"] == "-inf"


def test_wrappers_and_ensembles_are_known_by_their_protocols_not_their_classes():
    """diagnose reports the length bias before a length control and the members' disagreement of an ensemble: it
    finds both through WrappedScorer and MemberScorer, so any scorer with the same shape is reported too."""
    from rewardlab.scoring.protocol import MemberScorer, WrappedScorer

    plain = FunctionScorer(lambda p, r: float(len(r)))
    penalized = LengthPenalty(plain, alpha=0.5)
    ensemble = EnsembleScorer([plain, FunctionScorer(lambda p, r: 1.0)], EnsembleRule(scale="none"))
    assert isinstance(penalized, WrappedScorer) and penalized.scorer is plain and not isinstance(plain, WrappedScorer)
    assert isinstance(ensemble, MemberScorer) and not isinstance(plain, MemberScorer)
    assert ensemble.raw_members(["q"], ["abc"]).tolist() == [[3.0], [1.0]]
