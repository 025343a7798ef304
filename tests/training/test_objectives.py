"""Every objective trains end to end from the CLI, its loss falls, and the folder reloads."""

import json
import random

import pytest
import torch
from transformers import AutoConfig, AutoModelForSequenceClassification

from rewardlab.cli import main
from rewardlab.data.demo import demo_pairs
from rewardlab.errors import DataFormatError
from rewardlab.scoring import ConstrainedReward, WeightedSum, load_reward_model

from ..conftest import SHARED_DATA, requires_shared, write_jsonl

TOPICAL = SHARED_DATA / "usr-topical-chat" / "topical_chat.json"
USR_HEADS = "understandability,naturalness,coherence,engagingness,groundedness,overall"


def _train(model_dir, data, out, *extra):
    args = ["train", "--model", str(model_dir), "--data", str(data), "--output-dir", str(out), "--max-length", "192",
            "--learning-rate", "3e-3", "--warmup-ratio", "0", "--log-every", "1", "--no-show-progress", *extra]
    assert main(args) == 0
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def _falls(metrics):
    losses = [m["loss"] for m in metrics if "loss" in m]
    return sum(losses[-4:]) / 4 < losses[0] - 0.05, losses


@pytest.fixture
def scored_jsonl(tmp_path):
    rng = random.Random(0)
    rows = []
    for p in demo_pairs("train", 64):
        prompt = p.prompt[0].content
        rows.append({"prompt": prompt, "response": p.chosen, "scores": {"follows": 1.0, "words": len(p.chosen.split()) / 10},
                     "score": 4 + rng.random(), "annotator": rng.choice("ab")})
        rows.append({"prompt": prompt, "response": p.rejected, "scores": {"follows": 0.0, "words": len(p.rejected.split()) / 10},
                     "score": 1 + rng.random(), "annotator": rng.choice("ab")})
    return write_jsonl(tmp_path / "scored.jsonl", rows)


def test_regression_multi_objective_trains_and_reloads_with_id2label(tiny_llama_dir, scored_jsonl, tmp_path):
    out = tmp_path / "reg"
    metrics = _train(tiny_llama_dir, scored_jsonl, out, "--objective", "regression", "--heads", "follows,words",
                     "--normalize-targets", "global", "--max-steps", "30", "--batch-size", "8")
    falls, losses = _falls(metrics)
    assert falls, losses
    config = AutoConfig.from_pretrained(out)
    assert config.num_labels == 2 and config.id2label == {0: "follows", 1: "words"}
    plain = AutoModelForSequenceClassification.from_pretrained(out)
    assert plain.score.weight.shape[0] == 2
    scorer = load_reward_model(out, original_scale=True, combine=WeightedSum({"follows": 1.0}))
    named = scorer.score_named(["Tell me about bees."], ["Bees make honey."])
    assert set(named[0]) == {"follows", "words"}
    assert scorer.score(["Tell me about bees."], ["Bees make honey."]) == pytest.approx([named[0]["follows"]])
    raw = load_reward_model(out).score_named(["Tell me about bees."], ["Bees make honey."])[0]
    stats = scorer.metadata.target_normalization["global_stats"]["words"]
    assert named[0]["words"] == pytest.approx(raw["words"] * stats[1] + stats[0], abs=1e-5)
    with pytest.raises(Exception, match="pass combine"):
        load_reward_model(out).score(["q"], ["a"])


def test_constrained_combination_honours_the_threshold(tiny_llama_dir, scored_jsonl, tmp_path):
    out = tmp_path / "reg2"
    _train(tiny_llama_dir, scored_jsonl, out, "--objective", "regression", "--heads", "follows,words", "--max-steps", "2")
    base = load_reward_model(out)
    prompts, replies = ["q"] * 4, ["a", "bb bb", "ccc ccc ccc", "d"]
    named = base.score_named(prompts, replies)
    tau = sorted(r["words"] for r in named)[1]  # half of the replies fall below the threshold
    constrained = load_reward_model(out, combine=ConstrainedReward("follows", {"words": tau}))
    for row, value in zip(named, constrained.score(prompts, replies)):
        assert value == (row["follows"] if row["words"] >= tau else float("-inf"))
    scores = tmp_path / "s.jsonl"
    assert main(["score", "--model", str(out), "--data", str(scored_jsonl), "--output", str(scores),
                 "--primary", "follows", "--thresholds", json.dumps({"words": tau}), "--penalty", "-100"]) == 0
    for line in map(json.loads, scores.read_text().splitlines()):
        assert line["reward"] == (line["rewards"]["follows"] if line["rewards"]["words"] >= tau else -100)


def test_hybrid_derives_pairs_within_prompts_and_trains(tiny_llama_dir, scored_jsonl, tmp_path, capsys):
    metrics = _train(tiny_llama_dir, scored_jsonl, tmp_path / "hy", "--objective", "hybrid", "--hybrid-alpha", "0.3",
                     "--pair-rule", "best_worst", "--max-steps", "30", "--batch-size", "8")
    assert _falls(metrics)[0]
    log = capsys.readouterr().err
    assert "hybrid: derived" in log
    responses = len(scored_jsonl.read_text().splitlines())
    assert f"kept all {responses} scored responses" in log and "prompt groups of scored responses;" in log  # groups vs responses
    assert "eval_pair_accuracy" in metrics[-1]


def test_plackett_luce_trains_on_ranked_lists(tiny_llama_dir, tmp_path):
    pairs = demo_pairs("train", 96)
    rows = [{"prompt": p.prompt[0].content, "responses": [p.rejected, p.chosen, "I do not know."], "ranks": [2, 1, 3]}
            for p in pairs]
    data = write_jsonl(tmp_path / "ranked.jsonl", rows)
    metrics = _train(tiny_llama_dir, data, tmp_path / "pl", "--objective", "plackett_luce", "--max-steps", "30", "--batch-size", "4")
    falls, losses = _falls(metrics)
    assert falls, losses
    assert losses[0] == pytest.approx(torch.log(torch.tensor(6.0)).item(), abs=0.1)  # log 3! at the start
    assert "eval_top1_accuracy" in metrics[-1]


def test_davidson_learns_from_ties_that_bradley_terry_drops(tiny_llama_dir, tmp_path, capsys):
    rows = []
    for i, p in enumerate(demo_pairs("train", 96)):
        if i % 4 == 0:  # the same reply with different filler: neither is better
            rows.append({"prompt": p.prompt[0].content, "chosen": p.chosen, "rejected": p.chosen + " Thanks!", "tie": True})
        else:
            rows.append({"prompt": p.prompt[0].content, "chosen": p.chosen, "rejected": p.rejected})
    data = write_jsonl(tmp_path / "ties.jsonl", rows)
    _train(tiny_llama_dir, data, tmp_path / "bt", "--max-steps", "1")
    assert "24 labelled as ties (use --objective davidson" in capsys.readouterr().err
    metrics = _train(tiny_llama_dir, data, tmp_path / "dv", "--objective", "davidson", "--tie-strength", "1.0", "--max-steps", "30")
    assert _falls(metrics)[0]
    assert "ties" not in capsys.readouterr().err.split("data:")[1].split("\n")[0]


def test_strength_labels_map_to_margins_and_weights(tiny_llama_dir, tmp_path):
    from rewardlab.training.objectives import PairwiseObjective
    from rewardlab.data.readers import to_preference_pair

    objective = PairwiseObjective(strength_margins={"significantly better": 2.0, "slightly better": 0.5},
                                  strength_weights={"negligibly better": 0.1})
    pair = to_preference_pair({"prompt": "p", "chosen": "a", "rejected": "b", "strength": "significantly better"}, "f:1")
    assert objective._pair_targets(pair) == (2.0, 1.0, 0.0, 0.0)
    weak = to_preference_pair({"prompt": "p", "chosen": "a", "rejected": "b", "strength": "negligibly better"}, "f:2")
    assert objective._pair_targets(weak) == (0.0, 0.1, 0.0, 0.0)
    with pytest.raises(DataFormatError, match="f:3: field 'strength': unknown label 'much better'"):
        objective._pair_targets(to_preference_pair({"prompt": "p", "chosen": "a", "rejected": "b", "strength": "much better"}, "f:3"))
    rows = [{"prompt": p.prompt[0].content, "chosen": p.chosen, "rejected": p.rejected,
             "strength": "significantly better" if i % 2 else "slightly better"} for i, p in enumerate(demo_pairs("train", 64))]
    data = write_jsonl(tmp_path / "strength.jsonl", rows)
    metrics = _train(tiny_llama_dir, data, tmp_path / "st", "--strength-margins",
                     json.dumps({"significantly better": 1.0, "slightly better": 0.2}), "--max-steps", "25")
    assert _falls(metrics)[0]


def test_bad_objective_name_is_rejected_by_the_cli(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["train", "--model", "m", "--data", "d", "--output-dir", str(tmp_path), "--objective", "pairwise"])
    assert "invalid choice: 'pairwise'" in capsys.readouterr().err


@requires_shared(TOPICAL)
def test_multi_objective_regression_on_usr_topical_chat(tiny_llama_dir, tmp_path):
    out = tmp_path / "usr"
    # 36 training responses for ~9 epochs: the tiny random model can only memorize, which is
    # what this checks (the loss falls on real multi-attribute data); docs/objectives.md has
    # held-out numbers for a pretrained backbone.
    metrics = _train(tiny_llama_dir, TOPICAL, out, "--objective", "regression", "--heads", USR_HEADS, "--normalize-targets",
                     "global", "--max-steps", "48", "--batch-size", "8", "--eval-fraction", "0.25", "--max-pairs", "48")
    falls, losses = _falls(metrics)
    assert falls, losses
    assert AutoConfig.from_pretrained(out).id2label[5] == "overall"
    final = metrics[-1]
    assert final["eval_responses"] == 12 and "eval_pearson_groundedness" in final
