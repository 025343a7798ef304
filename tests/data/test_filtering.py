"""Margin filtering (issue 19 item 5): by agreement, Dawid-Skene confidence, rating gap and an RM's confidence, drop or
down-weight, strata weights; the weights reach training; pairs built from multi-annotator comparisons."""

import json
import math

import pytest

from rewardlab.cli import main
from rewardlab.data.annotations import pairs_from_annotations
from rewardlab.data.filtering import PairFilter, filter_pair_file, filter_pairs
from rewardlab.errors import ConfigError, DataFormatError
from rewardlab.scoring import FunctionScorer

from ..conftest import SHARED_DATA, requires_shared, write_jsonl

PANDALM = SHARED_DATA / "pandalm-testset" / "testset-v1.json"


def _rows(tmp_path):
    rows = [{"prompt": "q", "chosen": "a b c", "rejected": "a", "agreement": 1.0, "confidence": 0.99, "margin": 2.0, "strength": "better"},
            {"prompt": "q", "chosen": "a", "rejected": "a b c d", "agreement": 2 / 3, "confidence": 0.7, "margin": 0.5,
             "strength": "negligibly better"},
            {"prompt": "r", "chosen": "x y", "rejected": "x", "agreement": 1.0, "confidence": 0.6, "margin": 1.0, "strength": "better",
             "weight": 0.5}]
    return rows, write_jsonl(tmp_path / "pairs.jsonl", rows)


def test_drop_mode_writes_every_reason_and_weight_mode_keeps_with_down_weight(tmp_path):
    rows, path = _rows(tmp_path)
    rule = PairFilter(min_agreement=0.9, min_confidence=0.8, min_gap=1.0)
    decisions = list(filter_pairs([(f"f:{i}", r) for i, r in enumerate(rows)], rule))
    assert [d.kept for d in decisions] == [True, False, False]
    assert decisions[1].reasons == ("agreement 0.6667 < 0.9", "confidence 0.7 < 0.8", "gap 0.5 < 1")
    assert decisions[2].reasons == ("confidence 0.6 < 0.8",) and decisions[2].weight == 0.5  # the record's own weight kept
    counts = filter_pair_file(str(path), rule, str(tmp_path / "kept.jsonl"), str(tmp_path / "dropped.jsonl"))
    assert counts["kept"] == 1 and counts["failed"] == {"agreement": 1, "confidence": 2, "gap": 1}
    dropped = [json.loads(line) for line in (tmp_path / "dropped.jsonl").read_text().splitlines()]
    assert [d["location"].rsplit(":", 1)[1] for d in dropped] == ["2", "3"] and dropped[0]["dropped_because"][2] == "gap 0.5 < 1"
    soft = list(filter_pairs([(f"f:{i}", r) for i, r in enumerate(rows)], PairFilter(min_gap=1.0, mode="weight", down_weight=0.2,
                                                                                     weight_by=("confidence",))))
    assert all(d.kept for d in soft)
    assert [d.weight for d in soft] == pytest.approx([0.99, 0.7 * 0.2, 0.5 * 0.6])


def test_strata_weights_and_errors_name_the_record(tmp_path):
    rows, _ = _rows(tmp_path)
    table = {"better": 1.0, "negligibly better": 0.25}
    weights = [d.weight for d in filter_pairs([(f"f:{i}", r) for i, r in enumerate(rows)], PairFilter(stratum_weights=table))]
    assert weights == [1.0, 0.25, 0.5]
    numeric = [d.weight for d in filter_pairs([("f:1", {"margin": 1}), ("f:2", {"margin": 2.0})],
                                              PairFilter(stratum_field="margin", stratum_weights={"1.0": 0.3, "2": 0.9}))]
    assert numeric == [0.3, 0.9]
    with pytest.raises(DataFormatError, match="f:1: field 'strength': value 'much better' is not in the stratum table"):
        list(filter_pairs([("f:1", {"strength": "much better"})], PairFilter(stratum_weights=table)))
    with pytest.raises(DataFormatError, match="f:7: field 'agreement': expected a finite number"):
        list(filter_pairs([("f:7", {"confidence": 0.9})], PairFilter(min_agreement=0.5)))
    with pytest.raises(ConfigError, match="nothing to filter by"):
        PairFilter()
    with pytest.raises(ConfigError, match="down_weight applies with mode='weight'"):
        PairFilter(min_gap=1.0, down_weight=0.5)


def test_rm_confidence_is_the_bradley_terry_probability_of_the_scorer(tmp_path):
    rows, path = _rows(tmp_path)
    scorer = FunctionScorer(lambda prompt, response: 0.5 * len(response.split()), name="half-words")
    rule = PairFilter(min_rm_confidence=0.5)
    counts = filter_pair_file(str(path), rule, str(tmp_path / "kept.jsonl"), str(tmp_path / "dropped.jsonl"), scorer, chunk=2)
    kept = [json.loads(line) for line in (tmp_path / "kept.jsonl").read_text().splitlines()]
    assert counts["kept"] == 2 and [k["chosen"] for k in kept] == ["a b c", "x y"]
    assert kept[0]["rm_confidence"] == pytest.approx(1 / (1 + math.exp(-1.0)))  # 0.5 * (3 - 1)
    dropped = json.loads((tmp_path / "dropped.jsonl").read_text())
    assert dropped["rm_confidence"] == pytest.approx(1 / (1 + math.exp(1.5)))
    with pytest.raises(ConfigError, match="give a scorer"):
        filter_pair_file(str(path), rule, str(tmp_path / "k2.jsonl"))


def test_filter_cli_with_a_saved_reward_model(tiny_llama_dir, tmp_path, capsys):
    import torch

    from rewardlab.models.io import RewardModelMetadata, build_reward_model, save_pretrained
    from rewardlab.scoring.local import load_reward_model

    torch.manual_seed(0)
    model, tok = build_reward_model(str(tiny_llama_dir))
    save_pretrained(model, tok, RewardModelMetadata(pooling=model.pooling, max_length=128), tmp_path / "rm")
    rows, path = _rows(tmp_path)
    out = tmp_path / "kept.jsonl"
    assert main(["data", "filter", "--data", str(path), "--model", str(tmp_path / "rm"), "--weight-by", "rm_confidence",
                 "--min-gap", "1", "--mode", "weight", "--down-weight", "0", "--output", str(out)]) == 0
    kept = [json.loads(line) for line in out.read_text().splitlines()]
    scorer = load_reward_model(str(tmp_path / "rm"))
    for row, original in zip(kept, rows):
        r = scorer.score([original["prompt"]] * 2, [original["chosen"], original["rejected"]])
        p = 1 / (1 + math.exp(-(r[0] - r[1])))
        assert row["rm_confidence"] == pytest.approx(p, abs=1e-5)
        assert row["weight"] == pytest.approx(original.get("weight", 1.0) * p * (0.0 if original["margin"] < 1 else 1.0), abs=1e-5)
    assert main(["data", "filter", "--data", str(path), "--model", str(tmp_path / "rm"), "--min-gap", "1",
                 "--output", str(tmp_path / "x.jsonl")]) != 0
    assert "--model scores pairs for --min-rm-confidence" in capsys.readouterr().err


def test_pair_weights_reach_the_training_loss():
    from rewardlab.data.readers import to_preference_pair
    from rewardlab.training.objectives import PairwiseObjective

    objective = PairwiseObjective(strength_weights={"negligibly better": 0.5})
    pair = to_preference_pair({"prompt": "p", "chosen": "a", "rejected": "b", "strength": "negligibly better", "weight": 0.4}, "f:1")
    assert objective._pair_targets(pair)[1] == pytest.approx(0.2)
    with pytest.raises(DataFormatError, match="f:2: field 'weight': expected a weight >= 0"):
        to_preference_pair({"prompt": "p", "chosen": "a", "rejected": "b", "weight": -1}, "f:2")


def test_pairs_from_annotated_comparisons(tmp_path):
    rows = [{"id": "1", "prompt": "q1", "response_a": "good", "response_b": "bad", "votes": ["A", "A", "B"]},
            {"id": "2", "prompt": "q2", "response_a": "meh", "response_b": "fine", "votes": ["B", "B", "B"]},
            {"id": "3", "prompt": "q3", "response_a": "x", "response_b": "y", "votes": ["tie", "tie", "A"]},
            {"id": "4", "prompt": "q4", "response_a": "x", "response_b": "y", "votes": ["tie", "A", "B"]}]
    path = write_jsonl(tmp_path / "ann.jsonl", rows)
    pairs, counts = pairs_from_annotations(path, "majority")
    assert [(p["chosen"], p["rejected"], round(p["agreement"], 3)) for p in pairs] == [("good", "bad", 0.667), ("fine", "meh", 1.0)]
    assert counts["aggregated to a tie"] == 1 and counts["unlabelled (tied vote)"] == 1
    kept_ties, _ = pairs_from_annotations(path, "majority", ties="keep")
    assert [p.get("tie", False) for p in kept_ties] == [False, False, True]
    assert main(["data", "pairs", "--annotations", str(path), "--method", "dawid-skene", "--output", str(tmp_path / "p.jsonl")]) == 0
    written = [json.loads(line) for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert all(0.5 < p["confidence"] <= 1 and abs(sum(p["posterior"].values()) - 1) < 1e-9 for p in written)
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"id": "1", "prompt": "q", "votes": ["A", "B", "A"]}])
    with pytest.raises(DataFormatError, match="bad.jsonl:1: field 'response_a': expected the two compared responses"):
        pairs_from_annotations(bad)


@requires_shared(PANDALM)
def test_pandalm_pairs_then_agreement_filter(tmp_path):
    out = tmp_path / "pairs.jsonl"
    assert main(["data", "pairs", "--annotations", str(PANDALM), "--method", "dawid-skene", "--output", str(out)]) == 0
    pairs = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(pairs) == 894  # 105 items aggregate to a tie
    assert sum(p["agreement"] == 1.0 for p in pairs) == 794
    assert main(["data", "filter", "--data", str(out), "--min-agreement", "0.9", "--output", str(tmp_path / "k.jsonl"),
                 "--dropped", str(tmp_path / "d.jsonl")]) == 0
    assert len((tmp_path / "k.jsonl").read_text().splitlines()) == 794
    assert len((tmp_path / "d.jsonl").read_text().splitlines()) == 100


@pytest.mark.parametrize("command", ["swap", "filter", "filter-empty"])
def test_failed_data_commands_leave_no_output_files(command, tmp_path):
    """Issue 33 item 12: a failed 'data swap' / 'data filter' used to leave an empty or half-written output."""
    from rewardlab.cli import main

    out, dropped = tmp_path / "out.jsonl", tmp_path / "dropped.jsonl"
    if command == "swap":
        data = write_jsonl(tmp_path / "judge.jsonl", [{"prompt": "a", "response_a": "b", "response_b": "c", "winner": "A"},
                                                     {"prompt": "a", "response_a": "b", "response_b": "c", "winner": "Q"}])
        argv = ["data", "swap", "--data", str(data), "--output", str(out)]
    else:
        rows = [] if command == "filter-empty" else [{"prompt": "a", "chosen": "b", "rejected": "c", "agreement": 1.0},
                                                   {"prompt": "a", "chosen": "b", "rejected": "c", "agreement": "x"}]
        data = write_jsonl(tmp_path / "pairs.jsonl", rows)
        argv = ["data", "filter", "--data", str(data), "--output", str(out), "--dropped", str(dropped), "--min-agreement", "0.5"]
    assert main(argv) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == [data.name]


def test_filter_flags_come_from_pair_filter_and_parse_tables_and_lists(tmp_path, capsys):
    """Issue 31 item 3: `data filter`'s criteria flags are PairFilter's fields; the weight table and signal list are
    parsed by the field's own parser, and a bad value is an error naming the flag."""
    rows, path = _rows(tmp_path)
    for i, row in enumerate(rows):
        row["strength"] = "much better" if i % 2 else "slightly better"
    write_jsonl(path, rows)
    out = tmp_path / "kept.jsonl"
    assert main(["data", "filter", "--data", str(path), "--stratum-weights", "much better=1,slightly better=0.25",
                 "--output", str(out)]) == 0
    weights = [json.loads(line)["weight"] for line in out.read_text().splitlines()]
    assert weights == pytest.approx([row.get("weight", 1.0) * (1.0 if i % 2 else 0.25) for i, row in enumerate(rows)])
    with pytest.raises(SystemExit):
        main(["data", "filter", "--data", str(path), "--stratum-weights", "much better=lots", "--output", str(out)])
    assert "argument --stratum-weights: a weight is not a number" in capsys.readouterr().err
    # an unknown signal is PairFilter's own error
    assert main(["data", "filter", "--data", str(path), "--weight-by", "agreement,votes", "--output", str(out)]) != 0
    assert "weight_by takes agreement, confidence or rm_confidence, got 'votes'" in capsys.readouterr().err
