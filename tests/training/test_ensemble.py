"""Bootstrap-heads ensembles: K heads on one trunk, each trained on its own Poisson bootstrap resample."""

import json

import pytest
import torch

from rewardlab.data.records import Message, PreferencePair
from rewardlab.errors import ConfigError
from rewardlab.training.config import TrainConfig
from rewardlab.training.objectives import PAIR_TARGETS, bootstrap_weights, make_objective


def test_each_head_learns_only_from_its_own_resample():
    objective = make_objective(TrainConfig.from_options(model="m", data="d", output_dir="o", ensemble=3).objective)
    pairs = [PreferencePair((Message("user", f"q{i}"),), f"good {i}", f"bad {i}") for i in range(200)]
    counts = torch.tensor([bootstrap_weights(p, 3) for p in pairs])
    assert counts.mean().item() == pytest.approx(1.0, abs=0.15)  # Poisson(1): the resample keeps the data size
    assert (counts[:, 0] != counts[:, 1]).float().mean() > 0.3  # heads see different data
    targets = torch.tensor([[0.0, 1.0, 0.0, 0.0, 0.0, 1.0, 2.0]])  # this pair counts 0, 1 and 2 times
    rewards = torch.zeros(2, 3, requires_grad=True)  # chosen and rejected rewards of each head
    objective.loss(rewards, {"targets": targets}).sum().backward()
    grads = rewards.grad[0].abs()
    assert grads[0] == 0 and grads[2] == pytest.approx(2 * grads[1])
    assert len(PAIR_TARGETS) + 3 == targets.shape[1]
    with pytest.raises(ConfigError, match="leave 'heads' unset"):
        TrainConfig.from_options(model="m", data="d", output_dir="o", ensemble=3, heads="a,b,c")


def test_a_trained_bootstrap_ensemble_loads_in_transformers_and_scores_as_an_ensemble(tiny_llama_dir, demo_jsonl, tmp_path):
    from transformers import AutoModelForSequenceClassification

    from rewardlab.cli import main
    from rewardlab.scoring.config import build_scorer, scorer_config
    from rewardlab.scoring.ensemble import EnsembleScorer

    out = tmp_path / "ens"
    assert main(["train", "--model", str(tiny_llama_dir), "--data", str(demo_jsonl), "--output-dir", str(out), "--ensemble", "3",
                 "--max-steps", "6", "--batch-size", "8", "--max-length", "192", "--learning-rate", "1e-3",
                 "--eval-fraction", "0.25", "--no-show-progress"]) == 0
    meta = json.loads((out / "rewardlab.json").read_text())
    assert meta["ensemble"] == "heads" and meta["heads"] == ["boot_0", "boot_1", "boot_2"]
    assert set(meta["head_reward_stats"]) == {"boot_0", "boot_1", "boot_2"}
    hf = AutoModelForSequenceClassification.from_pretrained(out)
    assert hf.config.num_labels == 3 and hf.config.id2label[2] == "boot_2"
    scorer = build_scorer(scorer_config(str(out), ensemble_aggregate="mean_minus_std"))
    assert isinstance(scorer, EnsembleScorer)
    detail = scorer.score_detailed(["Tell me about bees.", "Write about rivers."], ["Bees make honey.", "zzz qqq"])
    assert detail.members.shape == (3, 2) and (detail.std > 0).all()
    assert scorer.score(["q"], ["a"])[0] == pytest.approx(float(scorer.score_detailed(["q"], ["a"]).members.mean() -
                                                                  scorer.score_detailed(["q"], ["a"]).std[0]), abs=1e-6)


def test_anchor_penalty_is_zero_at_init_and_pulls_weights_back(tiny_llama_dir, demo_jsonl, tmp_path):
    from rewardlab.losses import l2_anchor_penalty
    from rewardlab.training.loop import train

    weights = [torch.randn(3, 3, requires_grad=True)]
    anchors = [w.detach().clone() for w in weights]
    assert l2_anchor_penalty(weights, anchors, 10.0).item() == 0.0
    with torch.no_grad():
        weights[0] += 1.0
    l2_anchor_penalty(weights, anchors, 0.5).backward()
    assert torch.allclose(weights[0].grad, torch.ones(3, 3))  # d/dw 0.5 * (w - w0)^2 = w - w0

    def drift(anchor):
        from safetensors.torch import load_file

        out = tmp_path / f"a{anchor}"
        train(model=str(tiny_llama_dir), data=str(demo_jsonl), output_dir=str(out), max_steps=8, batch_size=8, max_length=192,
              learning_rate=5e-3, anchor_l2=anchor, eval_fraction=0.0, show_progress=False, seed=0)
        start = load_file(str(tiny_llama_dir / "model.safetensors"))
        end = load_file(str(out / "model.safetensors"))
        shared = [k for k, v in start.items() if k in end and end[k].shape == v.shape]  # the resized embedding aside
        assert len(shared) > 5
        return sum(float((end[k] - start[k]).pow(2).sum()) for k in shared)

    assert drift(10.0) < 0.5 * drift(0.0)  # the anchored run stays closer to the backbone


def test_augmentation_adds_pathological_rejected_replies_to_training_pairs_only(tiny_llama_dir, demo_jsonl, tmp_path):
    from rewardlab.training.loop import load_train_eval_records

    config = TrainConfig.from_options(model=str(tiny_llama_dir), data=str(demo_jsonl), output_dir=str(tmp_path / "o"),
                                      augment={"length": 0.5, "sycophancy": 0.25}, eval_fraction=0.25)
    objective = make_objective(config.objective)
    assert not objective.streams  # augmented runs tokenize in memory
    train_raw, eval_raw, _ = load_train_eval_records(config, objective)
    augmented = objective.augment_training(train_raw)
    extra = augmented[len(train_raw):]
    assert 0.5 * len(train_raw) < len(extra) < 1.0 * len(train_raw)
    assert all(p.source.endswith(("(augmented: length)", "(augmented: sycophancy)")) for p in extra)
    assert all(len(p.rejected.split()) > len(p.chosen.split()) for p in extra if p.source.endswith("length)"))
    assert not any("augmented" in p.source for p in eval_raw)
    with pytest.raises(ConfigError, match="unknown"):
        TrainConfig.from_options(model="m", data="d", output_dir="o", augment={"emoji": 0.5})


def test_a_seeds_ensemble_trains_k_models_and_scores_as_their_ensemble(tiny_llama_dir, demo_jsonl, tmp_path):
    from rewardlab.cli import main
    from rewardlab.scoring.config import build_scorer, scorer_config
    from rewardlab.scoring.ensemble import EnsembleScorer

    out = tmp_path / "seeds"
    assert main(["train", "--model", str(tiny_llama_dir), "--data", str(demo_jsonl), "--output-dir", str(out), "--ensemble", "2",
                 "--ensemble-kind", "seeds", "--max-steps", "3", "--batch-size", "8", "--max-length", "192",
                 "--learning-rate", "1e-3", "--eval-fraction", "0.25", "--no-show-progress"]) == 0
    listed = json.loads((out / "ensemble.json").read_text())
    assert listed == {"kind": "seeds", "members": ["member_0", "member_1"], "seeds": [42, 43]}
    assert all((out / m / "rewardlab.json").is_file() for m in listed["members"])
    scorer = build_scorer(scorer_config(str(out), ensemble_aggregate="min"))
    assert isinstance(scorer, EnsembleScorer) and scorer.member_names == ["member_0", "member_1"]
    detail = scorer.score_detailed(["Tell me about bees."], ["Bees make honey."])
    assert detail.members.shape == (2, 1) and detail.std[0] > 0  # different seeds, different models
    with pytest.raises(ConfigError, match="needs 'ensemble' K > 1"):
        TrainConfig.from_options(model="m", data="d", output_dir="o", ensemble_kind="seeds")


def test_a_lora_ensemble_trains_adapters_and_scores_them_on_one_base_like_their_merged_folders(tiny_llama_dir, demo_jsonl, tmp_path):
    from safetensors.torch import load_file

    from rewardlab.cli import main
    from rewardlab.scoring.config import build_scorer, scorer_config
    from rewardlab.scoring.ensemble import EnsembleScorer, LoraMember
    from rewardlab.scoring.local import load_reward_model

    out = tmp_path / "lora"
    assert main(["train", "--model", str(tiny_llama_dir), "--data", str(demo_jsonl), "--output-dir", str(out), "--ensemble", "2",
                 "--ensemble-kind", "lora", "--lora-rank", "4", "--max-steps", "4", "--batch-size", "8", "--max-length", "192",
                 "--learning-rate", "5e-3", "--eval-fraction", "0.25", "--no-show-progress"]) == 0
    listed = json.loads((out / "ensemble.json").read_text())
    assert listed["kind"] == "lora" and listed["base_model"] == str(tiny_llama_dir)
    adapter = load_file(str(out / "member_0" / "adapter.safetensors"))
    assert any("lora_A" in k for k in adapter) and all("lora_" in k or k.startswith("score") for k in adapter)
    scorer = build_scorer(scorer_config(str(out)))
    assert isinstance(scorer, EnsembleScorer) and all(isinstance(m, LoraMember) for m in scorer.members)
    prompts, replies = ["Tell me about bees.", "Write about rivers."], ["Bees make honey in hives.", "Rivers flow."]
    for name, member in zip(listed["members"], scorer.members):  # adapter on the shared base == the saved merged folder
        merged = load_reward_model(out / name, normalize=True).score(prompts, replies)
        assert member.score(prompts, replies) == pytest.approx(merged, abs=1e-4)
    detail = scorer.score_detailed(prompts, replies)
    assert (detail.std > 0).all()  # the adapters differ (different seeds and batch orders)
    low = build_scorer(scorer_config(str(out), precision="bf16"))  # the shared base is built as asked (it was fp32 always)
    base = low.members[0].base.model.hf_model
    assert {p.dtype for n, p in base.named_parameters() if "lora_" not in n} == {torch.bfloat16}
    assert low.score_detailed(prompts, replies).members.flatten().tolist() == pytest.approx(detail.members.flatten().tolist(), abs=0.1)


def test_held_out_loss_of_an_ensemble_is_unweighted_by_the_bootstrap_draws():
    """Issue 33 item 13: at zero margin every head's loss is log 2, so the held-out loss must be log 2 (0.693) whatever
    each pair's bootstrap counts are (they are a training device)."""
    import math

    from rewardlab.training.objectives import Example

    objective = make_objective(TrainConfig.from_options(model="m", data="d", output_dir="o", ensemble=2).objective)
    pairs = [PreferencePair((Message("user", f"q{i}"),), f"good {i}", f"bad {i}") for i in range(64)]
    examples = [Example(((1,), (2,)), objective._pair_targets(p)) for p in pairs]
    assert len({tuple(e.targets[len(PAIR_TARGETS):]) for e in examples}) > 1  # the draws differ between pairs
    rewards = [torch.zeros(2 * len(pairs), 2)]  # (2G, K): zero margin for both heads
    assert objective.metrics(rewards, examples, "half")["loss"] == pytest.approx(math.log(2), abs=1e-6)
