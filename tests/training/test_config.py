"""TrainConfig and the objective configs: each objective owns its options; a flag of another objective is an error."""

import dataclasses
import json
import subprocess
import sys

import pytest
import torch

from rewardlab.errors import ConfigError
from rewardlab.training.config import OBJECTIVE_CONFIGS, ProcessConfig, RegressionConfig, TrainConfig, objective_options
from rewardlab.training.objectives import PAIR_TARGETS, Objective, make_objective

RUN = dict(model="m", data="d.jsonl", output_dir="o")


def test_flat_options_map_onto_the_chosen_objective():
    config = TrainConfig.from_options(**RUN, objective="regression", heads="a,b", normalize_targets="global", max_steps=3)
    assert config.objective == RegressionConfig(heads="a,b", normalize_targets="global") and config.max_steps == 3
    assert TrainConfig(**RUN).objective_name == "bradley_terry"
    assert TrainConfig(**RUN, objective="prm_3class").objective == ProcessConfig(name="prm_3class")


@pytest.mark.parametrize("objective, option, value", [("regression", "top_k", 2), ("bradley_terry", "hybrid_alpha", 0.3),
                                                       ("plackett_luce", "tie_strength", 2.0), ("prm", "heads", "a")])
def test_an_option_of_another_objective_is_an_error_naming_its_owners(objective, option, value):
    with pytest.raises(ConfigError, match=f"option '{option}' does not apply to the {objective} objective"):
        TrainConfig.from_options(**RUN, objective=objective, **{option: value})


def test_cli_refuses_a_flag_of_another_objective_before_any_work(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "rewardlab.cli", "train", "--model", "m", "--data", "d", "--output-dir",
                           str(tmp_path), "--objective", "regression", "--top-k", "2"], capture_output=True, text=True)
    assert proc.returncode == 2 and "option 'top_k' does not apply to the regression objective" in proc.stderr


def test_yaml_takes_flat_or_nested_objective_options_and_flags_win(tmp_path):
    from rewardlab.config import config_from_file

    flat, nested = tmp_path / "flat.yaml", tmp_path / "nested.json"
    flat.write_text("model: m\ndata: d\noutput_dir: o\nobjective: davidson\ntie_strength: 2.0\n")
    nested.write_text(json.dumps({**RUN, "objective": {"name": "davidson", "tie_strength": 2.0}}))
    for path in (flat, nested):
        config = config_from_file(TrainConfig, path, build=TrainConfig.from_options, tie_strength=3.0)
        assert config.objective.name == "davidson" and config.objective.tie_strength == 3.0
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: m\ndata: d\noutput_dir: o\nobjective: regression\ntop_k: 2\n")
    with pytest.raises(ConfigError, match="bad.yaml: option 'top_k' does not apply"):
        config_from_file(TrainConfig, bad, build=TrainConfig.from_options)


def test_every_objective_option_has_a_flag_and_a_docstring():
    from rewardlab.cli import build_parser
    from rewardlab.config import field_docs

    train = build_parser()._subparsers._group_actions[0].choices["train"]
    flags = {a.dest for a in train._actions}
    for cls in set(OBJECTIVE_CONFIGS.values()):
        docs = field_docs(cls)
        assert all(f.name in docs for f in dataclasses.fields(cls)), cls
    assert set(objective_options()) <= flags


@pytest.mark.parametrize("name", sorted(OBJECTIVE_CONFIGS))
def test_every_objective_implements_the_objective_protocol(name):
    objective = make_objective(OBJECTIVE_CONFIGS[name](name=name))
    assert isinstance(objective, Objective)
    for member in ("read", "iter_read", "fit", "tokenize", "build_model", "loss", "metrics", "summary", "metadata"):
        assert callable(getattr(objective, member)), (name, member)
    assert isinstance(objective.streams, bool) and objective.heads and isinstance(objective.metadata(), dict)


def test_pair_targets_are_read_by_name():
    objective = make_objective(OBJECTIVE_CONFIGS["bradley_terry"]())
    rewards = torch.tensor([1.0, 0.0, 1.0, 0.0])  # two pairs with the same margin of rewards
    targets = torch.zeros(2, len(PAIR_TARGETS))
    targets[:, PAIR_TARGETS.index("weight")] = torch.tensor([1.0, 0.0])  # the second pair weighs nothing
    loss = objective.loss(rewards, {"targets": targets})
    assert loss[0] > 0 and loss[1] == 0
