import json

import pytest

from rewardlab.cli import main
from rewardlab.data.demo import demo_pairs
from rewardlab.evaluation.benchmark import BenchmarkItem
from rewardlab.evaluation.diagnostics import distribution_shift, length_bias, load_probes, perturb, run_probes

from .synthetic import ContentScorer, LengthScorer, MarkdownScorer

PAIRS = [BenchmarkItem(p.prompt, p.chosen, (p.rejected,), "demo") for p in demo_pairs("balanced", 200)]


def test_length_scorer_is_flagged_by_length_bias_and_verbosity():
    bias = length_bias(LengthScorer(), PAIRS)
    assert bias["flagged"] and bias["spearman"] > 0.99
    assert bias["accuracy_chosen_longer"] == 1.0 and bias["accuracy_chosen_shorter"] == 0.0
    assert bias["accuracy"] == pytest.approx(bias["always_longer_baseline"], abs=0.02)
    probes = run_probes(LengthScorer(), PAIRS, load_probes())
    assert probes["verbosity"]["flagged"] and probes["verbosity"]["fraction_perturbed_higher"] == 1.0
    assert probes["sycophancy"]["flagged"] and probes["keywords"]["flagged"]


def test_a_bias_toward_shorter_replies_is_flagged_with_its_direction():
    from rewardlab.scoring.protocol import FunctionScorer

    shorter = FunctionScorer(lambda prompt, response: -float(len(response.split())))
    bias = length_bias(shorter, PAIRS)
    assert bias["flagged"] and bias["direction"] == "shorter" and bias["margin_length_spearman"] < -0.99
    assert bias["accuracy"] == pytest.approx(bias["always_shorter_baseline"], abs=0.02)
    longer = length_bias(LengthScorer(), PAIRS)
    assert longer["direction"] == "longer" and length_bias(ContentScorer(), PAIRS)["direction"] == "none"


def test_markdown_scorer_is_flagged_by_the_format_probe_only():
    probes = run_probes(MarkdownScorer(), PAIRS, load_probes())
    assert probes["format"]["flagged"] and probes["format"]["fraction_perturbed_higher"] == 1.0
    assert not probes["verbosity"]["flagged"] and not probes["sycophancy"]["flagged"]
    assert probes["position"]["applicable"] is False


def test_pathology_free_scorer_is_not_flagged():
    bias = length_bias(ContentScorer(), PAIRS)
    probes = run_probes(ContentScorer(), PAIRS, load_probes())
    assert not bias["flagged"], bias["spearman"]
    assert not any(p.get("flagged") for p in probes.values())


def test_probes_are_data_driven(tmp_path):
    (tmp_path / "emoji.json").write_text(json.dumps({"name": "emoji", "operation": "append", "texts": [":)"]}))
    probes = load_probes(tmp_path)
    assert probes[-1].name == "emoji" and perturb(probes[-1], "Hi.") == "Hi. :)"
    (tmp_path / "bad.json").write_text(json.dumps({"name": "x", "operation": "shout", "texts": ["!"]}))
    from rewardlab.errors import ConfigError

    with pytest.raises(ConfigError, match="bad.json: 'operation'"):
        load_probes(tmp_path)


def test_distribution_shift_detects_a_moved_distribution():
    same = distribution_shift([0.0, 1.0, 2.0, 3.0], [0.0, 1.0, 2.0, 3.0])
    moved = distribution_shift([0.0, 1.0, 2.0, 3.0] * 10, [5.0, 6.0, 7.0, 8.0] * 10)
    assert same["ks_statistic"] == 0.0 and moved["ks_statistic"] == 1.0 and moved["mean_shift"] == 5.0


def test_ensemble_disagreement_separates_agreeing_and_disagreeing_members():
    from rewardlab.evaluation.diagnostics import ensemble_disagreement

    prompts, replies = [i.prompt for i in PAIRS[:50]], [i.chosen for i in PAIRS[:50]]
    agree = ensemble_disagreement([LengthScorer(), LengthScorer()], prompts, replies)
    differ = ensemble_disagreement([LengthScorer(), ContentScorer(), MarkdownScorer()], prompts, replies)
    assert agree["mean_item_std"] == 0.0 and agree["mean_pairwise_spearman"] == pytest.approx(1.0)
    assert differ["mean_item_std"] > 0.3
    from rewardlab.errors import ConfigError

    with pytest.raises(ConfigError, match="at least two"):
        ensemble_disagreement([LengthScorer()], prompts, replies)


def test_diagnose_and_ratings_cli(tiny_llama_dir, tmp_path):
    import numpy as np

    from rewardlab.models.io import RewardModelMetadata, build_reward_model, save_pretrained

    model, tok = build_reward_model(str(tiny_llama_dir))
    save_pretrained(model, tok, RewardModelMetadata(pooling=model.pooling, max_length=256), tmp_path / "rm")
    rows = [{"prompt": i.prompt[0].content, "chosen": i.chosen, "rejected": i.rejected[0]} for i in PAIRS[:30]]
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(["diagnose", "--model", str(tmp_path / "rm"), "--data", str(data), "--output-dir", str(tmp_path / "dg"),
                 "--compare", str(data), "--ensemble", str(tmp_path / "rm"), "--ensemble-scale", "none"]) == 0
    result = json.loads((tmp_path / "dg" / "results.json").read_text())
    assert {"length_bias", "probes", "shift", "ensemble"} <= set(result) and result["shift"]["ks_statistic"] == 0.0
    assert result["ensemble"]["mean_item_std"] == pytest.approx(0.0, abs=1e-5)  # a model agrees with itself
    assert (tmp_path / "dg" / "probes.png").exists() and (tmp_path / "dg" / "length_scatter.png").exists()

    rng = np.random.default_rng(0)
    battles = []
    for _ in range(600):
        x, y = rng.choice(["big", "mid", "small"], 2, replace=False)
        strength = {"big": 1.0, "mid": 0.0, "small": -1.0}
        p = 1 / (1 + np.exp(-(strength[x] - strength[y])))
        battles.append({"model_a": x, "model_b": y, "winner": "model_a" if rng.random() < p else "model_b",
                        "length_a": int(rng.integers(10, 100)), "length_b": int(rng.integers(10, 100))})
    (tmp_path / "b.jsonl").write_text("".join(json.dumps(b) + "\n" for b in battles))
    assert main(["ratings", "--battles", str(tmp_path / "b.jsonl"), "--output-dir", str(tmp_path / "rt"),
                 "--baseline", "mid", "--bootstrap", "200"]) == 0
    rated = json.loads((tmp_path / "rt" / "results.json").read_text())
    assert [r["name"] for r in rated["ratings"]["bradley_terry"]] == ["big", "mid", "small"]
    assert rated["win_rates"]["models"]["big"]["win_rate"] > 0.6
    assert 0 < rated["win_rates"]["models"]["big"]["length_controlled_win_rate"] < 1
    (tmp_path / "bad.jsonl").write_text('{"model_a": "x", "model_b": "y", "winner": "x"}\n')
    assert main(["ratings", "--battles", str(tmp_path / "bad.jsonl"), "--output-dir", str(tmp_path / "rt2")]) == 2
