"""Results files are strict JSON: NaN and infinities are written as null."""

import json

from rewardlab.evaluation.report import write_report


def test_results_json_has_no_nan(tmp_path):
    report = write_report({"measured": {"spearman": float("nan"), "flagged": False, "pairs": 0},
                           "extra": {"ties": [1.0, float("inf")]}}, tmp_path)
    text = (report.parent / "results.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    parsed = json.loads(text, parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)))  # strict: no NaN tokens
    assert parsed["measured"]["spearman"] is None and parsed["extra"]["ties"] == [1.0, None]
