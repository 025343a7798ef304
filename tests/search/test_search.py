import json

import numpy as np
import pytest

from rewardlab.cli import main
from rewardlab.data.records import Message
from rewardlab.scoring.aggregation import aggregate
from rewardlab.search.beam import prm_beam_search
from rewardlab.metrics import majority_vote
from rewardlab.search.best_of_n import best_of_n, best_of_n_kl, bon_accuracy_curve, weighted_vote

from ..conftest import SHARED_DATA, requires_shared, write_jsonl

EXAMPLES = SHARED_DATA / "gsm8k" / "example_model_solutions.jsonl"


def test_aggregations_and_their_length_bias():
    short, long = [0.9, 0.9], [0.9] * 8
    assert aggregate(short, "min") == aggregate(long, "min")
    assert aggregate(long, "product") < aggregate(short, "product")  # product penalizes length
    with pytest.raises(ValueError):
        aggregate([], "min")
    with pytest.raises(ValueError, match="aggregation"):
        aggregate([0.5], "max")


def test_best_of_n_tie_break_votes_and_kl():
    from rewardlab.scoring.protocol import FunctionScorer

    fixed = {"a": 1.0, "b": 3.0, "c": 3.0}
    result = best_of_n(FunctionScorer(lambda prompt, response: fixed[response]), "q", ["a", "b", "c"])
    assert result.index == 1 and result.kl == pytest.approx(np.log(3) - 2 / 3)
    assert majority_vote(["1", "2", "2"]) == "2" and weighted_vote(["1", "2", "2"], [5.0, 1.0, 1.0]) == "1"
    assert majority_vote(["1", "2"]) is None and majority_vote(["1", "2"], tie_break="first") == "1"  # one function, one rule
    assert [round(best_of_n_kl(n), 3) for n in (1, 2, 4)] == [0.0, 0.193, 0.636]


def test_bon_curve_oracle_bounds_every_selector():
    rng = np.random.default_rng(0)
    correct = rng.random((50, 4)) < 0.4
    answers = [[("gold" if c else f"wrong{j}") for j, c in enumerate(row)] for row in correct]
    rewards = {"oracle_scorer": correct.astype(float) + rng.random((50, 4)) * 0.1, "random": rng.random((50, 4))}
    curves = bon_accuracy_curve(correct, answers, ["gold"] * 50, rewards, [1, 2, 4], samples=100)
    assert curves["oracle_scorer"] == pytest.approx(curves["oracle"])
    assert all(r <= o + 1e-9 for r, o in zip(curves["random"], curves["oracle"]))
    assert curves["oracle"][0] == pytest.approx(curves["random"][0], abs=0.05)  # N = 1: everyone equals the base rate


class StepGenerator:
    """Proposes 'good k' and 'bad k' next steps; the step after 'good 2' states the answer."""

    def continue_solution(self, prompt, prefix, n, max_new_tokens=96, stop=None):
        depth = prefix.count("\n")
        if depth >= 2:
            return ["#### 42", "#### 41"][:n]
        return [f"good {depth}", f"bad {depth}"][:n]


def keyword_prm():
    """A pure-Python process scorer: each step is good (0.9) unless it says 'bad' or '41'; min over steps."""
    from rewardlab.scoring.protocol import FunctionScorer

    return FunctionScorer(lambda prompt, solution: min(0.1 if ("bad" in s or "41" in s) else 0.9 for s in solution.split("\n")))


def test_prm_beam_search_follows_the_prm_and_records_the_tree():
    result = prm_beam_search(StepGenerator(), keyword_prm(), (Message("user", "q"),), beam_width=2, expansions=2, max_steps=4)
    assert result.best_steps == ("good 0", "good 1", "#### 42")
    assert result.best_score == pytest.approx(0.9)
    assert len(result.tree) >= 6 and all(n.parent is None for n in result.tree if n.depth == 0)
    finished = [n for n in result.tree if n.finished]
    assert result.path(finished[0].id)[-1].startswith("####")


def test_bon_cli_with_an_orm(tiny_llama_dir, tmp_path):
    from rewardlab.models.io import RewardModelMetadata, build_reward_model, save_pretrained

    model, tok = build_reward_model(str(tiny_llama_dir))
    save_pretrained(model, tok, RewardModelMetadata(pooling=model.pooling, max_length=256), tmp_path / "rm")
    data = write_jsonl(tmp_path / "c.jsonl", [{"prompt": "2+2?", "candidates": ["4", "5", "4"], "answers": ["4", "5", "4"],
                                               "correct": [True, False, True]}])
    assert main(["bon", "--model", str(tmp_path / "rm"), "--data", str(data), "--output", str(tmp_path / "o.jsonl")]) == 0
    line = json.loads((tmp_path / "o.jsonl").read_text())
    assert line["majority_answer"] == "4" and line["kl_bound"] == pytest.approx(best_of_n_kl(3)) and len(line["rewards"]) == 3


@requires_shared(EXAMPLES)
def test_bon_curve_cli_on_gsm8k_example_solutions(tmp_path):
    assert main(["bon-curve", "--data", str(EXAMPLES), "--output-dir", str(tmp_path / "bc")]) == 0
    result = json.loads((tmp_path / "bc" / "bon_curve.json").read_text())
    assert result["n"] == [1, 2, 3, 4] and result["questions"] == 1319
    oracle, majority = result["curves"]["oracle"], result["curves"]["majority"]
    assert oracle == sorted(oracle) and all(m <= o for m, o in zip(majority, oracle))
    assert (tmp_path / "bc" / "bon_curve.png").exists()
