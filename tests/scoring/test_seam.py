"""The Scorer seam: every consumer of rewards runs with a pure-Python scorer (no torch model behind it)."""

import json

import numpy as np
import pytest

from rewardlab.data.records import Message
from rewardlab.errors import SequenceTooLongError
from rewardlab.scoring.protocol import FunctionScorer, Scorer

from ..conftest import write_jsonl


class WordCount:
    """Reward = words in the response; a response of more than ``limit`` words is 'too long' (raised, like a model)."""

    def __init__(self, limit=1000):
        self.limit, self.calls = limit, []

    def score(self, prompts, responses):
        self.calls.append(len(responses))
        bad = tuple(i for i, r in enumerate(responses) if len(r.split()) > self.limit)
        if bad:
            raise SequenceTooLongError(f"items {list(bad)} too long", bad, self.limit)
        return [float(len(r.split())) for r in responses]

    def describe(self):
        return {"kind": "words", "model": None, "settings": {"limit": self.limit}, "record": {"scored_by": "words"}}


def test_a_pure_python_scorer_satisfies_the_protocol():
    assert isinstance(WordCount(), Scorer) and isinstance(FunctionScorer(len), Scorer)
    assert not isinstance(object(), Scorer)


def test_best_of_n_file_and_bon_curve_take_any_scorer(tmp_path, capsys):
    from rewardlab.search.best_of_n import best_of_n_file, bon_curve

    data = write_jsonl(tmp_path / "c.jsonl", [
        {"prompt": "2+2?", "candidates": ["four", "it is 4 for sure", "5"], "answers": ["4", "4", "5"], "correct": [True, True, False]},
        {"prompt": "3+3?", "candidates": ["7", "six it is", "the answer is 8"], "answers": ["7", "6", "8"], "correct": [False, True, False]},
    ])
    summary = best_of_n_file(WordCount(), data, tmp_path / "bon.jsonl")
    lines = [json.loads(line) for line in (tmp_path / "bon.jsonl").read_text().splitlines()]
    assert [line["best_index"] for line in lines] == [1, 2]  # the wordiest candidate wins
    assert summary == {"items": 2, "kl_bound": pytest.approx(np.log(3) - 2 / 3), "bon_accuracy": 0.5}
    result = bon_curve({"words": WordCount()}, data, tmp_path / "curve")
    assert result["n"] == [1, 2, 3] and result["curves"]["words"][-1] == 0.5 and result["curves"]["oracle"][-1] == 1.0
    assert result["kl"] == pytest.approx([0.0, np.log(2) - 0.5, np.log(3) - 2 / 3])
    assert json.loads((tmp_path / "curve" / "bon_curve.json").read_text())["questions"] == 2
    err = capsys.readouterr().err
    assert "scoring (words)" in err and "2/2" in err  # a progress bar over questions (issue 33 item 13)


def test_beam_search_takes_any_scorer_and_goes_past_empty_steps():
    from rewardlab.search.beam import prm_beam_search

    class Scripted:  # an empty step first, then real steps; the answer comes at depth 2
        def continue_solution(self, prompt, prefix, n, max_new_tokens=96, stop=None):
            depth = prefix.count("\n")
            return ["", "  ", "#### 42"][:n] if depth >= 2 else ["", f"good {depth}", f"bad {depth}"][:n]

    prm = FunctionScorer(lambda prompt, solution: min(0.1 if "bad" in s else 0.9 for s in solution.split("\n")))
    result = prm_beam_search(Scripted(), prm, (Message("user", "q"),), beam_width=2, expansions=3, max_steps=4)
    assert result.best_steps == ("good 0", "good 1", "#### 42")  # empty steps neither end a beam nor become nodes
    assert all(node.step.strip() for node in result.tree) and max(node.depth for node in result.tree) == 2


def test_evaluation_and_diagnostics_take_any_scorer():
    from rewardlab.evaluation.benchmark import BenchmarkItem, evaluate_benchmark
    from rewardlab.evaluation.diagnostics import ensemble_disagreement, length_bias, load_probes, run_probes

    items = [BenchmarkItem(prompt=(Message("user", f"q{i}"),), chosen="a long detailed answer " * (1 + i % 3), rejected=("short",),
                           subset="s", source=f"f:{i}") for i in range(12)]
    result = evaluate_benchmark(WordCount(), items)
    assert result["subsets"]["s"]["accuracy"] == 1.0 and result["settings"]["scorer"]["kind"] == "words"
    assert length_bias(WordCount(), items)["flagged"]
    probes = run_probes(WordCount(), items, load_probes())
    assert probes["verbosity"]["flagged"] and probes["verbosity"]["items"] == 12  # padding a reply adds words
    assert ensemble_disagreement([WordCount(), FunctionScorer(lambda p, r: -len(r))], [i.prompt for i in items],
                                 [i.chosen for i in items])["members"] == 2


def test_score_file_with_a_scorer_that_raises_too_long_names_the_line_and_side(tmp_path):
    from rewardlab.scoring.files import score_file

    data = write_jsonl(tmp_path / "in.jsonl", [{"prompt": "Hi", "response": "hello there"},
                                                {"prompt": "Hi", "chosen": "one two", "rejected": "a b c d e f"}])
    with pytest.raises(SequenceTooLongError, match=rf"1 response\(s\).*first at {tmp_path / 'in.jsonl'}:2 \(rejected\)"):
        score_file(WordCount(limit=4), data, tmp_path / "out.jsonl", show_progress=False)
    result = score_file(WordCount(limit=4), data, tmp_path / "out.jsonl", skip_too_long=True, show_progress=False)
    rows = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert result.too_long == 1 and rows[0]["reward"] == 2.0 and rows[1]["chosen_reward"] == 2.0
    assert rows[1]["rejected_reward"] is None and rows[1]["scored_by"] == "words"  # describe()["record"] on every line
    run = json.loads((tmp_path / "out.jsonl.run.json").read_text())
    assert run["kind"] == "words" and run["limit"] == 4


def test_rewardlab_score_with_an_llm_judge_through_score_file(tmp_path):
    """A non-local scorer from the CLI: an OpenAI-compatible judge's 1-10 score, cached."""
    from rewardlab.cli import main

    from ..judges.openai_server import FakeOpenAI

    data = write_jsonl(tmp_path / "in.jsonl", [{"prompt": "Hi", "response": "Hello, how can I help?"},
                                                {"prompt": "Hi", "chosen": "Hello!", "rejected": "Go away."}])
    scores = {"Hello, how can I help?": 8, "Hello!": 7, "Go away.": 2}

    def answer(messages):
        text = messages[-1]["content"]
        return f"Rating: [[{next(v for k, v in scores.items() if k in text)}]]"

    with FakeOpenAI(answer) as server:
        flags = ["score", "--model", "judge-model", "--base-url", server.base_url, "--data", str(data),
                 "--output", str(tmp_path / "s.jsonl"), "--judge-cache", str(tmp_path / "cache.sqlite")]
        assert main(flags) == 0
        assert len(server.requests) == 3 and server.requests[0]["model"] == "judge-model"
        assert main([*flags, "--resume"]) == 0  # the same judge settings: nothing to redo
    rows = [json.loads(line) for line in (tmp_path / "s.jsonl").read_text().splitlines()]
    assert rows[0]["reward"] == 8.0 and (rows[1]["chosen_reward"], rows[1]["rejected_reward"]) == (7.0, 2.0)
    assert json.loads((tmp_path / "s.jsonl.run.json").read_text())["kind"] == "judge"


def test_a_kill_loses_at_most_one_write_block(tmp_path, monkeypatch):
    import rewardlab.scoring.files as files

    monkeypatch.setattr(files, "SCORE_WRITE_RECORDS", 2)
    data = write_jsonl(tmp_path / "in.jsonl", [{"prompt": "q", "response": "word " * (i + 1)} for i in range(7)])
    calls = {"n": 0}

    def dies_on_the_third_call(prompt, response):
        calls["n"] += 1
        if calls["n"] == 5:  # the third block's first item
            raise KeyboardInterrupt
        return float(len(response.split()))

    with pytest.raises(KeyboardInterrupt):
        files.score_file(FunctionScorer(dies_on_the_third_call), data, tmp_path / "out.jsonl", show_progress=False)
    assert len((tmp_path / "out.jsonl").read_text().splitlines()) == 4  # two whole blocks were written
    result = files.score_file(FunctionScorer(lambda p, r: float(len(r.split()))), data, tmp_path / "out.jsonl", resume=True,
                              show_progress=False)
    assert result.resumed_lines == 4 and [json.loads(line)["reward"] for line in (tmp_path / "out.jsonl").read_text().splitlines()] == [1, 2, 3, 4, 5, 6, 7]
