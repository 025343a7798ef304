"""Loading model folders: a folder without trained head weights is refused unless asked for (issue 33, item 5)."""

import pytest

from rewardlab.cli import main
from rewardlab.errors import CheckpointError
from rewardlab.scoring import build_scorer, scorer_config


def test_plain_backbone_is_refused_as_a_reward_model(tiny_bert_dir):
    with pytest.raises(CheckpointError, match="not a trained reward model.*classifier.*--random-head"):
        build_scorer(scorer_config(str(tiny_bert_dir)))


def test_random_head_on_request(tiny_bert_dir):
    scorer = build_scorer(scorer_config(str(tiny_bert_dir), random_head=True))
    assert len(scorer.score(["hi"], ["hello there"])) == 1


def test_trained_folder_loads_without_the_flag(tiny_rm_dir):
    first = build_scorer(scorer_config(str(tiny_rm_dir))).score(["hi"], ["hello"])
    again = build_scorer(scorer_config(str(tiny_rm_dir))).score(["hi"], ["hello"])
    assert first == again  # a trained head: the same number on every load


def test_cli_refuses_a_plain_backbone_with_one_line(tiny_bert_dir, tmp_path, capsys):
    data = tmp_path / "items.jsonl"
    data.write_text('{"prompt": "hi", "response": "hello"}\n')
    out = tmp_path / "scores.jsonl"
    assert main(["score", "--model", str(tiny_bert_dir), "--data", str(data), "--output", str(out)]) == 2
    err = capsys.readouterr().err
    assert "not a trained reward model" in err and "Traceback" not in err
    assert not out.exists()
    assert main(["score", "--model", str(tiny_bert_dir), "--data", str(data), "--output", str(out), "--random-head"]) == 0
    assert out.read_text().count("\n") == 1
