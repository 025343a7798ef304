import json

import pytest

from rewardlab.cli import main
from rewardlab.data.records import Message
from rewardlab.labeling.checkers import boxed_answer, gsm8k_answer, make_checker, normalize_math
from rewardlab.labeling.generators import Generator
from rewardlab.labeling.math_shepherd import SolutionToLabel, assemble_labels, label_solutions

from ..conftest import SHARED_DATA, requires_shared

GSM8K_TEST = SHARED_DATA / "gsm8k" / "test.jsonl"


class ScriptedGenerator:
    """Deterministic: after a prefix containing 'bad', 1 of 4 completions is right; else 3 of 4; never after 'dead'."""

    def __init__(self, fail_after=None):
        self.calls, self.fail_after = 0, fail_after

    def continue_solution(self, prompt, prefix, n, max_new_tokens=256, stop=None):
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise KeyboardInterrupt
        self.calls += 1
        right = 0 if "dead" in prefix else 1 if "bad" in prefix else 3
        return ["#### 10"] * right + ["#### 7"] * (n - right)


SOLUTION = SolutionToLabel("s1", (Message("user", "q"),), ("good step", "bad step", "dead step"), "#### 10")


def test_hard_and_soft_estimation_are_exact(tmp_path):
    generator = ScriptedGenerator()
    assert isinstance(generator, Generator)
    stats = label_solutions([SOLUTION], generator, make_checker("gsm8k"), tmp_path / "l.jsonl", n=4, show_progress=False)
    rows = [json.loads(line) for line in (tmp_path / "l.jsonl").read_text().splitlines()]
    assert [(r["hard"], r["soft"]) for r in rows] == [(1.0, 0.75), (1.0, 0.25), (0.0, 0.0)]
    assert stats == {"labelled": 3, "skipped": 0, "generator_calls": 3}
    soft = assemble_labels([SOLUTION], tmp_path / "l.jsonl", "soft")[0]
    assert soft.step_labels == (0.75, 0.25, 0.0) and isinstance(soft.step_labels[0], float)
    assert assemble_labels([SOLUTION], tmp_path / "l.jsonl", "hard")[0].step_labels == (1.0, 1.0, 0.0)


def test_an_interrupted_run_resumes_without_redoing_finished_steps(tmp_path):
    out = tmp_path / "l.jsonl"
    with pytest.raises(KeyboardInterrupt):
        label_solutions([SOLUTION], ScriptedGenerator(fail_after=2), make_checker("gsm8k"), out, n=4, show_progress=False)
    assert len(out.read_text().splitlines()) == 2
    out.write_text(out.read_text() + '{"key": "s1#2", "sol')  # a line torn by a crash mid-write
    again = ScriptedGenerator()
    stats = label_solutions([SOLUTION], again, make_checker("gsm8k"), out, n=4, show_progress=False)
    assert again.calls == 1 and stats["skipped"] == 2 and stats["labelled"] == 1
    assert assemble_labels([SOLUTION], out, "soft")[0].step_labels == (0.75, 0.25, 0.0)


def test_checkers():
    gsm = make_checker("gsm8k")
    assert gsm("so it is 1,000\n#### 1,000", "#### 1000") and not gsm("#### 999", "#### 1000") and not gsm("no number", "5")
    assert gsm("A: 18", "A: 18.0")
    boxed = make_checker("boxed")
    assert boxed("thus \\boxed{\\dfrac{1}{2}}", "\\frac{1}{2}") and not boxed("no box", "1")
    assert boxed_answer("\\boxed{x^{2}}") == "x^{2}" and normalize_math("$3.50$") == "3.5"
    assert make_checker("exact")("Paris ", "paris") and gsm8k_answer("") is None
    with pytest.raises(ValueError, match="checker must be"):
        make_checker("fuzzy")


@pytest.mark.slow
def test_label_steps_cli_with_the_local_smollm2_generator(tmp_path):
    from ..conftest import SHARED_DATA

    gsm = SHARED_DATA / "gsm8k" / "test.jsonl"
    if not gsm.exists():
        pytest.skip(f"needs {gsm}")
    args = ["label-steps", "--data", str(gsm), "--limit", "1", "--n", "2", "--max-new-tokens", "24",
            "--output", str(tmp_path / "ms.jsonl"), "--steps-output", str(tmp_path / "steps.jsonl")]
    assert main(args) == 0
    rows = [json.loads(line) for line in (tmp_path / "ms.jsonl").read_text().splitlines()]
    # Janet's ducks: 2 reasoning steps sampled, then the "#### 18" step labelled by its stated (correct) answer
    assert len(rows) == 3 and all(0.0 <= r["soft"] <= 1.0 and r["n"] == 2 for r in rows[:2])
    assert rows[2]["decided_by"] == "stated answer" and rows[2]["soft"] == 1.0
    assert main(args) == 0  # resumed: nothing left to do
    assert len((tmp_path / "ms.jsonl").read_text().splitlines()) == 3
    steps = json.loads((tmp_path / "steps.jsonl").read_text().splitlines()[0])
    assert len(steps["step_labels"]) == 3


def test_chat_endpoint_generator_over_http_labels_steps(tmp_path):
    from rewardlab.judges.clients import OpenAIChatClient
    from rewardlab.labeling.generators import ChatEndpointGenerator

    from ..judges.openai_server import FakeOpenAI

    def answer(messages):  # continues correctly unless the partial solution already went wrong
        return "so the result is 7.\n#### 7" if "bad" in messages[-1]["content"] else "#### 10"

    with FakeOpenAI(answer) as server:
        generator = ChatEndpointGenerator(OpenAIChatClient(server.base_url, "gen", api_key_env=None), temperature=0.7)
        assert isinstance(generator, Generator)
        label_solutions([SOLUTION], generator, make_checker("gsm8k"), tmp_path / "l.jsonl", n=2, show_progress=False)
        assert len(server.requests) == 6 and server.requests[0]["temperature"] == 0.7
        assert "Continue this partial solution" in server.requests[0]["messages"][-1]["content"]
    labels = assemble_labels([SOLUTION], tmp_path / "l.jsonl", "hard")[0].step_labels
    assert labels == (1.0, 0.0, 0.0)


def test_a_step_that_states_the_answer_is_judged_on_it_and_completions_are_held_to_their_first_answer(tmp_path):
    from rewardlab.labeling.checkers import make_checker
    from rewardlab.labeling.math_shepherd import SolutionToLabel, label_solutions
    from rewardlab.data.records import Message

    class RamblingGenerator:  # states the right answer, then keeps writing other numbers
        calls = 0

        def continue_solution(self, prompt, prefix, n, max_new_tokens=256, stop=None):
            RamblingGenerator.calls += 1
            return ["#### 7\nNext question: 5 + 7 = 12"] * n

    solution = SolutionToLabel("s", (Message("user", "3 + 4?"),), ("3 + 4 = 7", "#### 7"), "#### 7")
    wrong = SolutionToLabel("w", (Message("user", "3 + 4?"),), ("3 + 4 = 8", "#### 8"), "#### 7")
    stats = label_solutions([solution, wrong], RamblingGenerator(), make_checker("gsm8k"), tmp_path / "labels.jsonl", n=4,
                            show_progress=False)
    rows = {r["key"]: r for r in map(json.loads, (tmp_path / "labels.jsonl").read_text().splitlines())}
    assert rows["s#1"]["soft"] == 1.0 and rows["s#1"]["decided_by"] == "stated answer" and rows["s#1"]["n"] == 0
    assert rows["w#1"]["soft"] == 0.0  # a stated wrong answer is wrong whatever a continuation would say
    assert rows["s#0"]["soft"] == 1.0  # the completion's first answer (7) counts, not the 12 after it
    assert stats["generator_calls"] == 2 == RamblingGenerator.calls  # only the steps without an answer were sampled


@requires_shared(GSM8K_TEST)
def test_correct_gsm8k_reference_solutions_label_their_answer_step_correct(tmp_path):
    from rewardlab.labeling.checkers import make_checker
    from rewardlab.labeling.math_shepherd import label_solutions, read_solutions_to_label

    class Wrong:  # a generator that is always wrong: only stated answers can earn a 1
        def continue_solution(self, prompt, prefix, n, max_new_tokens=256, stop=None):
            return ["#### -1"] * n

    solutions = read_solutions_to_label(str(GSM8K_TEST), limit=3)
    label_solutions(solutions, Wrong(), make_checker("gsm8k"), tmp_path / "l.jsonl", n=2, show_progress=False)
    rows = [json.loads(line) for line in (tmp_path / "l.jsonl").read_text().splitlines()]
    last = {s.key: len(s.steps) - 1 for s in solutions}
    finals = [r for r in rows if r["step"] == last[r["solution"]]]
    assert len(finals) == 3 and all(r["soft"] == 1.0 for r in finals), finals
