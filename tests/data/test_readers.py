import gzip
import json

import pytest

from rewardlab.data.readers import read_preference_pairs, to_preference_pair
from rewardlab.data.records import Message
from rewardlab.errors import DataFormatError

from ..conftest import HH_FILE, requires_shared, write_jsonl

MSGS = [{"role": "user", "content": "Hi"}]


@pytest.mark.parametrize(
    "record",
    [
        {"prompt": "Hi", "chosen": "Hello!", "rejected": "Go away."},
        {"prompt": MSGS, "chosen": [{"role": "assistant", "content": "Hello!"}],
         "rejected": [{"role": "assistant", "content": "Go away."}]},
        {"chosen": MSGS + [{"role": "assistant", "content": "Hello!"}],
         "rejected": MSGS + [{"role": "assistant", "content": "Go away."}]},
        {"chosen": "\n\nHuman: Hi\n\nAssistant: Hello!", "rejected": "\n\nHuman: Hi\n\nAssistant: Go away."},
    ],
    ids=["explicit-text", "explicit-messages", "implicit-messages", "anthropic-hh"],
)
def test_every_accepted_format_gives_the_same_pair(record):
    pair = to_preference_pair(record, "x.jsonl:1")
    assert pair.prompt == (Message("user", "Hi"),)
    assert (pair.chosen, pair.rejected, pair.source) == ("Hello!", "Go away.", "x.jsonl:1")


def test_implicit_text_prompt_is_the_shared_prefix_at_a_word_boundary():
    pair = to_preference_pair({"chosen": "The sky is blue.", "rejected": "The sky is bleak."})
    assert pair.prompt == (Message("user", "The sky is"),)
    assert (pair.chosen, pair.rejected) == ("blue.", "bleak.")


def test_multi_turn_hh_keeps_earlier_turns_in_order():
    text = "\n\nHuman: a\n\nAssistant: b\n\nHuman: c\n\nAssistant: "
    pair = to_preference_pair({"chosen": text + "yes", "rejected": text + "no"})
    assert [m.role for m in pair.prompt] == ["user", "assistant", "user"]
    assert [m.content for m in pair.prompt] == ["a", "b", "c"]


def test_margin_is_kept_and_type_checked():
    assert to_preference_pair({"prompt": "p", "chosen": "a", "rejected": "b", "margin": 2}).margin == 2.0
    with pytest.raises(DataFormatError, match="field 'margin'"):
        to_preference_pair({"prompt": "p", "chosen": "a", "rejected": "b", "margin": "big"}, "f:3")


def test_jsonl_json_parquet_and_gzip_read_alike(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    records = [{"prompt": "q%d" % i, "chosen": "good", "rejected": "bad"} for i in range(3)]
    write_jsonl(tmp_path / "a.jsonl", records)
    (tmp_path / "a.json").write_text(json.dumps(records))
    pq.write_table(pa.Table.from_pylist(records), tmp_path / "a.parquet")
    with gzip.open(tmp_path / "a.jsonl.gz", "wt") as handle:
        handle.write("".join(json.dumps(r) + "\n" for r in records))
    results = [read_preference_pairs(tmp_path / name)[0] for name in ("a.jsonl", "a.json", "a.parquet", "a.jsonl.gz")]
    texts = [[(p.prompt, p.chosen) for p in pairs] for pairs in results]
    assert texts[0] == texts[1] == texts[2] == texts[3] and len(texts[0]) == 3
    assert results[2][1].source.endswith("a.parquet row 1")


def test_pairs_without_signal_are_dropped_and_counted(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [
        {"prompt": "p", "chosen": "same", "rejected": "same"},
        {"prompt": "p", "chosen": "", "rejected": "b"},
        {"prompt": "p", "chosen": "a", "rejected": "b"},
    ])
    pairs, report = read_preference_pairs(path)
    assert len(pairs) == 1 and report.total == 3 and report.dropped == 2
    assert "dropped 2 of 3 pairs" in report.summary() and "d.jsonl:1" in report.summary()


def test_malformed_json_names_the_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"prompt": "p", "chosen": "a", "rejected": "b"}\n{"prompt": "p", "chosen": \n')
    with pytest.raises(DataFormatError, match=r"bad.jsonl:2: malformed JSON"):
        read_preference_pairs(path)


def test_missing_field_lists_the_accepted_formats(tmp_path):
    path = write_jsonl(tmp_path / "m.jsonl", [{"prompt": "p", "answer": "a", "rejected": "b"}])
    with pytest.raises(DataFormatError) as info:
        read_preference_pairs(path)
    message = str(info.value)
    assert "m.jsonl:1" in message and "field 'chosen'" in message and "Anthropic HH" in message


def test_wrong_types_name_the_field(tmp_path):
    path = write_jsonl(tmp_path / "t.jsonl", [{"prompt": "p", "chosen": 3, "rejected": "b"}])
    with pytest.raises(DataFormatError, match=r"t.jsonl:1: field 'chosen': expected a string or a list of messages, got int"):
        read_preference_pairs(path)
    bad_msgs = {"prompt": [{"role": "robot", "content": "x"}], "chosen": "a", "rejected": "b"}
    with pytest.raises(DataFormatError, match="field 'prompt': message 0"):
        to_preference_pair(bad_msgs, "t:1")


def test_undecodable_bytes_name_the_line(tmp_path):
    path = tmp_path / "u.jsonl"
    path.write_bytes(b'{"prompt": "p", "chosen": "a", "rejected": "b"}\n{"prompt": "\xff\xfe"}\n')
    with pytest.raises(DataFormatError, match=r"u.jsonl:2: undecodable bytes"):
        read_preference_pairs(path)


def test_unknown_extension_and_missing_dataset_fail_clearly(tmp_path):
    (tmp_path / "x.csv").write_text("a,b\n")
    with pytest.raises(DataFormatError, match="unknown file type"):
        read_preference_pairs(tmp_path / "x.csv")


@requires_shared(HH_FILE)
def test_real_hh_harmless_reads_with_every_drop_accounted_for():
    pairs, report = read_preference_pairs(HH_FILE)
    assert report.total == 2312
    assert len(pairs) + report.dropped == 2312
    assert all(p.prompt and p.prompt[-1].role == "user" for p in pairs)
    assert report.dropped < 20
