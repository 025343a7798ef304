import json
import subprocess
import sys

import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from rewardlab.cli import main
from rewardlab.data.collate import pad_sequences
from rewardlab.data.readers import read_preference_pairs
from rewardlab.data.templating import tokenize_conversation

from .conftest import HH_FILE, requires_shared, write_jsonl


def _run(*args):
    return subprocess.run([sys.executable, "-m", "rewardlab.cli", *args], capture_output=True, text=True, timeout=600)


def test_train_then_score_from_the_cli_matches_plain_transformers(tiny_llama_dir, demo_jsonl, tmp_path):
    out = tmp_path / "rm"
    assert main(["train", "--model", str(tiny_llama_dir), "--data", str(demo_jsonl), "--output-dir", str(out),
                 "--max-steps", "5", "--max-length", "192", "--learning-rate", "3e-3", "--no-show-progress"]) == 0
    scores_path = tmp_path / "scores.jsonl"
    assert main(["score", "--model", str(out), "--data", str(demo_jsonl), "--output", str(scores_path)]) == 0
    rows = [json.loads(line) for line in scores_path.read_text().splitlines()]
    pairs, _ = read_preference_pairs(demo_jsonl)
    assert len(rows) == len(pairs) == 96 and rows[5]["index"] == 5 and rows[5]["source"].endswith("pairs.jsonl:6")

    plain = AutoModelForSequenceClassification.from_pretrained(out).eval()
    tok = AutoTokenizer.from_pretrained(out)
    seqs = [tokenize_conversation(tok, p.prompt, p.chosen, 192) for p in pairs[:8]]
    ids, mask = pad_sequences(seqs, tok.pad_token_id)
    with torch.inference_mode():
        expected = plain(input_ids=ids, attention_mask=mask).logits.squeeze(-1)
    assert torch.allclose(torch.tensor([r["chosen_reward"] for r in rows[:8]]), expected, atol=1e-4)


def test_config_file_and_flag_override(tiny_llama_dir, demo_jsonl, tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text(f"model: {tiny_llama_dir}\ndata: {demo_jsonl}\noutput_dir: {tmp_path / 'o'}\nmax_steps: 50\nmax_length: 192\nshow_progress: false\n")
    assert main(["train", "--config", str(config), "--max-steps", "2"]) == 0
    saved = json.loads((tmp_path / "o" / "run_config.json").read_text())
    assert saved["max_steps"] == 2 and saved["max_length"] == 192


@pytest.mark.parametrize(("flags", "yaml_value", "expected"), [
    ([], "auto", "auto"), (["--no-gradient-checkpointing"], None, False), ([], "true", True), (["--no-gradient-checkpointing"], "auto", False),
    (["--gradient-checkpointing"], "false", True), (["--gradient-checkpointing", "auto"], "false", "auto"),
    (["--gradient-checkpointing", "off"], "true", False),
])
def test_gradient_checkpointing_from_flags_and_config_file(flags, yaml_value, expected, tiny_llama_dir, demo_jsonl, tmp_path, capsys):
    config = tmp_path / "run.yaml"
    config.write_text(f"model: {tiny_llama_dir}\ndata: {demo_jsonl}\noutput_dir: {tmp_path / 'o'}\nmax_steps: 1\nmax_length: 192\n"
                      "show_progress: false\n" + (f"gradient_checkpointing: {yaml_value}\n" if yaml_value else ""))
    assert main(["train", "--config", str(config), *flags]) == 0
    assert json.loads((tmp_path / "o" / "run_config.json").read_text())["gradient_checkpointing"] == expected
    assert ("gradient checkpointing (" in capsys.readouterr().err) is (expected is not False)  # a decoder on CPU: auto is on


def test_score_accepts_prompt_response_and_messages(tiny_llama_dir, tmp_path):
    from rewardlab.models.io import RewardModelMetadata, build_reward_model, save_pretrained

    model, tok = build_reward_model(str(tiny_llama_dir))
    save_pretrained(model, tok, RewardModelMetadata(pooling=model.pooling), tmp_path / "rm")
    data = write_jsonl(tmp_path / "in.jsonl", [
        {"prompt": "Hi", "response": "Hello"},
        {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]},
    ])
    assert main(["score", "--model", str(tmp_path / "rm"), "--data", str(data), "--output", str(tmp_path / "s.jsonl")]) == 0
    rows = [json.loads(line) for line in (tmp_path / "s.jsonl").read_text().splitlines()]
    assert rows[0]["reward"] == pytest.approx(rows[1]["reward"], abs=1e-6)
    for cap in ("1", "none"):  # one item per batch, or no token cap: the same rewards
        assert main(["score", "--model", str(tmp_path / "rm"), "--data", str(data), "--output", str(tmp_path / "c.jsonl"),
                     "--max-batch-tokens", cap]) == 0
        capped = [json.loads(line) for line in (tmp_path / "c.jsonl").read_text().splitlines()]
        assert [r["reward"] for r in capped] == pytest.approx([r["reward"] for r in rows], abs=1e-5)
    proc = _run("score", "--model", str(tmp_path / "rm"), "--data", str(data), "--output", str(tmp_path / "x.jsonl"),
                "--max-batch-tokens", "lots")
    assert proc.returncode == 2 and "expected a positive number of tokens" in proc.stderr


@pytest.fixture
def saved_rm(tiny_llama_dir, tmp_path):
    from rewardlab.models.io import RewardModelMetadata, build_reward_model, save_pretrained

    model, tok = build_reward_model(str(tiny_llama_dir))
    save_pretrained(model, tok, RewardModelMetadata(pooling=model.pooling, max_length=256), tmp_path / "rm")
    return tmp_path / "rm"


def test_score_streams_in_chunks_and_resumes_after_a_kill(saved_rm, tmp_path, monkeypatch):
    import rewardlab.scoring.files as scoring
    from rewardlab.scoring import LocalScorer

    monkeypatch.setattr(scoring, "SCORE_CHUNK_RECORDS", 3)
    records = [{"prompt": f"Question {i}?", "chosen": "yes " * (i + 1), "rejected": "no"} if i % 3 else
               {"prompt": f"Question {i}?", "response": "maybe " * i} for i in range(10)]
    data = write_jsonl(tmp_path / "in.jsonl", records)
    flags = ["score", "--model", str(saved_rm), "--data", str(data)]
    assert main([*flags, "--output", str(tmp_path / "whole.jsonl")]) == 0
    whole = [json.loads(line) for line in (tmp_path / "whole.jsonl").read_text().splitlines()]
    assert [r["index"] for r in whole] == list(range(10)) and "chosen_reward" in whole[1] and "reward" in whole[0]

    calls = []
    real = LocalScorer.score_ids

    def killed_in_third_chunk(self, sequences):
        calls.append(len(sequences))
        if len(calls) == 3:
            raise KeyboardInterrupt  # the process dies while scoring records 6-8
        return real(self, sequences)

    out = tmp_path / "part.jsonl"
    monkeypatch.setattr(LocalScorer, "score_ids", killed_in_third_chunk)
    with pytest.raises(KeyboardInterrupt):
        main([*flags, "--output", str(out)])
    assert len(out.read_text().splitlines()) == 6  # two whole chunks were written and flushed
    with out.open("a") as handle:
        handle.write('{"index": 6, "sour')  # a line cut mid-write
    calls.clear()
    monkeypatch.setattr(LocalScorer, "score_ids", lambda self, sequences: calls.append(len(sequences)) or real(self, sequences))
    assert main([*flags, "--output", str(out), "--resume"]) == 0
    assert calls == [1 + 2 + 2, 1]  # records 6-9 only: a single and two pairs, then a single
    resumed = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["index"] for r in resumed] == list(range(10))
    for mine, reference in zip(resumed, whole):
        assert mine.keys() == reference.keys() and mine["source"] == reference["source"]
        for key in (k for k in mine if k.endswith("reward")):
            assert mine[key] == pytest.approx(reference[key], abs=1e-5)

    proc = _run(*flags, "--output", str(out), "--resume", "--max-length", "128")
    assert proc.returncode == 2 and "differs in max_length (max_length was 256, now 128)" in proc.stderr


def test_score_checks_every_length_before_scoring(saved_rm, tmp_path):
    data = write_jsonl(tmp_path / "in.jsonl", [{"prompt": "Hi", "response": "Hello"}, {"prompt": "Hi", "response": "word " * 400},
                                               {"prompt": "Hi", "chosen": "word " * 400, "rejected": "no"}])
    out = tmp_path / "s.jsonl"
    proc = _run("score", "--model", str(saved_rm), "--data", str(data), "--output", str(out))
    assert proc.returncode == 2 and not out.exists()
    assert "2 response(s) do not fit in max_length=256" in proc.stderr and f"first at {data}:2" in proc.stderr
    assert main(["score", "--model", str(saved_rm), "--data", str(data), "--output", str(out), "--skip-too-long"]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert rows[0]["reward"] is not None and rows[1]["reward"] is None
    assert rows[2]["chosen_reward"] is None and rows[2]["rejected_reward"] is not None


@pytest.mark.parametrize(
    "content, expected",
    [
        ('{"prompt": "p", "chosen": "a", "rejected": "b"}\n{"prompt": "p", "chosen": "a"\n', "bad.jsonl:2: malformed JSON"),
        ('{"prompt": "p", "answer": "a", "rejected": "b"}\n', "bad.jsonl:1: field 'chosen': missing; accepted formats"),
        ('{"prompt": "p", "chosen": ["a"], "rejected": "b"}\n', "bad.jsonl:1: field 'chosen': message 0 must be"),
    ],
)
def test_bad_input_exits_nonzero_with_a_one_line_message(tiny_llama_dir, tmp_path, content, expected):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(content)
    proc = _run("train", "--model", str(tiny_llama_dir), "--data", str(bad), "--output-dir", str(tmp_path / "o"))
    assert proc.returncode == 2
    assert expected in proc.stderr
    assert "Traceback" not in proc.stderr


def test_every_subcommand_help_renders(capsys):
    from rewardlab.cli import build_parser

    commands = build_parser()._subparsers._group_actions[0].choices  # argparse keeps subparsers here
    assert "train" in commands
    for name, sub in commands.items():
        text = sub.format_help()  # a stray '%' in an option's docstring breaks argparse's formatting
        assert name in text and "--help" in text
    data_help = commands["data"].format_help()  # a list of subcommands: no defaults, '%' shown once
    assert "50%)" in data_help and "%%" not in data_help and "(default" not in data_help
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--help"])
    assert exit_info.value.code == 0 and "--gradient-checkpointing" in capsys.readouterr().out


def test_invalid_option_value_is_rejected_before_any_work(tmp_path):
    proc = _run("train", "--model", "m", "--data", "d", "--output-dir", str(tmp_path), "--batch-size", "0")
    assert proc.returncode == 2 and "option 'batch_size' must be >= 1" in proc.stderr and "Traceback" not in proc.stderr


@requires_shared(HH_FILE)
@pytest.mark.slow
def test_minilm_on_real_hh_pairs_starts_near_ln2(tmp_path):
    out = tmp_path / "hh"
    assert main(["train", "--model", "builtin:minilm", "--data", str(HH_FILE), "--max-pairs", "64", "--output-dir", str(out),
                 "--max-steps", "4", "--batch-size", "4", "--max-length", "128", "--log-every", "1", "--eval-fraction", "0",
                 "--no-show-progress"]) == 0
    first = json.loads((out / "metrics.jsonl").read_text().splitlines()[0])
    assert abs(first["loss"] - 0.6931) < 0.05


def test_every_flag_of_every_subcommand_has_help_and_a_visible_default():
    import argparse

    from rewardlab.cli import build_parser

    commands = build_parser()._subparsers._group_actions[0].choices
    for name, sub in commands.items():
        text = sub.format_help()
        assert "(default: required)" not in text and "default: \n" not in text, name
        for action in sub._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            assert action.help, (name, action.option_strings)
            shown = sub.formatter_class(name)._get_help_string(action)
            switch = isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction, argparse.BooleanOptionalAction))
            assert action.required or switch or "(default" in shown or "(required" in shown, (name, action.option_strings, shown)


def test_small_held_out_sets_and_evaluating_on_training_data_are_warned_about(tiny_llama_dir, demo_jsonl, tmp_path, capsys):
    out = tmp_path / "rm"
    assert main(["train", "--model", str(tiny_llama_dir), "--data", str(demo_jsonl), "--output-dir", str(out), "--max-steps", "1",
                 "--batch-size", "4", "--max-length", "192", "--eval-fraction", "0.05", "--no-show-progress"]) == 0
    assert "warning: only 5 held-out preference pairs" in capsys.readouterr().err
    assert main(["eval", "--model", str(out), "--data", str(demo_jsonl), "--output-dir", str(tmp_path / "e"), "--bootstrap", "0"]) == 0
    assert f"warning: {demo_jsonl} is the file {out} was trained on" in capsys.readouterr().err


def test_a_missing_model_folder_is_one_clear_line_for_every_model_argument(tmp_path, capsys):
    from rewardlab.cli import main

    missing = str(tmp_path / "no-such-model")
    data = tmp_path / "samples.jsonl"
    data.write_text('{"prompt": "Hi", "response": "Hello"}\n')
    commands = [
        (["kl", "--policy", missing, "--reference", missing, "--data", str(data)], "no such policy folder"),
        (["score", "--model", missing, "--data", str(data), "--output", str(tmp_path / "o.jsonl")], "no such reward model folder"),
        (["rlhf", "--policy", missing, "--output-dir", str(tmp_path / "run")], "no such policy folder"),
    ]
    for argv, message in commands:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err and "Repo id" not in err, (argv, err)


def test_serve_on_a_port_in_use_fails_before_loading_and_score_refuses_a_folder_output(tmp_path, capsys):
    import socket

    from rewardlab.cli import main

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        # the model does not exist: a port check after loading would report the model, not the port
        assert main(["serve", "--model", str(tmp_path / "not-loaded"), "--port", str(port)]) == 2
    assert f"cannot listen on 127.0.0.1:{port}" in capsys.readouterr().err
    data = tmp_path / "d.jsonl"
    data.write_text('{"prompt": "Hi", "response": "Hello"}\n')
    assert main(["score", "--model", "builtin:minilm", "--data", str(data), "--output", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "is a folder" in err and "Traceback" not in err
