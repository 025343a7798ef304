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


def test_pairs_from_ratings_filter_and_annotator_calibration_with_drift(tmp_path):
    ratings = write_jsonl(tmp_path / "r.jsonl", [{"prompt": f"q{i // 3}", "response": f"r{i}", "score": float(i % 3)} for i in range(12)])
    assert main(["data", "pairs", "--ratings", str(ratings), "--rule", "best_worst", "--output", str(tmp_path / "p.jsonl")]) == 0
    pairs = [json.loads(line) for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert len(pairs) == 4 and all(p["margin"] == 2.0 for p in pairs) and pairs[0]["chosen"] == "r2"
    labels = write_jsonl(tmp_path / "l.jsonl", [{"item": str(i), "label": "A", "confidence": c} for i, c in enumerate((0.99, 0.6, 0.95))])
    assert main(["data", "filter", "--labels", str(labels), "--min-confidence", "0.9", "--output", str(tmp_path / "f.jsonl")]) == 0
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
