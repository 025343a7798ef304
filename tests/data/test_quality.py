"""Preference-data quality: agreement on real multi-annotator data against direct computations, Dawid-Skene on
synthetic annotators with known accuracies, length balancing of real HH pairs, duplicates, contamination, the card."""

import json
from collections import Counter

import numpy as np
import pytest

from rewardlab.cli import main
from rewardlab.data.annotations import Annotations, agreement_report, dawid_skene, majority_labels, read_annotations
from rewardlab.data.quality import contamination, near_duplicates

from ..conftest import SHARED_DATA, requires_shared, write_jsonl

PANDALM = SHARED_DATA / "pandalm-testset" / "testset-v1.json"
HH = SHARED_DATA / "hh-rlhf-harmless" / "harmless-base-test.jsonl.gz"
TOPICAL = SHARED_DATA / "usr-topical-chat" / "topical_chat.json"


def _direct_fleiss(rows):
    cats = sorted({v for r in rows for v in r})
    counts = np.array([[r.count(c) for c in cats] for r in rows], dtype=float)
    n = counts.sum(1)[0]
    p_i = ((counts ** 2).sum(1) - n) / (n * (n - 1))
    p_j = counts.sum(0) / counts.sum()
    return (p_i.mean() - (p_j ** 2).sum()) / (1 - (p_j ** 2).sum())


def _direct_krippendorff_nominal(rows):
    cats = sorted({v for r in rows for v in r if v is not None})
    o = np.zeros((len(cats), len(cats)))  # coincidence matrix
    for r in rows:
        values = [cats.index(v) for v in r if v is not None]
        m = len(values)
        if m < 2:
            continue
        for a in range(m):
            for b in range(m):
                if a != b:
                    o[values[a], values[b]] += 1 / (m - 1)
    n_c, n = o.sum(1), o.sum()
    d_o = n - np.trace(o)
    d_e = (n * n - (n_c ** 2).sum()) / (n - 1)
    return 1 - d_o / d_e


@requires_shared(PANDALM)
def test_pandalm_agreement_matches_direct_computations_and_the_library():
    ann = read_annotations(PANDALM)
    assert len(ann.items) == 999 and ann.annotators == ("annotator1", "annotator2", "annotator3")
    assert set(ann.categories) == {"A", "B", "tie"}
    report = agreement_report(ann, bootstrap=50)
    rows = ann.matrix()
    assert report["fleiss_kappa"] == pytest.approx(_direct_fleiss(rows), abs=1e-9)
    assert report["krippendorff_alpha_nominal"] == pytest.approx(_direct_krippendorff_nominal(rows), abs=1e-9)
    lo, hi = report["intervals"]["fleiss_kappa"]
    assert lo < report["fleiss_kappa"] < hi and 0.8 < report["fleiss_kappa"] < 0.9
    assert len(report["cohen_kappa"]) == 3 and report["mean_item_entropy_bits"] < 0.5


def test_dawid_skene_recovers_known_annotator_accuracies():
    rng = np.random.default_rng(0)
    accuracies = [0.95, 0.9, 0.8, 0.7, 0.6]
    truth = rng.integers(0, 2, 3000)
    labels = []
    for t in truth:
        row = []
        for acc in accuracies:
            said = t if rng.random() < acc else 1 - t
            row.append(None if rng.random() < 0.1 else ("good", "bad")[said])  # 10% missing
        labels.append(tuple(row))
    ann = Annotations(tuple(map(str, range(3000))), tuple(f"a{k}" for k in range(5)), tuple(labels), categories=("good", "bad"))
    result = dawid_skene(ann)
    assert result.converged
    assert [result.accuracy[f"a{k}"] for k in range(5)] == pytest.approx(accuracies, abs=0.03)
    truth_labels = [("good", "bad")[t] for t in truth]
    ds_acc = np.mean([a == b for a, b in zip(result.labels(), truth_labels)])
    mv_acc = np.mean([a == b for a, b in zip(majority_labels(ann, "first"), truth_labels)])
    assert ds_acc >= mv_acc and ds_acc > 0.95  # weighting good annotators beats one vote each


@requires_shared(HH)
def test_length_balancing_brings_real_hh_pairs_to_half_chosen_longer(tmp_path):
    out = tmp_path / "balanced.jsonl"
    assert main(["data", "balance", "--data", str(HH), "--output", str(out)]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    longer = np.mean([len(r["chosen"].split()) > len(r["rejected"].split()) for r in rows])
    assert abs(longer - 0.5) <= 0.02 and len(rows) > 1000


def test_near_duplicates_and_contamination():
    base = "the quick brown fox jumps over the lazy dog near the river bank every single morning before breakfast"
    texts = [base, base + " again", "completely different text about chess openings and endgames in tournament play",
             base.upper()]
    found = near_duplicates(texts, threshold=0.7)
    assert found["exact_groups"] == [[0, 3]] and any({0, 1} <= set(g) for g in found["near_groups"])
    train = ["nothing in common here at all", "prefix " + base]
    result = contamination(train, [base, "other eval text"], n=13)
    assert result["contaminated"] == 1 and result["items"][0]["train"] == 1 and result["items"][0]["eval"] == [0]


@requires_shared(PANDALM)
def test_data_cli_aggregate_and_card(tmp_path):
    out = tmp_path / "labels.jsonl"
    assert main(["data", "aggregate", "--annotations", str(PANDALM), "--output", str(out)]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 999 and abs(sum(rows[0]["posterior"].values()) - 1) < 1e-9
    assert Counter(r["label"] for r in rows).keys() <= {"A", "B", "tie"}
    pairs = write_jsonl(tmp_path / "p.jsonl", [{"prompt": "q", "chosen": "a b c", "rejected": "a"}, {"prompt": "q", "chosen": "a", "rejected": "b c"}])
    assert main(["data", "card", "--data", str(pairs), "--annotations", str(PANDALM), "--bootstrap", "20",
                 "--output-dir", str(tmp_path / "card")]) == 0
    card = json.loads((tmp_path / "card" / "card.json").read_text())
    assert card["pairs"] == 2 and card["chosen_longer_rate"] == 0.5 and "fleiss_kappa" in card["agreement"]
    assert "Annotator agreement" in (tmp_path / "card" / "card.md").read_text()
    assert "Fleiss&#x27; kappa: 0.864" in (tmp_path / "card" / "card.html").read_text()


def test_pairs_from_ratings_filter_and_annotator_calibration_with_drift(tmp_path):
    ratings = write_jsonl(tmp_path / "r.jsonl", [{"prompt": f"q{i // 3}", "response": f"r{i}", "score": float(i % 3)} for i in range(12)])
    assert main(["data", "pairs", "--ratings", str(ratings), "--rule", "best_worst", "--output", str(tmp_path / "p.jsonl")]) == 0
    pairs = [json.loads(line) for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert len(pairs) == 4 and all(p["margin"] == 2.0 for p in pairs) and pairs[0]["chosen"] == "r2"
    labels = write_jsonl(tmp_path / "l.jsonl", [{"item": str(i), "label": "A", "confidence": c} for i, c in enumerate((0.99, 0.6, 0.95))])
    assert main(["data", "filter", "--data", str(labels), "--min-confidence", "0.9", "--weight-by", "confidence",
                 "--output", str(tmp_path / "f.jsonl")]) == 0
    assert [json.loads(line)["weight"] for line in (tmp_path / "f.jsonl").read_text().splitlines()] == [0.99, 0.95]
    rows, gold = [], []
    for i in range(200):  # 'steady' is always right; 'tiring' is right early and wrong late
        truth = "A" if i % 2 else "B"
        gold.append({"item": str(i), "label": truth})
        rows.append({"item": str(i), "annotator": "steady", "label": truth, "t": float(i)})
        rows.append({"item": str(i), "annotator": "tiring", "label": truth if i < 100 else ("B" if truth == "A" else "A"), "t": float(i)})
    ann = write_jsonl(tmp_path / "ann.jsonl", rows)
    gold_file = write_jsonl(tmp_path / "gold.jsonl", gold)
    from rewardlab.data.annotations import read_annotations
    from rewardlab.data.quality import accuracy_on_gold

    read = read_annotations(ann)
    labels_by = {a: {item: row[j] for item, row in zip(read.items, read.labels)} for j, a in enumerate(read.annotators)}
    times = {a: {r["item"]: r["t"] for r in rows if r["annotator"] == a} for a in ("steady", "tiring")}
    report = accuracy_on_gold(labels_by, {g["item"]: g["label"] for g in gold}, 200, times=times, window=50.0)
    assert report["steady"]["accuracy"] == 1.0 and not report["steady"]["drifting"]
    assert report["tiring"]["accuracy"] == 0.5 and report["tiring"]["drifting"] and report["tiring"]["ci"][0] < 0.5 < report["tiring"]["ci"][1]
    assert main(["data", "calibrate", "--annotations", str(ann), "--gold", str(gold_file), "--time-field", "t",
                 "--window", "50", "--bootstrap", "50"]) == 0


def test_card_counts_truncation_contamination_and_writes_html_with_plots(tmp_path):
    from transformers import AutoTokenizer

    from rewardlab.data.card import write_card
    from rewardlab.data.quality import data_card
    from rewardlab.data.records import Message, PreferencePair
    from rewardlab.data.templating import count_tokens
    from rewardlab.models.io import resolve_model_source

    tokenizer = AutoTokenizer.from_pretrained(resolve_model_source("builtin:minilm")[0])
    leaked = "the quick brown fox jumps over the lazy dog near the river bank every single morning"
    rows = [{"prompt": leaked if i == 3 else f"question number {i}", "chosen": "word " * (5 + 7 * i), "rejected": "other " * (9 + 2 * i),
             "strength": "better"} for i in range(40)]
    data = write_jsonl(tmp_path / "pairs.jsonl", rows)
    eval_file = write_jsonl(tmp_path / "eval.jsonl", [{"prompt": "Q: " + leaked + " ?", "chosen": "a", "rejected": "b"}])
    out = tmp_path / "card"
    assert main(["data", "card", "--data", str(data), "--tokenizer", "builtin:minilm", "--max-length", "64", "--eval", str(eval_file),
                 "--output-dir", str(out)]) == 0
    card = json.loads((out / "card.json").read_text())
    lengths = count_tokens(tokenizer, [((Message("user", r["prompt"]),), side) for r in rows for side in (r["chosen"], r["rejected"])])
    chosen_over, rejected_over = sum(n > 64 for n in lengths[0::2]), sum(n > 64 for n in lengths[1::2])
    assert 0 < chosen_over < 40 and card["truncation"]["chosen_over"] == chosen_over and card["truncation"]["rejected_over"] == rejected_over
    assert card["truncation"]["either_over"] == sum(max(a, b) > 64 for a, b in zip(lengths[0::2], lengths[1::2]))
    assert card["contamination"]["contaminated"] == 1 and card["contamination"]["first_listed"] == [f"{data}:4"]
    assert card["strength_labels"] == {"better": 40} and sum(card["histograms"]["words"]["chosen"]) == 40
    html = (out / "card.html").read_text()
    assert "Truncation at 64 tokens" in html and "data:image/png;base64," in html and (out / "tokens.png").exists()
    # streaming: the summary keeps a fixed-size sample, whatever the file's size
    many = ((f"f:{i}", PreferencePair((Message("user", f"p{i}"),), "a " * (i % 50 + 1), "b " * (i % 30 + 1))) for i in range(20000))
    big = data_card(many, dedup_sample=100, reservoir_size=500)
    assert big["pairs"] == 20000 and big["sample_size"] == 500 and sum(big["histograms"]["words"]["chosen"]) == 500
    assert big["chosen_mean_words"] == pytest.approx(np.mean([i % 50 + 1 for i in range(20000)]))
    paths = write_card({"pairs": 0, "read": "0 pairs"}, tmp_path / "empty", "empty")
    assert "0 pairs" in paths["markdown"].read_text()


def test_length_matched_pairs_and_tolerance_in_pair_construction(tmp_path):
    rows = [{"prompt": "q", "chosen": "a " * n, "rejected": "b " * m} for n, m in ((10, 9), (10, 5), (4, 4), (3, 6), (20, 19))]
    data = write_jsonl(tmp_path / "p.jsonl", rows)
    assert main(["data", "balance", "--data", str(data), "--tolerance", "0.1", "--output", str(tmp_path / "m.jsonl")]) == 0
    kept = [json.loads(line) for line in (tmp_path / "m.jsonl").read_text().splitlines()]
    assert [(len(k["chosen"].split()), len(k["rejected"].split())) for k in kept] == [(10, 9), (4, 4), (20, 19)]
    from rewardlab.data.quality import pairs_from_ratings

    rated = {"q": [("one two three four five", 5.0), ("one", 4.0), ("one two three four", 1.0)]}
    assert pairs_from_ratings(rated, "best_worst")[0]["rejected"] == "one two three four"
    matched = pairs_from_ratings(rated, "best_random", length_tolerance=0.25)
    assert [(p["chosen"], p["rejected"]) for p in matched] == [("one two three four five", "one two three four")]
    assert pairs_from_ratings(rated, "all", length_tolerance=0.0) == []


def test_z_normalization_per_annotator(tmp_path, capsys):
    rows = [{"prompt": "q", "response": f"r{i}", "annotator": "harsh" if i % 2 else "kind", "score": (1 + i % 3) + (0 if i % 2 else 5)}
            for i in range(12)]
    data = write_jsonl(tmp_path / "ratings.jsonl", rows)
    assert main(["data", "normalize", "--ratings", str(data), "--output", str(tmp_path / "z.jsonl")]) == 0
    out = [json.loads(line) for line in (tmp_path / "z.jsonl").read_text().splitlines()]
    for who in ("harsh", "kind"):
        z = np.array([r["score_z"] for r in out if r["annotator"] == who])
        assert abs(z.mean()) < 1e-9 and z.std(ddof=1) == pytest.approx(1.0)
    assert [r["score"] for r in out] == [r["score"] for r in rows]
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"response": "x", "score": 1}])
    assert main(["data", "normalize", "--ratings", str(bad), "--output", str(tmp_path / "b.jsonl")]) != 0
    assert "bad.jsonl:1: field 'annotator': missing" in capsys.readouterr().err


@requires_shared(TOPICAL)
def test_pairs_from_real_ratings_with_and_without_length_matching(tmp_path):
    def longer_rate(path):
        rows = [json.loads(line) for line in path.read_text().splitlines()]
        return len(rows), np.mean([len(r["chosen"].split()) > len(r["rejected"].split()) for r in rows])

    for extra, name in (([], "all.jsonl"), (["--length-tolerance", "0.2"], "matched.jsonl")):
        assert main(["data", "pairs", "--ratings", str(TOPICAL), "--score-field", "overall", "--rule", "all", "--min-gap", "1",
                     *extra, "--output", str(tmp_path / name)]) == 0
    (n_all, rate_all), (n_matched, rate_matched) = longer_rate(tmp_path / "all.jsonl"), longer_rate(tmp_path / "matched.jsonl")
    assert n_all == 537 and rate_all > 0.65  # humans rated longer replies higher on this data
    assert 0 < n_matched < n_all and abs(rate_matched - 0.5) < 0.1


def test_swap_cli_doubles_judge_data_with_flipped_winners(tmp_path, capsys):
    data = write_jsonl(tmp_path / "j.jsonl", [{"prompt": "q", "response_a": "x", "response_b": "y", "winner": "A"},
                                             {"prompt": "q", "response_a": "u", "response_b": "v", "winner": "tie"}])
    assert main(["data", "swap", "--data", str(data), "--output", str(tmp_path / "s.jsonl")]) == 0
    rows = [json.loads(line) for line in (tmp_path / "s.jsonl").read_text().splitlines()]
    assert [(r["response_a"], r["winner"]) for r in rows] == [("x", "A"), ("y", "B"), ("u", "tie"), ("v", "tie")]
    bad = write_jsonl(tmp_path / "b.jsonl", [{"prompt": "q", "response_a": "x", "response_b": "y", "winner": "left"}])
    assert main(["data", "swap", "--data", str(bad), "--output", str(tmp_path / "t.jsonl")]) != 0
    assert "b.jsonl:1: field 'winner': expected A, B or tie" in capsys.readouterr().err
