import json

import numpy as np
import pytest

from rewardlab.cli import main
from rewardlab.data.records import Message
from rewardlab.evaluation.benchmark import (
    REWARDBENCH_EXAMPLE_COUNTS, BenchmarkItem, EvalSettings, evaluate_benchmark, read_benchmark,
)

from ..conftest import HH_FILE, SHARED_DATA, requires_shared, write_jsonl
from .synthetic import FixedScorer

PANDALM = SHARED_DATA / "pandalm-testset" / "testset-v1.json"
P = (Message("user", "q"),)


def _item(chosen, rejected, subset):
    return BenchmarkItem(P, chosen, tuple(rejected), subset)


def test_subset_accuracy_ties_and_rewardbench_section_weighting():
    table = {"c1": 2.0, "r1": 1.0, "c2": 0.0, "r2": 1.0, "c3": 1.0, "r3": 1.0, "c4": 3.0, "r4": 1.0}
    items = [_item("c1", ["r1"], "alpacaeval-easy"), _item("c2", ["r2"], "alpacaeval-easy"),
             _item("c3", ["r3"], "mt-bench-easy"), _item("c4", ["r4"], "mt-bench-easy")]
    result = evaluate_benchmark(FixedScorer(table), items, EvalSettings(n_bootstrap=200))
    assert result["subsets"]["alpacaeval-easy"]["accuracy"] == 0.5
    assert result["subsets"]["mt-bench-easy"]["accuracy"] == 0.75 and result["subsets"]["mt-bench-easy"]["ties"] == 1
    expected_chat = (0.5 * REWARDBENCH_EXAMPLE_COUNTS["alpacaeval-easy"] + 0.75 * 28) / (100 + 28)
    assert result["sections"]["Chat"]["accuracy"] == pytest.approx(expected_chat)
    assert result["overall"] == pytest.approx(expected_chat)
    observed = evaluate_benchmark(FixedScorer(table), items, EvalSettings(weighting="observed", n_bootstrap=0))
    assert observed["sections"]["Chat"]["accuracy"] == pytest.approx(0.625)
    excluded = evaluate_benchmark(FixedScorer(table), items, EvalSettings(tie_policy="exclude", n_bootstrap=0))
    assert excluded["subsets"]["mt-bench-easy"]["accuracy"] == 1.0


def test_best_of_k_needs_the_chosen_above_every_rejected():
    table = {"c": 2.0, "a": 1.0, "b": 3.0, "d": 0.0}
    items = [_item("c", ["a", "d"], "x"), _item("c", ["a", "b", "d"], "x")]
    result = evaluate_benchmark(FixedScorer(table), items, EvalSettings(n_bootstrap=0, sections={}))
    assert result["subsets"]["x"]["accuracy"] == 0.5 and result["subsets"]["x"]["best_of_k"] == 4
    assert result["unsectioned_subsets"] == ["x"] and result["overall_rule"] == "mean over all items"


def test_bootstrap_interval_brackets_the_accuracy_and_settings_are_recorded():
    rng = np.random.default_rng(0)
    table, items = {}, []
    for i in range(200):
        table[f"c{i}"], table[f"r{i}"] = float(rng.normal(0.5)), float(rng.normal())
        items.append(_item(f"c{i}", [f"r{i}"], "s"))
    result = evaluate_benchmark(FixedScorer(table), items, EvalSettings(sections={}))
    s = result["subsets"]["s"]
    assert s["ci_low"] < s["accuracy"] < s["ci_high"] and s["ci_high"] - s["ci_low"] < 0.2
    assert result["settings"]["tie_policy"] == "half" and result["settings"]["scorer"]["type"] == "FixedScorer"
    assert "calibration" in result and result["calibration"]["held_out_pairs"] == 100


def test_reader_accepts_rewardbench_layout_and_reports_bad_subset(tmp_path):
    path = write_jsonl(tmp_path / "rb.jsonl", [
        {"prompt": "q", "chosen": "a", "rejected": "b", "subset": "s1"},
        {"prompt": "q", "chosen": "a", "rejected": ["b", "c"], "subset": "s2"},
        {"prompt": "q", "chosen": "a", "rejected": "b"},
    ])
    items = read_benchmark(str(path))
    assert [i.subset for i in items] == ["s1", "s2", "all"] and items[1].rejected == ("b", "c")
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"prompt": "q", "chosen": "a", "rejected": "b", "subset": 3}])
    from rewardlab.errors import DataFormatError

    with pytest.raises(DataFormatError, match="bad.jsonl:1: field 'subset'"):
        read_benchmark(str(bad))


@requires_shared(HH_FILE)
@requires_shared(PANDALM)
def test_eval_on_shared_data_matches_an_independent_computation_from_score(tiny_llama_dir, tmp_path, capsys):
    import gzip

    import torch

    from rewardlab.models.io import RewardModelMetadata, build_reward_model, save_pretrained

    model, tok = build_reward_model(str(tiny_llama_dir))
    torch.manual_seed(0)
    torch.nn.init.normal_(model.hf_model.score.weight, std=1.0)
    save_pretrained(model, tok, RewardModelMetadata(pooling=model.pooling, max_length=256), tmp_path / "rm")
    rows = []
    for line in gzip.open(HH_FILE, "rt").readlines()[:60]:
        rows.append({**json.loads(line), "subset": "hh-harmless"})
    for record in json.loads(PANDALM.read_text())[:120]:
        votes = [record[f"annotator{k}"] for k in (1, 2, 3)]
        majority = max({1, 2}, key=votes.count)
        if votes.count(majority) < 2:
            continue  # no majority preference (ties or a split)
        prompt = record["instruction"] + ("\n\n" + record["input"] if record["input"] else "")
        good, bad = (record["response1"], record["response2"]) if majority == 1 else (record["response2"], record["response1"])
        rows.append({"prompt": prompt, "chosen": good, "rejected": bad, "subset": "pandalm"})
    data = write_jsonl(tmp_path / "bench.jsonl", rows)
    sections = json.dumps({"Chat": ["pandalm"], "Safety": ["hh-harmless"]})
    assert main(["eval", "--model", str(tmp_path / "rm"), "--data", str(data), "--output-dir", str(tmp_path / "ev"),
                 "--sections", sections, "--weighting", "observed", "--bootstrap", "200"]) == 0
    result = json.loads((tmp_path / "ev" / "results.json").read_text())["benchmark"]
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["length_controlled"] == pytest.approx(result["length"]["length_controlled_accuracy"])
    assert summary["chosen_longer"] == pytest.approx(result["length"]["chosen_longer"]["accuracy"])
    assert main(["score", "--model", str(tmp_path / "rm"), "--data", str(data), "--output", str(tmp_path / "s.jsonl"),
                 "--skip-too-long"]) == 0
    scores = [json.loads(line) for line in (tmp_path / "s.jsonl").read_text().splitlines()]
    for subset in ("hh-harmless", "pandalm"):  # eval leaves out what score writes as null (too long for 256 tokens)
        mine = [s for s, r in zip(scores, rows) if r["subset"] == subset and None not in (s["chosen_reward"], s["rejected_reward"])]
        independent = np.mean([1.0 if s["chosen_reward"] > s["rejected_reward"] else 0.5 if s["chosen_reward"] == s["rejected_reward"] else 0.0 for s in mine])
        assert result["subsets"][subset]["accuracy"] == pytest.approx(independent)
        assert result["subsets"][subset]["n"] == len(mine)
    assert result["overall"] == pytest.approx(np.mean([result["sections"][k]["accuracy"] for k in ("Chat", "Safety")]))
    report = (tmp_path / "ev" / "report.md").read_text()
    assert "| pandalm |" in report and "reliability.png" in report
    assert (tmp_path / "ev" / "reliability.png").stat().st_size > 1000
    # A random head is no better than chance: the temperature search runs to its bound, which is not a fit (item 13).
    assert result["calibration"]["temperature_at_bound"] and "found no finite temperature" in report
    assert main(["eval", "--model", str(tmp_path / "rm"), "--data", str(data), "--output-dir", str(tmp_path / "ev2"),
                 "--sections", sections, "--bootstrap", "0", "--save-temperature"]) == 2
    assert json.loads((tmp_path / "rm" / "rewardlab.json").read_text())["temperature"] is None
    # Length-stratified accuracy (item 6), recomputed from the score file: overall and per subset.
    kept = [(s, r) for s, r in zip(scores, rows) if None not in (s["chosen_reward"], s["rejected_reward"])]
    for subset, block in [("all", result["length"])] + [(k, result["subsets"][k]["length"]) for k in ("hh-harmless", "pandalm")]:
        rows_here = [(s, r) for s, r in kept if subset in ("all", r["subset"])]
        accs = {}
        for side, sign in (("chosen_longer", 1), ("chosen_shorter", -1)):
            picked = [s for s, r in rows_here if np.sign(len(r["chosen"]) - len(r["rejected"])) == sign]
            accs[side] = np.mean([1.0 if s["chosen_reward"] > s["rejected_reward"] else 0.0 for s in picked])
            assert block[side]["n"] == len(picked) and block[side]["accuracy"] == pytest.approx(accs[side])
            assert block[side]["ci_low"] <= accs[side] <= block[side]["ci_high"]
        assert block["length_controlled_accuracy"] == pytest.approx((accs["chosen_longer"] + accs["chosen_shorter"]) / 2)
    assert "| all |" in report and "chosen longer" in report


def test_eval_and_diagnose_skip_long_replies_report_them_and_write_per_item_rows(tiny_llama_dir, tmp_path):
    import json

    from rewardlab.cli import main
    from rewardlab.models.io import RewardModelMetadata, build_reward_model, save_pretrained

    model, tok = build_reward_model(str(tiny_llama_dir))
    save_pretrained(model, tok, RewardModelMetadata(pooling=model.pooling, max_length=64), tmp_path / "rm")
    rows = [{"prompt": f"q{i}", "chosen": "yes " * 3, "rejected": "no", "subset": "a" if i % 2 else "b"} for i in range(8)]
    rows[3]["rejected"] = "long " * 200
    rows[4]["chosen"] = "long " * 200
    data = tmp_path / "bench.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(["eval", "--model", str(tmp_path / "rm"), "--data", str(data), "--output-dir", str(tmp_path / "e"), "--bootstrap", "0"]) == 0
    bench = json.loads((tmp_path / "e" / "results.json").read_text())["benchmark"]
    skipped = bench["skipped_too_long"]
    assert skipped["count"] == 2 and skipped["by_subset"]["a"]["items"] == [f"{data}:4 (rejected)"]
    assert skipped["by_subset"]["b"]["items"] == [f"{data}:5 (chosen)"] and bench["n_items"] == 6
    per_item = [json.loads(line) for line in (tmp_path / "e" / "items.jsonl").read_text().splitlines()]
    assert len(per_item) == 6 and {"source", "subset", "chosen_reward", "rejected_rewards", "margin", "correct"} <= set(per_item[0])
    assert per_item[0]["margin"] == pytest.approx(per_item[0]["chosen_reward"] - per_item[0]["rejected_rewards"][0])
    assert main(["eval", "--model", str(tmp_path / "rm"), "--data", str(data), "--output-dir", str(tmp_path / "e2"),
                 "--no-skip-too-long"]) == 2  # stops, naming the place (checked below through the API)
    from rewardlab.errors import SequenceTooLongError
    from rewardlab.evaluation.benchmark import EvalSettings, evaluate_benchmark, read_benchmark
    from rewardlab.scoring.local import load_reward_model

    with pytest.raises(SequenceTooLongError, match=rf"first at {data}:4 \(rejected\)"):
        evaluate_benchmark(load_reward_model(tmp_path / "rm"), read_benchmark(str(data)), EvalSettings(skip_too_long=False))
    assert main(["diagnose", "--model", str(tmp_path / "rm"), "--data", str(data), "--output-dir", str(tmp_path / "d")]) == 0
    assert json.loads((tmp_path / "d" / "results.json").read_text())["skipped_too_long"]["count"] == 2


def test_temperature_on_the_search_bound_is_marked_not_presented_as_a_fit():
    from rewardlab.evaluation.benchmark import calibration_report

    rng = np.random.default_rng(0)
    true = rng.normal(0, 2, 4000)
    informative = np.where(rng.random(4000) < 1 / (1 + np.exp(-true)), true, -true) * 3  # 3x over-confident
    fitted = calibration_report(informative)
    assert not fitted["temperature_at_bound"] and fitted["temperature"] == pytest.approx(3.0, rel=0.15)
    chance = calibration_report(rng.normal(-0.5, 1, 400))  # no better than chance: NLL falls all the way to T -> inf
    assert chance["temperature_at_bound"] and "no finite fit" in chance["temperature_note"]


def test_length_stratified_accuracy_of_an_always_longer_scorer_is_one_half():
    from rewardlab.evaluation.benchmark import BenchmarkItem, EvalSettings, evaluate_benchmark
    from rewardlab.scoring.protocol import FunctionScorer

    items = [BenchmarkItem((), "x" * (5 + i % 7), ("y" * (3 + i % 5),), "a") for i in range(30)]
    items += [BenchmarkItem((), "x" * 2, ("y" * (4 + i),), "b") for i in range(10)]
    result = evaluate_benchmark(FunctionScorer(lambda p, r: float(len(r)), name="len"), items, EvalSettings(n_bootstrap=200))
    length = result["length"]
    assert length["chosen_longer"]["accuracy"] == 1.0 and length["chosen_shorter"]["accuracy"] == 0.0
    assert length["length_controlled_accuracy"] == 0.5 and length["chosen_longer"]["n"] + length["chosen_shorter"]["n"] + length["neither"] == 40
    assert result["subsets"]["b"]["length"]["chosen_shorter"]["n"] == 10
    assert np.isnan(result["subsets"]["b"]["length"]["length_controlled_accuracy"])  # no chosen-longer pair in b
