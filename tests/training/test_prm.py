import json
import random

import pytest
import torch
from transformers import AutoModelForTokenClassification

from rewardlab.cli import main
from rewardlab.data.collate import collate_examples
from rewardlab.data.readers import DropReport
from rewardlab.data.records import Message, StepLabeledSolution
from rewardlab.losses import step_bce_loss
from rewardlab.models.process_reward_model import gather_step_scores
from rewardlab.scoring import load_process_reward_model
from rewardlab.training.objectives import ProcessObjective

from ..conftest import write_jsonl


def test_soft_labels_stay_floats_through_tokenizer_collator_and_loss(tiny_llama_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_llama_dir)
    solution = StepLabeledSolution((Message("user", "Q"),), ("2+2 = 4", "4*3 = 12", "so 12"), (0.375, None, 0.8))
    objective = ProcessObjective()
    example = objective.tokenize([solution], tok, 256, DropReport())[0]
    assert example.targets[1] == 0.375 and example.targets[3] == 0.8 and len(example.targets) == 4  # None masked out
    batch = collate_examples([example], tok.pad_token_id)
    assert batch["targets"].dtype == torch.float32 and batch["targets"][0, 1].item() == 0.375
    logits = torch.zeros(batch["input_ids"].shape)
    positions, labels, mask = objective._unpack(batch["targets"])
    assert labels[0].tolist() == pytest.approx([0.375, 0.8]) and mask.all()
    expected = step_bce_loss(gather_step_scores(logits, positions), labels, mask)
    assert objective.loss(logits, batch).item() == pytest.approx(expected.item())
    # each position is the last token of its step
    ids = batch["input_ids"][0].tolist()
    assert tok.decode(ids[: positions[0, 0] + 1]).endswith("2+2 = 4")


def _synthetic_steps(n, seed=0):
    """Solutions whose wrong steps say 'oops': learnable by a tiny model, with a clear first error."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        k = rng.randint(2, 4)
        first_error = rng.choice([None, rng.randrange(k)])
        steps = [f"step {j}: " + ("oops wrong" if first_error is not None and j >= first_error else "fine ok") for j in range(k)]
        labels = [1.0 if first_error is None or j < first_error else 0.0 if j == first_error else None for j in range(k)]
        rows.append({"prompt": f"problem {i}", "steps": steps, "step_labels": labels})
    return rows


def test_prm_trains_beats_a_constant_baseline_and_reloads(tiny_llama_dir, tmp_path):
    data = write_jsonl(tmp_path / "steps.jsonl", _synthetic_steps(160))
    out = tmp_path / "prm"
    assert main(["train", "--model", str(tiny_llama_dir), "--data", str(data), "--output-dir", str(out), "--objective", "prm",
                 "--max-steps", "60", "--batch-size", "8", "--learning-rate", "3e-3", "--warmup-ratio", "0",
                 "--eval-fraction", "0.25", "--max-length", "192", "--log-every", "5", "--no-show-progress"]) == 0
    final = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()][-1]
    # constant baselines: "every step good" scores 0 on erroneous solutions, "first step bad" 0 on correct ones -> F1 0
    assert final["eval_first_error_f1"] > 0.5, final
    plain = AutoModelForTokenClassification.from_pretrained(out)
    assert plain.config.num_labels == 1
    assert json.loads((out / "rewardlab.json").read_text())["step_separator"] == "\n"
    prm = load_process_reward_model(out)
    good, bad = prm.score_steps(["problem x"] * 2, [["step 0: fine ok", "step 1: fine ok"], ["step 0: fine ok", "step 1: oops wrong"]])
    assert good[1] > 0.5 > bad[1]


def test_three_class_prm_trains(tiny_llama_dir, tmp_path):
    rows = _synthetic_steps(40)
    for r in rows:
        r["step_labels"] = [None if y is None else (1.0 if y == 1.0 else -1.0) for y in r["step_labels"]]
    data = write_jsonl(tmp_path / "s3.jsonl", rows)
    assert main(["train", "--model", str(tiny_llama_dir), "--data", str(data), "--output-dir", str(tmp_path / "p3"),
                 "--objective", "prm_3class", "--max-steps", "3", "--max-length", "192", "--no-show-progress"]) == 0
    assert AutoModelForTokenClassification.from_pretrained(tmp_path / "p3").config.num_labels == 3
