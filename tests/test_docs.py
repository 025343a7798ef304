"""Documented commands run as written (issue 33, item 11): the README's scoring snippet, docs/data.md's USR commands."""

import json
import re
from pathlib import Path

from rewardlab.cli import main

from .conftest import SHARED_DATA, requires_shared, write_jsonl

ROOT = Path(__file__).resolve().parents[1]


def _python_blocks(path: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(), flags=re.S)


def test_readme_scoring_snippet_runs_on_a_512_position_encoder(tiny_bert_dir, tmp_path, monkeypatch):
    """The README's first Python block, run as written in a folder holding runs/rm (an encoder with 512 positions,
    as the README's MiniLM) and responses.jsonl."""
    from rewardlab.models.io import RewardModelMetadata, build_reward_model, save_pretrained

    model, tok = build_reward_model(str(tiny_bert_dir))
    save_pretrained(model, tok, RewardModelMetadata(pooling=model.pooling, max_length=128), tmp_path / "runs" / "rm")
    write_jsonl(tmp_path / "responses.jsonl", [{"prompt": "What is 2+2?", "response": "4"}])
    monkeypatch.chdir(tmp_path)
    block = next(b for b in _python_blocks(ROOT / "README.md") if "build_scorer(RewardModelConfig(" in b)
    exec(compile(block, "README.md", "exec"), {})
    assert json.loads((tmp_path / "scores.jsonl").read_text())["reward"] is not None


USR = SHARED_DATA / "usr-topical-chat" / "topical_chat.json"


@requires_shared(USR)
def test_data_md_usr_commands_run_as_written(tmp_path, monkeypatch):
    text = (ROOT / "docs" / "data.md").read_text()
    commands = re.findall(r"`rewardlab (data (?:pairs|normalize) --ratings topical_chat\.json[^`]*)`", text.replace("\n", " "))
    assert len(commands) == 2
    monkeypatch.chdir(tmp_path)
    (tmp_path / "topical_chat.json").symlink_to(USR)
    for command in commands:
        assert main(command.split()) == 0, command
    assert sum(1 for _ in open(tmp_path / "pairs.jsonl")) == 537
    assert all("overall_z" in json.loads(line) for line in open(tmp_path / "z.jsonl"))


@requires_shared(USR)
def test_usr_without_score_field_says_which_to_pick(tmp_path, capsys):
    assert main(["data", "pairs", "--ratings", str(USR), "--rule", "all", "--output", str(tmp_path / "p.jsonl")]) == 2
    assert "--score-field overall" in capsys.readouterr().err
    assert not (tmp_path / "p.jsonl").exists()
