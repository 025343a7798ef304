"""Over-optimization: the unbiased best-of-n estimator against brute force, the tilted distribution's KL against a
direct computation, Gao fits recovering known parameters within their intervals, the harness end to end."""

import itertools
import json
import math

import numpy as np
import pytest

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


def test_quick_run_builds_pool_proxies_curves_and_summary_and_reuses_finished_steps(tiny_llama_dir, tmp_path):
    from rewardlab.overopt.harness import quick_run

    class Scripted:  # replies that follow the instruction or not, on topic or not
        calls = 0

        def continue_solution(self, prompt, prefix, n, max_new_tokens=64, stop=None, seed=None):
            Scripted.calls += 1
            rng = np.random.default_rng(seed)
            topic = prompt[-1].content.split("about ")[-1].split()[0].strip(".")
            return [("- " + topic + " a\n- b\n- c" if rng.random() < 0.5 else f"{topic} is nice and golden and gentle " * int(rng.integers(1, 4)))
                    for _ in range(n)]

    summary = quick_run(Scripted(), str(tiny_llama_dir), tmp_path / "q", sizes=(40, 80), prompts=6, n=4, epochs=1.0,
                        bootstrap=20, show_progress=False)
    assert set(summary["peaks"]) == {"40", "80"} and isinstance(summary["larger_proxy_peaks_higher"], bool)
    assert all((tmp_path / "q" / f"overopt_{s}" / "report.md").is_file() for s in (40, 80))
    calls = Scripted.calls
    again = quick_run(Scripted(), str(tiny_llama_dir), tmp_path / "q", sizes=(40, 80), prompts=6, n=4, epochs=1.0,
                      bootstrap=20, show_progress=False)
    assert Scripted.calls == calls and again["peaks"] == summary["peaks"]  # pool and proxies reused: nothing redone
