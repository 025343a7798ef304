"""Rollout dumps: field mapping, clear errors naming the line, and ``rewardlab monitor`` end to end."""

import json

import pytest

from rewardlab.cli import main
from rewardlab.errors import DataFormatError
from rewardlab.monitor.report import monitor_file
from rewardlab.monitor.rollouts import RolloutFields, read_rollouts

from .streams import stream


def dump(path, rollouts, rename=None):
    rename = rename or {}
    rows = []
    for r in rollouts:
        row = {"step": r.step, "prompt": r.prompt, "response": r.response, "reward": r.reward}
        if r.gold is not None:
            row["gold"] = r.gold
        if r.members is not None:
            row["members"] = list(r.members)
        rows.append({rename.get(k, k): v for k, v in row.items()})
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


@pytest.mark.parametrize("line, field, message", [
    ('{"step": 1, "prompt": "p", "response": "r"}', "reward", "missing"),
    ('{"step": 1, "prompt": "p", "response": "r", "reward": "high"}', "reward", "expected a number"),
    ('{"step": 1, "prompt": "p", "response": "r", "reward": NaN}', "reward", "finite"),
    ('{"step": "one", "prompt": "p", "response": "r", "reward": 1}', "step", "integer step"),
    ('{"step": 1, "prompt": "p", "response": 3, "reward": 1}', "response", "expected text"),
    ('{"step": 1, "prompt": "p", "response": "r", "reward": 1, "members": [1, "x"]}', "members", "expected a number"),
    ('{"step": 1, "prompt": "p", "response": "r", "reward": 1, "logprobs": [-1.0]}', "ref_logprobs", "both"),
])
def test_a_bad_rollout_is_an_error_naming_the_line_and_field(tmp_path, line, field, message):
    path = tmp_path / "rollouts.jsonl"
    path.write_text('{"step": 0, "prompt": "p", "response": "ok", "reward": 0.5}\n' + line + "\n")
    with pytest.raises(DataFormatError, match=message) as err:
        list(read_rollouts(path))
    assert f"{path}:2" in str(err.value) and f"'{field}'" in str(err.value)


def test_other_trainers_field_names_are_mapped_and_nested_fields_read(tmp_path):
    path = tmp_path / "verl.jsonl"
    path.write_text(json.dumps({"global_steps": 3, "extra_info": {"prompt": "2+2?"}, "output": "4", "score": 1.0}) + "\n")
    fields = RolloutFields(step="global_steps", prompt="extra_info.prompt", response="output", reward="score")
    (rollout,) = read_rollouts(path, fields)
    assert (rollout.step, rollout.prompt, rollout.response, rollout.reward) == (3, "2+2?", "4", 1.0)


def test_monitor_file_writes_windows_alarms_report_and_plot(tmp_path):
    path = dump(tmp_path / "rollouts.jsonl", stream(kind="hack", change_at=11, steps=40))
    result = monitor_file(path, tmp_path / "out")
    assert result.rollouts == 640 and len(result.windows) == 20
    alarms = [json.loads(line) for line in (tmp_path / "out" / "alarms.jsonl").read_text().splitlines()]
    assert [a["rule"] for a in alarms] == [a.rule for a in result.alarms] and "proxy_gold_gap" in {a["rule"] for a in alarms}
    report = (tmp_path / "out" / "report.md").read_text()
    assert "proxy_gold_gap" in report and "monitor.png" in report
    assert (tmp_path / "out" / "monitor.png").stat().st_size > 1000
    assert len((tmp_path / "out" / "windows.jsonl").read_text().splitlines()) == 20


def test_the_cli_maps_fields_takes_thresholds_and_can_fail_on_alarm(tmp_path, capsys):
    path = dump(tmp_path / "r.jsonl", stream(kind="length", steps=40), rename={"response": "completion", "reward": "score"})
    args = ["monitor", str(path), "--output-dir", str(tmp_path / "o"), "--field-response", "completion", "--field-reward", "score"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "length_growth" in out and "640 rollouts" in out
    assert main(args + ["--length-ratio-threshold", "100", "--fail-on-alarm"]) == 0  # threshold flag honoured: no alarm
    assert main(args + ["--fail-on-alarm"]) == 1
    assert main(["monitor", str(tmp_path / "missing.jsonl"), "--output-dir", str(tmp_path / "o")]) == 2
    assert "no such rollout file" in capsys.readouterr().err


def test_the_cli_names_the_line_of_a_bad_rollout(tmp_path, capsys):
    path = tmp_path / "r.jsonl"
    path.write_text('{"step": 1, "prompt": "p", "response": "r", "reward": "x"}\n')
    assert main(["monitor", str(path), "--output-dir", str(tmp_path / "o")]) == 2
    assert f"{path}:1: field 'reward'" in capsys.readouterr().err


def test_a_folder_of_per_step_files_is_read_in_step_order_as_verl_writes_it(tmp_path):
    folder = tmp_path / "rollout_data"
    folder.mkdir()
    for step in (1, 2, 10):
        (folder / f"{step}.jsonl").write_text(json.dumps({"input": "q", "output": "a b", "score": float(step), "step": step}) + "\n")
    fields = RolloutFields(prompt="input", response="output", reward="score")
    assert [r.step for r in read_rollouts(folder, fields)] == [1, 2, 10]
