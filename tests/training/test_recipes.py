"""Training recipes and length balancing (issue 33, item 7)."""

import json

import pytest

from rewardlab.data.records import Message, PreferencePair
from rewardlab.errors import ConfigError
from rewardlab.training.config import TrainConfig
from rewardlab.training.objectives import make_objective


def _pairs(n_longer: int, n_shorter: int) -> list[PreferencePair]:
    q = (Message("user", "q"),)
    return ([PreferencePair(q, f"a long careful answer {i}", "short") for i in range(n_longer)]
            + [PreferencePair(q, "brief", f"a rambling reply that goes on {i}") for i in range(n_shorter)])


def test_robust_recipe_presets_options_that_explicit_ones_override():
    robust = TrainConfig.from_options(model="m", data="d", output_dir="o", recipe="robust").objective
    assert robust.length_balance == "reweight" and robust.augment is None
    mine = TrainConfig.from_options(model="m", data="d", output_dir="o", recipe="robust", length_balance="drop",
                                    augment={"format": 0.1}).objective
    assert mine.length_balance == "drop" and mine.augment == {"format": 0.1}  # explicit options win
    with pytest.raises(ConfigError, match="unknown recipe"):
        TrainConfig.from_options(model="m", data="d", output_dir="o", recipe="sturdy")


@pytest.mark.parametrize("mode", ["reweight", "drop"])
def test_length_balance_equalizes_chosen_longer_and_shorter(mode):
    objective = make_objective(TrainConfig.from_options(model="m", data="d", output_dir="o", length_balance=mode).objective)
    assert not objective.streams  # balancing needs the whole training split in memory
    out = objective.augment_training(_pairs(30, 10))

    def total(longer: bool) -> float:
        side = [p for p in out if (len(p.chosen) > len(p.rejected)) == longer]
        return sum(1.0 if p.weight is None else p.weight for p in side)

    assert total(True) == pytest.approx(total(False))
    assert len(out) == (40 if mode == "reweight" else 20)


def test_train_recipe_flag_records_the_resolved_options(tiny_bert_dir, demo_jsonl, tmp_path):
    from rewardlab.cli import main

    out = tmp_path / "run"
    assert main(["train", "--model", str(tiny_bert_dir), "--data", str(demo_jsonl), "--output-dir", str(out), "--recipe", "robust",
                 "--max-steps", "1", "--batch-size", "4", "--max-length", "128", "--eval-fraction", "0", "--no-show-progress"]) == 0
    recorded = json.loads((out / "run_config.json").read_text())["objective"]
    assert recorded["length_balance"] == "reweight" and recorded["augment"] is None
