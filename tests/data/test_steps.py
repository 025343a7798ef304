import pytest

from rewardlab.data.steps import read_step_solutions, to_step_solution
from rewardlab.errors import DataFormatError

from ..conftest import SHARED_DATA, requires_shared

BBM = SHARED_DATA / "bigbench-mistake" / "multistep_arithmetic.jsonl"
PARQUET = SHARED_DATA / "prm800k-phase1-test" / "phase1_test.stepwise-critic.parquet"


def test_math_shepherd_format():
    s = to_step_solution({"input": "Q? Step 1: a ки\nStep 2: b ки\nStep 3: c ки",
                          "label": "Q? Step 1: a +\nStep 2: b -\nStep 3: c -"})
    assert s.steps == ("Step 1: a", "Step 2: b", "Step 3: c") and s.step_labels == (1.0, 0.0, 0.0)
    assert s.prompt[0].content == "Q?"
    with pytest.raises(DataFormatError, match="field 'label'"):
        to_step_solution({"input": "Q Step 1: a ки", "label": "Q Step 1: a ?"}, "ms.jsonl:3")


def test_prm800k_jsonl_schema():
    record = {"question": {"problem": "1+1?"}, "label": {"steps": [
        {"completions": [{"text": "1+1 = 2", "rating": 1}, {"text": "1+1 = 3", "rating": -1}], "chosen_completion": 0},
        {"completions": [{"text": "So 2.", "rating": 0}], "chosen_completion": 0},
        {"completions": [{"text": "bad", "rating": -1}], "chosen_completion": None},
    ]}}
    s = to_step_solution(record)
    assert s.steps == ("1+1 = 2", "So 2.", "bad") and s.step_labels == (1.0, 0.0, -1.0)


def test_trl_stepwise_and_own_format_and_errors():
    trl = to_step_solution({"prompt": "Q", "completions": ["a", "b"], "labels": [True, False]})
    own = to_step_solution({"prompt": "Q", "steps": ["a", "b"], "step_labels": [0.25, None]})
    assert trl.step_labels == (1.0, 0.0) and own.step_labels == (0.25, None)
    with pytest.raises(DataFormatError, match="expected a list of 2 labels"):
        to_step_solution({"prompt": "Q", "steps": ["a", "b"], "step_labels": [1]}, "f:1")
    with pytest.raises(DataFormatError, match="unknown step format"):
        to_step_solution({"question": "Q"}, "f:2")


@requires_shared(BBM)
def test_bigbench_mistake_labels_mask_steps_after_the_mistake():
    solutions, report = read_step_solutions(str(BBM))
    assert len(solutions) == 300 and report.dropped == 0
    for s in solutions:
        labels = s.step_labels
        if 0.0 in labels:
            k = labels.index(0.0)
            assert all(x == 1.0 for x in labels[:k]) and all(x is None for x in labels[k + 1:])
        else:
            assert all(x == 1.0 for x in labels)


@requires_shared(PARQUET)
def test_prm800k_parquet_rows_label_only_the_candidate_step():
    solutions, report = read_step_solutions(str(PARQUET))
    assert len(solutions) + report.dropped == 5449 and report.dropped == 367  # the human-written steps
    assert all(x is None for s in solutions for x in s.step_labels[:-1])
    assert {s.step_labels[-1] for s in solutions} == {-1.0, 0.0, 1.0}
