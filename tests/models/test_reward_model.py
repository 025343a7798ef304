import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from rewardlab.data.collate import pad_sequences
from rewardlab.data.records import Message
from rewardlab.data.templating import tokenize_conversation
from rewardlab.models.io import RewardModelMetadata, build_reward_model, load_pretrained, save_pretrained
from rewardlab.models.pooling import last_token_index
from rewardlab.scoring import load_reward_model

TEXTS = [
    ((Message("user", "Tell me about bees."),), "Bees make honey."),
    ((Message("user", "In at most 7 words, tell me about chess."),), "Chess has sixty-four squares on its board, and more."),
    ((Message("user", "List three facts about rain."),), "- Rain falls.\n- Rain fills rivers.\n- Rainbows."),
    ((), "An unconditional reply."),
]


def _ids(tokenizer):
    return [tokenize_conversation(tokenizer, p, r, 256) for p, r in TEXTS]


def _rewards(model, seqs, pad_id, side):
    ids, mask = pad_sequences(seqs, pad_id, side)
    with torch.inference_mode():
        return model(ids, mask)


def test_last_token_index_property():
    torch.manual_seed(0)
    for _ in range(20):
        lengths = torch.randint(1, 9, (5,))
        right = (torch.arange(8) < lengths[:, None]).long()
        left = right.flip(-1)
        assert torch.equal(last_token_index(right), lengths - 1)
        assert torch.equal(last_token_index(left), torch.full((5,), 7))


@pytest.mark.parametrize("fixture", ["tiny_llama_dir", "tiny_bert_dir"])
def test_padding_side_and_batch_composition_do_not_change_rewards(fixture, request):
    model, tokenizer = build_reward_model(str(request.getfixturevalue(fixture)))
    model.eval()
    seqs = _ids(tokenizer)
    alone = torch.stack([_rewards(model, [s], tokenizer.pad_token_id, "right")[0] for s in seqs])
    right = _rewards(model, seqs, tokenizer.pad_token_id, "right")
    assert (right - alone).abs().max() < 1e-5
    reversed_batch = _rewards(model, seqs[::-1], tokenizer.pad_token_id, "right").flip(0)
    assert (reversed_batch - alone).abs().max() < 1e-5
    if model.pooling == "last_token":  # encoders read [CLS] at position 0 and are padded on the right
        left = _rewards(model, seqs, tokenizer.pad_token_id, "left")
        assert (left - alone).abs().max() < 1e-5


def test_llama_with_pad_equal_eos_gets_a_dedicated_pad_token(tiny_llama_dir):
    raw = AutoTokenizer.from_pretrained(tiny_llama_dir)
    assert raw.pad_token_id == raw.eos_token_id  # the trap this test is about
    model, tokenizer = build_reward_model(str(tiny_llama_dir))
    assert tokenizer.pad_token_id not in (tokenizer.eos_token_id, tokenizer.bos_token_id)
    assert model.hf_model.config.pad_token_id == tokenizer.pad_token_id
    assert model.hf_model.get_input_embeddings().weight.shape[0] >= len(tokenizer)
    # Every rendered conversation ends with EOS (<|im_end|>): the last real token is the old pad.
    assert _ids(tokenizer)[0][-1] == tokenizer.eos_token_id


@pytest.mark.parametrize("fixture", ["tiny_llama_dir", "tiny_bert_dir"])
def test_saved_folder_scores_identically_in_plain_transformers(fixture, request, tmp_path):
    model, tokenizer = build_reward_model(str(request.getfixturevalue(fixture)))
    torch.nn.init.normal_(next(p for n, p in model.named_parameters() if "score" in n or "classifier" in n), std=1.0)
    save_pretrained(model, tokenizer, RewardModelMetadata(pooling=model.pooling, max_length=256), tmp_path)
    scorer = load_reward_model(tmp_path)
    ours = torch.tensor(scorer.score([p for p, _ in TEXTS], [r for _, r in TEXTS]))

    plain = AutoModelForSequenceClassification.from_pretrained(tmp_path).eval()
    plain_tok = AutoTokenizer.from_pretrained(tmp_path)
    ids, mask = pad_sequences(_ids(plain_tok), plain_tok.pad_token_id, "right")
    with torch.inference_mode():
        theirs = plain(input_ids=ids, attention_mask=mask).logits.squeeze(-1)
    assert plain.config.num_labels == 1
    assert (ours - theirs).abs().max() < 1e-4
    assert ours.std() > 1e-3  # a real, non-constant head


def test_folder_written_by_another_tool_loads_and_scores(tiny_bert_dir, tmp_path):
    # What TRL's RewardTrainer saves: a plain AutoModelForSequenceClassification folder, no rewardlab.json.
    hf = AutoModelForSequenceClassification.from_pretrained(tiny_bert_dir, num_labels=1)
    hf.save_pretrained(tmp_path)
    AutoTokenizer.from_pretrained(tiny_bert_dir).save_pretrained(tmp_path)
    model, tokenizer, metadata = load_pretrained(tmp_path)
    assert metadata.written_by == "inferred" and metadata.pooling == "native"
    scorer = load_reward_model(tmp_path)
    rewards = scorer.score([p for p, _ in TEXTS], [r for _, r in TEXTS])
    ids, mask = pad_sequences(_ids(tokenizer), tokenizer.pad_token_id)
    with torch.inference_mode():
        expected = hf.eval()(input_ids=ids, attention_mask=mask).logits.squeeze(-1)
    assert torch.allclose(torch.tensor(rewards), expected, atol=1e-5)


def test_real_minilm_weights_roundtrip(tmp_path):
    model, tokenizer = build_reward_model("builtin:minilm")
    assert model.pooling == "native"
    save_pretrained(model, tokenizer, RewardModelMetadata(pooling="native", max_length=128), tmp_path)
    scorer = load_reward_model(tmp_path)
    plain = AutoModelForSequenceClassification.from_pretrained(tmp_path).eval()
    ids, mask = pad_sequences(_ids(scorer.tokenizer), scorer.tokenizer.pad_token_id)
    with torch.inference_mode():
        theirs = plain(input_ids=ids, attention_mask=mask).logits.squeeze(-1)
    ours = torch.tensor(scorer.score([p for p, _ in TEXTS], [r for _, r in TEXTS]))
    assert (ours - theirs).abs().max() < 1e-4


def test_missing_folder_is_a_typed_error(tmp_path):
    from rewardlab.errors import CheckpointError

    with pytest.raises(CheckpointError, match="no such reward model folder"):
        load_pretrained(tmp_path / "nope")


@pytest.mark.slow
def test_real_smollm2_reward_model_saves_and_matches_plain_transformers(tmp_path):
    # SmolLM2 ships as GGUF (dequantized on load), pads with EOS and ends chat turns with it.
    model, tokenizer = build_reward_model("builtin:smollm2")
    assert tokenizer.pad_token_id not in (tokenizer.eos_token_id, tokenizer.bos_token_id)
    torch.nn.init.normal_(model.hf_model.score.weight, std=0.02)
    save_pretrained(model, tokenizer, RewardModelMetadata(pooling=model.pooling, max_length=256), tmp_path)
    scorer = load_reward_model(tmp_path)
    ours = torch.tensor(scorer.score([p for p, _ in TEXTS], [r for _, r in TEXTS]))
    plain = AutoModelForSequenceClassification.from_pretrained(tmp_path).eval()
    ids, mask = pad_sequences(_ids(scorer.tokenizer), scorer.tokenizer.pad_token_id, "right")
    with torch.inference_mode():
        theirs = plain(input_ids=ids, attention_mask=mask).logits.squeeze(-1)
    assert (ours - theirs).abs().max() < 1e-4


def test_chat_template_is_saved_where_old_and_new_transformers_read_it(tiny_llama_dir, tmp_path):
    import json

    from rewardlab.models.io import RewardModelMetadata, build_reward_model, save_pretrained

    model, tok = build_reward_model(str(tiny_llama_dir))
    save_pretrained(model, tok, RewardModelMetadata(pooling=model.pooling), tmp_path / "rm")
    config = json.loads((tmp_path / "rm" / "tokenizer_config.json").read_text())
    assert config["chat_template"] == tok.chat_template  # transformers < 4.43 and JSON readers
    assert (tmp_path / "rm" / "chat_template.jinja").read_text().strip() == tok.chat_template.strip()


def test_a_max_length_beyond_the_position_embeddings_is_refused_up_front(tiny_bert_dir, tmp_path):
    import subprocess
    import sys

    from rewardlab.errors import ConfigError
    from rewardlab.models.io import RewardModelMetadata, build_reward_model, save_pretrained
    from rewardlab.scoring.local import load_reward_model

    model, tok = build_reward_model(str(tiny_bert_dir))
    save_pretrained(model, tok, RewardModelMetadata(pooling=model.pooling), tmp_path / "rm")
    limit = model.hf_model.config.max_position_embeddings
    with pytest.raises(ConfigError, match=f"max_length={limit * 2} is longer than the model's {limit} position embeddings"):
        load_reward_model(tmp_path / "rm", max_length=limit * 2)
    proc = subprocess.run([sys.executable, "-m", "rewardlab.cli", "score", "--model", str(tmp_path / "rm"), "--max-length",
                           str(limit * 2), "--data", "x.jsonl", "--output", str(tmp_path / "o.jsonl")], capture_output=True, text=True)
    assert proc.returncode == 2 and "position embeddings" in proc.stderr and "Traceback" not in proc.stderr


def test_incomplete_or_truncated_model_folders_are_refused(tiny_llama_dir, tmp_path, caplog):
    import shutil

    from rewardlab.errors import CheckpointError
    from rewardlab.models.io import RewardModelMetadata, build_reward_model, save_pretrained
    from rewardlab.scoring.local import load_reward_model

    model, tok = build_reward_model(str(tiny_llama_dir))
    save_pretrained(model, tok, RewardModelMetadata(pooling=model.pooling, max_length=128), tmp_path / "rm")
    no_tokenizer = tmp_path / "no_tok"
    shutil.copytree(tmp_path / "rm", no_tokenizer)
    (no_tokenizer / "tokenizer.json").unlink()
    with pytest.raises(CheckpointError, match="incomplete model folder: missing a tokenizer"):
        load_reward_model(no_tokenizer)
    cut = tmp_path / "cut"
    shutil.copytree(tmp_path / "rm", cut)
    weights = cut / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        load_reward_model(cut)
    guessed = tmp_path / "guessed"
    shutil.copytree(tmp_path / "rm", guessed)
    (guessed / "rewardlab.json").unlink()
    with caplog.at_level("WARNING"):
        load_reward_model(guessed)
    assert "no rewardlab.json; guessed its metadata" in caplog.text and "--max-length" in caplog.text
