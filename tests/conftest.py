"""Shared fixtures: tiny models built from configs here, real shipped weights, shared data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
HH_FILE = SHARED_DATA / "hh-rlhf-harmless" / "harmless-base-test.jsonl.gz"

CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def pytest_configure(config):
    import os
    import tempfile

    # The token cache goes to a throw-away folder, never the user's ~/.cache.
    os.environ["REWARDLAB_CACHE"] = tempfile.mkdtemp(prefix="rewardlab-test-cache-")
    # A fixed thread count: "auto" drops to 1 thread on a busy machine, and tests compare runs bit for bit.
    import torch

    os.environ.setdefault("REWARDLAB_CPU_THREADS", str(torch.get_num_threads()))
    if config.getoption("--optimizations") == "off":  # process-wide: glibc's allocator left as it is
        os.environ["REWARDLAB_CPU_ALLOCATOR"] = "default"


def pytest_addoption(parser):
    parser.addoption("--optimizations", choices=["on", "off"], default="on",
                     help="'off' trains with the plain path: padded batches, no prefix sharing, dropout kept, fp32, no checkpointing, "
                          "tokenization in memory, glibc's default allocator "
                          "(the speed options' defaults are switched off; every test must pass both ways)")


@pytest.fixture(autouse=True)
def _training_speed_options(request, monkeypatch):
    if request.config.getoption("--optimizations") == "on":
        return
    import dataclasses

    from rewardlab.training.config import TrainConfig

    plain = {"layout": "padded", "share_prefix": False, "disable_dropout": False, "precision": "fp32", "token_cache": "off",
             "gradient_checkpointing": False}
    fields = [f for f in dataclasses.fields(TrainConfig) if f.default is not dataclasses.MISSING]
    defaults = tuple(plain.get(f.name, f.default) for f in fields)
    assert len(defaults) == len(TrainConfig.__init__.__defaults__)
    monkeypatch.setattr(TrainConfig.__init__, "__defaults__", defaults)


def requires_shared(path: Path):
    return pytest.mark.skipif(not path.exists(), reason=f"needs {path} (the project's shared data, absent here)")


def _tiny_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from rewardlab.data.demo import demo_pairs

    corpus = [p.prompt[0].content + " " + p.chosen + " " + p.rejected for p in demo_pairs("train", 300)]
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<unk>", "<|im_start|>", "<|im_end|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus, trainer)
    # Llama-style trap: the pad token is the EOS token, which also ends every chat turn.
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<|im_start|>",
                                   eos_token="<|im_end|>", pad_token="<|im_end|>", chat_template=CHATML)


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory) -> Path:
    """A randomly initialised 2-layer Llama causal LM folder whose pad token equals EOS."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    out = tmp_path_factory.mktemp("tiny-llama")
    tokenizer = _tiny_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
        pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id, bos_token_id=tokenizer.bos_token_id,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_rm_dir(tiny_llama_dir, tmp_path_factory) -> Path:
    """A reward-model folder (the tiny Llama with a fresh score head, max_length 128), as rewardlab saves one."""
    from rewardlab.models.io import RewardModelMetadata, build_reward_model, save_pretrained

    folder = tmp_path_factory.mktemp("tiny-rm") / "rm"
    model, tok = build_reward_model(str(tiny_llama_dir))
    save_pretrained(model, tok, RewardModelMetadata(pooling=model.pooling, max_length=128), folder)
    return folder


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory) -> Path:
    """A randomly initialised 2-layer BERT with MiniLM's real tokenizer and dropout 0.1."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    from rewardlab.models.io import resolve_model_source

    out = tmp_path_factory.mktemp("tiny-bert")
    tokenizer = AutoTokenizer.from_pretrained(resolve_model_source("builtin:minilm")[0])
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=64, hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1)
    torch.manual_seed(0)
    BertModel(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


@pytest.fixture
def demo_jsonl(tmp_path) -> Path:
    from rewardlab.data.demo import demo_pairs

    records = [{"prompt": p.prompt[0].content, "chosen": p.chosen, "rejected": p.rejected} for p in demo_pairs("train", 96)]
    return write_jsonl(tmp_path / "pairs.jsonl", records)
