"""Over-optimization: the unbiased best-of-n estimator against brute force, the tilted distribution's KL against a
direct computation, Gao fits recovering known parameters within their intervals, the harness end to end."""

import itertools
import json
import math

import numpy as np
import pytest

from rewardlab.cli import main
from rewardlab.errors import ConfigError

from rewardlab.overopt.curves import best_of_n_weights, bon_curve, tilted_curve
from rewardlab.overopt.fits import fit_gao
from rewardlab.scoring.protocol import FunctionScorer

from ..conftest import write_jsonl


def test_best_of_n_estimator_equals_the_average_over_every_subset():
    rng = np.random.default_rng(0)
    gold, proxy = rng.normal(size=(3, 7)), rng.normal(size=(3, 7))
    proxy[0, 2] = proxy[0, 5]  # a tie
    for n in (1, 2, 3, 7):
        brute = []
        for row in range(3):
            values = []
            for subset in itertools.combinations(range(7), n):
                best = max(proxy[row, list(subset)])
                winners = [i for i in subset if proxy[row, i] == best]
                values.append(np.mean([gold[row, i] for i in winners]))  # ties split evenly
            brute.append(np.mean(values))
        assert bon_curve(gold, proxy, [n])["gold"][0] == pytest.approx(np.mean(brute))
        assert best_of_n_weights(proxy, n).sum(1) == pytest.approx(np.ones(3))
    curve = bon_curve(gold, proxy, [1, 2, 4])
    assert curve["kl"] == pytest.approx([0.0, math.log(2) - 0.5, math.log(4) - 0.75])
    assert curve["gold"][0] == pytest.approx(gold.mean()) and all(c >= g - 1e-12 for c, g in zip(curve["gold_ceiling"], curve["gold"]))


def test_tilted_kl_matches_a_direct_computation():
    rng = np.random.default_rng(1)
    gold, proxy = rng.normal(size=(4, 6)), rng.normal(size=(4, 6))
    curve = tilted_curve(gold, proxy, [0.3])
    direct_kl, direct_gold = [], []
    for row in range(4):
        w = np.exp(proxy[row] / 0.3) / np.exp(proxy[row] / 0.3).sum()
        direct_kl.append(sum(wi * math.log(wi / (1 / 6)) for wi in w))
        direct_gold.append(float(w @ gold[row]))
    assert curve["kl"][0] == pytest.approx(np.mean(direct_kl)) and curve["gold"][0] == pytest.approx(np.mean(direct_gold))
    extreme = tilted_curve(gold, proxy, [1e-6, 1e6])
    assert extreme["kl"][0] == pytest.approx(math.log(6), abs=1e-6) and extreme["kl"][1] == pytest.approx(0, abs=1e-6)


@pytest.mark.parametrize("form, alpha, beta", [("bon", 1.2, 0.5), ("rl", 0.8, 0.4)])
def test_fits_recover_known_parameters_within_their_intervals(form, alpha, beta):
    rng = np.random.default_rng(2)
    d = np.linspace(0.1, 2.5, 15)
    true = d * (alpha - beta * d) if form == "bon" else d * (alpha - beta * np.log(d))
    observed = true + rng.normal(0, 0.02, size=d.size)
    replicates = [true + rng.normal(0, 0.02, size=d.size) for _ in range(300)]
    fit = fit_gao(d, observed, form, replicates)
    assert fit.alpha_ci[0] <= alpha <= fit.alpha_ci[1] and fit.beta_ci[0] <= beta <= fit.beta_ci[1]
    assert fit.r_squared > 0.98
    expected_peak = alpha / (2 * beta) if form == "bon" else math.exp(alpha / beta - 1)
    assert fit.peak_d == pytest.approx(expected_peak, rel=0.1)


def test_overopt_cli_on_a_pool_where_the_proxy_is_hackable(tmp_path):
    """A proxy that likes length; gold likes the right answer and penalizes padding: gold rises, then falls."""
    from rewardlab.cli import main
    from rewardlab.overopt.harness import run_overopt

    rng = np.random.default_rng(3)
    rows = []
    for q in range(40):
        candidates, gold = [], []
        for _ in range(8):
            right, pad = rng.random() < 0.5, int(rng.integers(0, 12))
            candidates.append(("answer 4 " if right else "answer 5 ") + "filler " * pad)
            gold.append(float(right) - 0.5 * max(0, pad - 8))  # a little padding is harmless, a lot is not
        rows.append({"prompt": f"q{q}", "candidates": candidates, "gold": gold})
    data = write_jsonl(tmp_path / "pool.jsonl", rows)
    proxy = FunctionScorer(lambda p, r: 0.1 * len(r.split()) + (3.0 if "answer 4" in r else 0.0), name="length-loving")
    result = run_overopt(proxy, data, tmp_path / "o", bootstrap=50, show_progress=False)
    gold = result["best_of_n"]["gold"]
    assert max(gold) > gold[0] and gold[-1] < max(gold)  # rises, then falls: over-optimization
    assert set(result["fits"]) == {"bon", "rl"} and result["fits"]["bon"]["alpha_ci"] is not None
    report = (tmp_path / "o" / "report.md").read_text()
    assert "| form | alpha (95% CI)" in report and (tmp_path / "o" / "overopt.json").is_file()
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"prompt": "q", "candidates": ["a", "b"]}])
    assert main(["overopt", "--model", "unused", "--data", str(bad), "--output-dir", str(tmp_path / "b")]) == 2


def test_pools_are_seeded_per_prompt_resume_after_a_kill_and_carry_gold(tmp_path):
    from rewardlab.overopt.gold import demo_gold_scorer
    from rewardlab.overopt.pool import sample_pool

    class Seeded:
        def __init__(self, die_at=None):
            self.calls, self.die_at = 0, die_at

        def continue_solution(self, prompt, prefix, n, max_new_tokens=64, stop=None, seed=None):
            self.calls += 1
            if self.calls == self.die_at:
                raise KeyboardInterrupt
            rng = np.random.default_rng(seed)
            return [" ".join(["bees"] * int(rng.integers(1, 8))) for _ in range(n)]

    prompts = ["Tell me something about bees.", "Write two sentences about bees and use the word 'golden'.", "Tell me about rain."]
    whole = tmp_path / "whole.jsonl"
    sample_pool(Seeded(), prompts, 4, whole, demo_gold_scorer(), show_progress=False)
    part = tmp_path / "part.jsonl"
    with pytest.raises(KeyboardInterrupt):
        sample_pool(Seeded(die_at=3), prompts, 4, part, demo_gold_scorer(), show_progress=False)
    stats = sample_pool(Seeded(), prompts, 4, part, demo_gold_scorer(), show_progress=False)
    assert stats == {"prompts": 3, "sampled": 1, "resumed": 2} and part.read_text() == whole.read_text()
    rows = [json.loads(line) for line in whole.read_text().splitlines()]
    assert all(len(r["candidates"]) == len(r["gold"]) == 4 for r in rows) and rows[2]["gold"] == [0.0] * 4  # bees, not rain


class Scripted:  # replies that follow the instruction or not, on topic or not: the gold varies, the proxies can learn
    calls = 0

    def continue_solution(self, prompt, prefix, n, max_new_tokens=64, stop=None, seed=None):
        Scripted.calls += 1
        rng = np.random.default_rng(seed)
        topic = prompt[-1].content.split("about ")[-1].split()[0].strip(".")
        return [("- " + topic + " a\n- b\n- c" if rng.random() < 0.5 else f"{topic} is nice and golden and gentle " * int(rng.integers(1, 4)))
                for _ in range(n)]


def test_experiment_builds_pool_proxies_mitigations_rounds_and_report_and_resumes(tiny_llama_dir, tmp_path):
    import shutil

    from rewardlab.overopt.experiment import OveroptConfig, run_experiment

    config = OveroptConfig(proxy_backbone=str(tiny_llama_dir), proxy_sizes=(40, 80), seeds=(0, 1), prompts=6, n=4, epochs=1.0,
                           bootstrap=20, rounds=1, round_n=2, min_improvement=-1.0)
    summary = run_experiment(config, tmp_path / "q", generator=Scripted(), show_progress=False)
    assert set(summary["sizes"]) == {"40", "80"} and isinstance(summary["larger_proxy_peaks_higher"], bool)
    row = summary["sizes"]["80"]
    assert set(row["seeds"]) == {"seed0", "seed1"} and row["peak_gold_sd"] is not None
    assert set(row["mitigations"]) == {"ensemble:mean_minus_std", "length_penalty:0.1"} and row["mitigations"]["length_penalty:0.1"]["runs"] == 2
    rounds = summary["rounds"]
    assert [r["round"] for r in rounds] == [0, 1] and rounds[1]["training_pairs"] > rounds[0]["training_pairs"]
    assert all(0 <= r["policy_gold"] <= 1.5 for r in rounds)
    report = (tmp_path / "q" / "report.md").read_text()
    assert "Iterative re-training" in report and "ensemble:mean_minus_std" in report and (tmp_path / "q" / "overopt.png").is_file()
    gap = json.loads((tmp_path / "q" / "overopt_80_seed0" / "overopt.json").read_text())["best_of_n"]["gap"]
    assert gap[0] == pytest.approx(0.0, abs=1e-9)  # n = 1 is the reference: no gap
    calls = Scripted.calls
    # a kill after the first measurements: the later steps' folders are missing; the rerun redoes them alone
    for name in ("overopt_80_seed1", "round_1", "summary.json"):
        target = tmp_path / "q" / name
        shutil.rmtree(target) if target.is_dir() else target.unlink()
    again = run_experiment(config, tmp_path / "q", generator=Scripted(), show_progress=False)
    assert Scripted.calls == calls  # pools reused: nothing sampled again
    assert again["sizes"]["80"]["seeds"] == summary["sizes"]["80"]["seeds"]  # the retrained proxy gives the same curve
    assert again["rounds"][1]["training_pairs"] == rounds[1]["training_pairs"]
    with pytest.raises(ConfigError, match="holds a run with another configuration"):
        run_experiment(OveroptConfig(proxy_backbone=str(tiny_llama_dir), proxy_sizes=(40,), seeds=(0, 1), prompts=6, n=4), tmp_path / "q",
                       generator=Scripted(), show_progress=False)


def test_yaml_configuration_is_checked_and_runs_from_the_cli(tiny_llama_dir, tmp_path, capsys):
    from rewardlab.overopt.experiment import load_config

    bad = tmp_path / "bad.yaml"
    bad.write_text("prompts: 4\nproxy_size: [10]\n")
    with pytest.raises(ConfigError, match="bad.yaml: unknown setting 'proxy_size'"):
        load_config(bad)
    bad.write_text("seeds: 3\n")
    with pytest.raises(ConfigError, match="seeds expects a list"):
        load_config(bad)
    bad.write_text("mitigations: [ensemble:median]\n")
    with pytest.raises(ConfigError, match="ensemble takes one of"):
        load_config(bad)
    good = tmp_path / "run.yaml"
    good.write_text(f"policy: {tiny_llama_dir}\nproxy_backbone: {tiny_llama_dir}\nproxy_sizes: [16, 32]\nseeds: [0]\n"
                    "prompts: 3\nn: 4\nmax_new_tokens: 8\nepochs: 1\nbootstrap: 10\nmitigations: [length_penalty:0.1]\nrounds: 0\n")
    assert load_config(good).proxy_sizes == (16, 32)
    assert main(["overopt", "--config", str(good), "--output-dir", str(tmp_path / "run")]) == 0
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert set(summary["sizes"]) == {"16", "32"} and summary["rounds"] == []
    pool = [json.loads(line) for line in (tmp_path / "run" / "pool.jsonl").read_text().splitlines()]
    assert len(pool) == 3 and all(len(r["token_logprobs"]) == 4 and all(lp < 0 for c in r["token_logprobs"] for lp in c) for r in pool)
    assert main(["overopt", "--config", str(good), "--seed", "3", "--output-dir", str(tmp_path / "run")]) != 0
    assert "settings of the configuration file" in capsys.readouterr().err
    # a reward model as the gold, the policy's own samples as the proxies' training data, prompts from a file
    import torch

    from rewardlab.models.io import RewardModelMetadata, build_reward_model, save_pretrained

    torch.manual_seed(1)
    model, tok = build_reward_model(str(tiny_llama_dir))
    save_pretrained(model, tok, RewardModelMetadata(pooling=model.pooling, max_length=128), tmp_path / "gold_rm")
    prompts = write_jsonl(tmp_path / "prompts.jsonl", [{"prompt": f"Say something about {t}."} for t in ("a", "b", "c", "d")])
    other = tmp_path / "gold.yaml"
    other.write_text(f"policy: {tiny_llama_dir}\nproxy_backbone: {tiny_llama_dir}\ngold: model:{tmp_path / 'gold_rm'}\n"
                     f"prompts_file: {prompts}\nproxy_sizes: [8]\nseeds: [0]\nprompts: 2\nn: 4\nmax_new_tokens: 8\nepochs: 1\n"
                     "bootstrap: 10\nmitigations: []\nrounds: 0\n")
    assert main(["overopt", "--config", str(other), "--output-dir", str(tmp_path / "gold_run")]) == 0
    pool = [json.loads(line) for line in (tmp_path / "gold_run" / "pool.jsonl").read_text().splitlines()]
    from rewardlab.scoring.local import load_reward_model

    gold_rm = load_reward_model(str(tmp_path / "gold_rm"))
    assert pool[0]["gold"] == pytest.approx(gold_rm.score([pool[0]["prompt"]] * 4, pool[0]["candidates"]), abs=1e-4)
    assert len((tmp_path / "gold_run" / "pairs_8_seed0.jsonl").read_text().splitlines()) == 8


def test_local_generator_log_probs_equal_a_teacher_forced_forward_pass(tiny_llama_dir):
    import torch
    from transformers import AutoModelForCausalLM

    from rewardlab.data.records import Message
    from rewardlab.labeling.generators import LocalHFGenerator

    gen = LocalHFGenerator(str(tiny_llama_dir), temperature=0.8, seed=0)
    prompt = (Message("user", "Write about bees."),)
    sampled = gen.sample_with_logprobs(prompt, 3, 12, seed=4)
    assert [t for t, _ in sampled] == gen.continue_solution(prompt, "", 3, 12, seed=4)  # the same draws
    head = gen.tokenizer.apply_chat_template([m.as_dict() for m in prompt], tokenize=False, add_generation_prompt=True)
    ids = gen.tokenizer(head, add_special_tokens=False)["input_ids"]
    torch.manual_seed(4)
    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir).eval()
    out = gen.lm.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long), do_sample=True,
                          temperature=0.8, top_p=0.95, max_new_tokens=12, num_return_sequences=3,
                          pad_token_id=gen.tokenizer.pad_token_id)
    for row, (_, logps) in zip(out, sampled):
        new = row[len(ids):][: len(logps)]
        with torch.no_grad():
            logits = model(torch.cat([torch.tensor(ids), new])[None]).logits[0, len(ids) - 1 : -1].log_softmax(-1)
        direct = logits.gather(-1, new[:, None]).squeeze(-1)
        assert len(logps) >= 1 and torch.allclose(torch.tensor(logps), direct, atol=1e-4)


def test_experiment_with_any_gold_scorer_learns_from_the_policys_own_samples(tiny_llama_dir, tmp_path):
    from rewardlab.overopt.experiment import OveroptConfig, run_experiment
    from rewardlab.overopt.harness import read_pool

    prompts = write_jsonl(tmp_path / "prompts.jsonl", [{"prompt": f"Write about {t}."} for t in
                                                       ("bees", "rain", "tea", "chess", "maps", "owls", "kites", "boats")])
    gold = FunctionScorer(lambda prompt, reply: float(reply.startswith("-")) + 0.1 * len(reply.split()), name="bullets")
    config = OveroptConfig(prompts_file=str(prompts), gold="model:unused-when-a-scorer-is-given", proxy_backbone=str(tiny_llama_dir),
                           proxy_sizes=(12,), seeds=(0,), prompts=4, n=4, epochs=1.0, bootstrap=10, mitigations=(), rounds=0)
    assert config.policy_pairs
    summary = run_experiment(config, tmp_path / "x", generator=Scripted(), gold=gold, show_progress=False)
    assert set(summary["sizes"]) == {"12"}
    train_pool = read_pool(tmp_path / "x" / "label_pool.jsonl")
    assert [p for p in train_pool.prompts] == [f"Write about {t}." for t in ("maps", "owls", "kites", "boats")]  # not the eval prompts
    pairs = [json.loads(line) for line in (tmp_path / "x" / "pairs_12_seed0.jsonl").read_text().splitlines()]
    score = lambda r: float(r.startswith("-")) + 0.1 * len(r.split())  # noqa: E731
    assert len(pairs) == 12 and all(score(p["chosen"]) > score(p["rejected"]) for p in pairs)
    too_many = OveroptConfig(prompts_file=str(prompts), proxy_backbone=str(tiny_llama_dir), proxy_sizes=(500,), seeds=(0,), prompts=4,
                             n=4, mitigations=(), rounds=0)
    with pytest.raises(ConfigError, match="fewer than the 500 asked for"):
        run_experiment(too_many, tmp_path / "y", generator=Scripted(), gold=gold, show_progress=False)
    with pytest.raises(ConfigError, match="proxy_data 'demo' trains on the demo's pairs"):
        OveroptConfig(prompts_file=str(prompts), proxy_data="demo")


def test_rl_fit_of_a_curve_that_barely_bends_has_no_peak_instead_of_overflowing():
    d = np.linspace(0.05, 1.3, 12)
    fit = fit_gao(d, 0.3 * d - 1e-4 * d * np.log(d), "rl")  # alpha / beta ~ 3000: exp would overflow
    assert fit.peak_d is None and fit.alpha == pytest.approx(0.3, abs=1e-6)


def test_round_statistics_of_the_best_of_n_policy_against_direct_computations():
    from rewardlab.overopt.experiment import _policy_pairs, _policy_stats
    from rewardlab.overopt.harness import Pool

    rng = np.random.default_rng(0)
    gold = rng.integers(0, 4, (6, 8)).astype(float)
    pool = Pool([f"q{i}" for i in range(6)], [[f"r{i}-{j}" for j in range(8)] for i in range(6)], gold, ["s"] * 6)
    noisy = gold + rng.normal(0, 1.0, gold.shape)
    stats = _policy_stats(gold, noisy, 4)
    assert stats["policy_gold"] == pytest.approx(bon_curve(gold, noisy, [4])["gold"][0])  # the policy is best-of-4
    assert _policy_stats(gold, gold + 1e-3 * np.arange(8), 2)["proxy_gold_correlation_on_policy"] > 0.99
    triples = _policy_pairs(pool, noisy, 4, np.random.default_rng(1))
    assert triples and all(gold[i, a] > gold[i, b] for i, a, b in triples)  # chosen has the higher gold
    picks = {(i, j) for i, a, b in triples for j in (a, b)}
    for i in range(6):  # every paired candidate is the proxy's pick of its group of 4
        assert sum(1 for k, _ in picks if k == i) <= 2


def test_an_empty_pool_file_is_a_clear_error(tmp_path, tiny_rm_dir, capsys):
    """Issue 33 item 12: 'overopt --data' on an empty file raised "min() arg is an empty sequence"."""
    from rewardlab.errors import DataFormatError
    from rewardlab.overopt.harness import read_pool

    empty = tmp_path / "pool.jsonl"
    empty.write_text("")
    with pytest.raises(DataFormatError, match="contains no records"):
        read_pool(empty)
    assert main(["overopt", "--data", str(empty), "--model", str(tiny_rm_dir), "--output-dir", str(tmp_path / "o")]) == 2
    assert "pool.jsonl: contains no records" in capsys.readouterr().err
