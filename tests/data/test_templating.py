import pytest
from transformers import AutoTokenizer

from rewardlab.data.records import Message
from rewardlab.data.templating import render, tokenize_conversation
from rewardlab.models.io import resolve_model_source

PROMPT = (Message("user", "one two three four five six seven eight nine ten"), Message("assistant", "ok"),
          Message("user", "final question"))


@pytest.fixture(scope="module")
def bert_tokenizer():
    return AutoTokenizer.from_pretrained(resolve_model_source("builtin:minilm")[0])


def test_plain_format_marks_the_prompt_boundary():
    text, boundary = render(None, PROMPT, "the answer")
    assert text[boundary:] == "the answer"
    assert text.startswith("Human: one two")


def test_chat_template_boundary(tiny_llama_dir):
    tokenizer = AutoTokenizer.from_pretrained(tiny_llama_dir)
    text, boundary = render(tokenizer, PROMPT, "the answer")
    assert text[boundary:] == "the answer<|im_end|>"
    assert text[:boundary].endswith("<|im_start|>assistant\n")


def test_short_text_is_untouched(bert_tokenizer):
    ids = tokenize_conversation(bert_tokenizer, PROMPT, "the answer", max_length=512)
    assert ids == bert_tokenizer(render(None, PROMPT, "the answer")[0])["input_ids"]


def test_prompt_is_cut_from_the_left_and_response_kept_whole(bert_tokenizer):
    full = tokenize_conversation(bert_tokenizer, PROMPT, "the answer is here", max_length=512)
    cut = tokenize_conversation(bert_tokenizer, PROMPT, "the answer is here", max_length=20)
    assert len(cut) == 20
    assert cut[0] == bert_tokenizer.cls_token_id  # leading special token kept
    assert cut[1:] == full[len(full) - 19:]  # the tail, i.e. the whole response, is intact
    decoded = bert_tokenizer.decode(cut, skip_special_tokens=True)
    assert decoded.endswith("the answer is here") and not decoded.startswith("human : one")


def test_response_that_cannot_fit_returns_none(bert_tokenizer):
    assert tokenize_conversation(bert_tokenizer, PROMPT, "word " * 40, max_length=20) is None


@pytest.mark.parametrize("max_length", [12, 16, 25, 40])
def test_truncated_length_never_exceeds_budget(bert_tokenizer, max_length):
    for response in ["a", "short reply", "a somewhat longer reply with more words"]:
        ids = tokenize_conversation(bert_tokenizer, PROMPT, response, max_length)
        assert ids is None or len(ids) <= max_length
