"""Hostile input files: a BOM and CRLF are read, non-finite numbers are refused with file:line, an output that is
the input is refused before it is truncated."""

import json

import pytest

from rewardlab.errors import ConfigError, DataFormatError
from rewardlab.data.readers import iter_records, read_preference_pairs


def test_a_utf8_bom_and_crlf_line_ends_are_read(tmp_path):
    path = tmp_path / "excel.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"prompt": "Hi", "chosen": "Hello", "rejected": "Bye"}\r\n{"prompt": "Q", "chosen": "A", "rejected": "B"}\r\n')
    pairs, report = read_preference_pairs(str(path))
    assert [p.chosen for p in pairs] == ["Hello", "A"] and report.total == 2
    json_path = tmp_path / "excel.json"
    json_path.write_bytes(b'\xef\xbb\xbf[{"prompt": "Hi", "chosen": "Hello", "rejected": "Bye"}]\r\n')
    assert len(list(iter_records(str(json_path)))) == 1


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_margins_are_refused_at_read_time(tmp_path, value):
    path = tmp_path / "nan.jsonl"
    path.write_text('{"prompt": "Hi", "chosen": "Hello", "rejected": "Bye", "margin": 1}\n'
                    f'{{"prompt": "Hi", "chosen": "Hello", "rejected": "Bye", "margin": {value}}}\n')
    with pytest.raises(DataFormatError, match=r"nan.jsonl:2: field 'margin': expected a finite number"):
        read_preference_pairs(str(path))


def test_score_refuses_an_output_that_is_its_input(tmp_path):
    import os

    from rewardlab.scoring.files import score_file
    from rewardlab.scoring.protocol import FunctionScorer

    data = tmp_path / "in.jsonl"
    data.write_text('{"prompt": "Hi", "response": "Hello"}\n')
    scorer = FunctionScorer(lambda p, r: 1.0)
    with pytest.raises(ConfigError, match="is the input"):
        score_file(scorer, data, data, show_progress=False)
    os.link(data, tmp_path / "hardlink.jsonl")  # the same file under another name
    with pytest.raises(ConfigError, match="is the input"):
        score_file(scorer, data, tmp_path / "hardlink.jsonl", show_progress=False)
    assert data.read_text() == '{"prompt": "Hi", "response": "Hello"}\n'  # untouched


def test_identical_implicit_pairs_are_reported_as_identical_and_cut_prompts_are_counted(tiny_llama_dir, tmp_path):
    from transformers import AutoTokenizer

    from rewardlab.data.readers import DropReport
    from rewardlab.training.config import TrainConfig
    from rewardlab.training.objectives import make_objective

    convo = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]
    path = tmp_path / "implicit.jsonl"
    path.write_text(json.dumps({"chosen": convo, "rejected": convo}) + "\n"
                    + json.dumps({"prompt": "word " * 300, "chosen": "yes", "rejected": "no"}) + "\n")
    pairs, report = read_preference_pairs(str(path))
    assert report.reasons == {"with chosen == rejected": 1} and len(pairs) == 1
    objective = make_objective(TrainConfig(model="m", data="d", output_dir="o").objective)
    tokens = DropReport(total=1)
    examples = objective.tokenize(pairs, AutoTokenizer.from_pretrained(tiny_llama_dir), 64, tokens)
    assert len(examples) == 1 and tokens.cut == 2 and tokens.first_cut.endswith("implicit.jsonl:2")
    assert "2 sequence(s) had their prompt cut from the left to fit max_length (first at" in tokens.summary("pairs")
