"""Packed and prefix-shared forward passes give the rewards (and gradients) of the plain padded pass."""

import pytest
import torch

from rewardlab.data.collate import Example, collate_examples, pack_examples
from rewardlab.models.io import build_reward_model
from rewardlab.models.reward_model import RewardModel

PROMPT = "<|im_start|>user\nTell me about bees and honey, please.<|im_end|>"


def _examples(tokenizer):
    """Pairs sharing a prompt, one reply a prefix of the other, a one-sequence group, a 3-way group."""
    enc = lambda text: tuple(tokenizer(text, add_special_tokens=False)["input_ids"])  # noqa: E731
    return [
        Example((enc(PROMPT + "Bees make honey."), enc(PROMPT + "Bees are insects that sting."))),
        Example((enc(PROMPT + "Bees"), enc(PROMPT + "Bees make honey and wax."))),
        Example((enc("An unconditional reply with no prompt at all."),)),
        Example((enc("Rain falls."), enc("Rain falls from clouds."), enc("Snow."))),
    ]


def _padded(model, examples, pad_id):
    batch = collate_examples(examples, pad_id)
    return model(batch["input_ids"], batch["attention_mask"])


def _loud_head(model):
    """A head with unit-scale weights: random 0.02-scale heads give ~1e-2 rewards, whose errors hide under 1e-4."""
    head = getattr(model.hf_model, "score", None) or model.hf_model.classifier
    torch.manual_seed(1)
    with torch.no_grad():
        head.weight.normal_(0.0, 1.0)
    return model


def _packed(model, examples, share_prefix):
    causal = model.pooling == "last_token"
    ids, layout = pack_examples(examples, causal=causal, share_prefix=share_prefix and causal,
                                readout="last" if causal else "first")
    return model(ids, layout=layout), ids


def _tiny(kind):
    from transformers import (AutoTokenizer, BertConfig, BertForSequenceClassification, GPT2Config,
                              GPT2ForSequenceClassification, Qwen2Config, Qwen2ForSequenceClassification)

    from rewardlab.models.io import resolve_model_source

    tokenizer = AutoTokenizer.from_pretrained(resolve_model_source("builtin:minilm")[0])
    torch.manual_seed(0)
    common = dict(vocab_size=tokenizer.vocab_size, num_labels=1, pad_token_id=tokenizer.pad_token_id)
    if kind == "gpt2":
        hf = GPT2ForSequenceClassification(GPT2Config(n_embd=32, n_layer=2, n_head=4, **common))
    elif kind == "qwen2":  # grouped-query attention, 4 query heads over 2 K/V heads
        hf = Qwen2ForSequenceClassification(Qwen2Config(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                                        num_attention_heads=4, num_key_value_heads=2, **common))
    else:
        hf = BertForSequenceClassification(BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                                      intermediate_size=64, **common))
    return RewardModel(hf), tokenizer


@pytest.mark.parametrize("fixture", ["tiny_llama_dir", "tiny_bert_dir"])
@pytest.mark.parametrize("share_prefix", [False, True])
def test_packed_rewards_equal_padded_rewards(fixture, share_prefix, request):
    model, tokenizer = build_reward_model(str(request.getfixturevalue(fixture)))
    _loud_head(model).eval()  # the tiny BERT has dropout 0.1
    assert model.packing_unsupported_reason() is None
    examples = _examples(tokenizer)
    with torch.no_grad():
        plain = _padded(model, examples, tokenizer.pad_token_id)
        packed, ids = _packed(model, examples, share_prefix)
    assert packed.shape == plain.shape
    assert plain.std() > 0.1  # rewards far enough apart that a 1e-4 tolerance means something
    assert (packed - plain).abs().max() < 1e-4
    total = sum(len(s) for e in examples for s in e.sequences)
    if share_prefix and model.pooling == "last_token":
        assert ids.shape[1] < total  # the shared prompts were stored once
    else:
        assert ids.shape[1] == total  # padding-free: exactly the real tokens


@pytest.mark.parametrize("kind", ["gpt2", "qwen2", "bert"])
def test_packed_equals_padded_on_other_families(kind):
    model, tokenizer = _tiny(kind)
    _loud_head(model).eval()
    assert model.packing_unsupported_reason() is None
    examples = _examples(tokenizer)
    with torch.no_grad():
        plain = _padded(model, examples, tokenizer.pad_token_id)
        assert plain.std() > 0.1
        for share in (False, True):
            packed, _ = _packed(model, examples, share)
            assert (packed - plain).abs().max() < 1e-4, (kind, share)


@pytest.mark.parametrize("fixture", ["tiny_llama_dir", "tiny_bert_dir"])
def test_packed_gradients_equal_padded_gradients(fixture, request):
    model, tokenizer = build_reward_model(str(request.getfixturevalue(fixture)))
    model.eval()
    examples = _examples(tokenizer)[:2]

    def grads(fn):
        model.zero_grad()
        rewards = fn()
        torch.nn.functional.logsigmoid(rewards[0::2] - rewards[1::2]).sum().backward()
        return torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])

    plain = grads(lambda: _padded(model, examples, tokenizer.pad_token_id))
    packed = grads(lambda: _packed(model, examples, True)[0])
    assert (packed - plain).abs().max() < 1e-4 * max(1.0, plain.abs().max().item())


def test_bf16_packed_rewards_track_fp32(tiny_llama_dir):
    model, tokenizer = build_reward_model(str(tiny_llama_dir))
    model.eval()
    examples = _examples(tokenizer)
    with torch.no_grad():
        plain = _padded(model, examples, tokenizer.pad_token_id)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            packed, _ = _packed(model, examples, True)
    assert (packed.float() - plain).abs().max() < 0.05  # the explicit-softmax bf16 kernel is used here


@pytest.mark.parametrize("kind", ["bert", "qwen2"])
def test_bf16_weights_packed_with_a_long_segment(kind):
    """bf16 weights (``load_reward_model(precision='bf16')``), one segment over the explicit kernel's
    limit: the long segment takes the fp32 flash kernel and must hand back bf16 (a float32 output
    broke the next bf16 linear layer)."""
    from rewardlab.models.packing import EXPLICIT_MAX_SCORES

    model, _ = _tiny(kind)
    long = int(EXPLICIT_MAX_SCORES**0.5) + 8
    examples = [Example((tuple(range(5, 5 + long)),)), Example((tuple(range(7, 27)), tuple(range(9, 40))))]
    with torch.no_grad():
        plain = _padded(model.eval(), examples, 0)
        packed, _ = _packed(model.to(torch.bfloat16), examples, False)
    assert packed.dtype == torch.bfloat16
    assert (packed.float() - plain).abs().max() < 0.05 * max(1.0, plain.abs().max().item())


def test_bert_last_block_runs_only_at_the_cls_rows(tiny_bert_dir):
    from rewardlab.models.packing import _bert_blocks

    model, tokenizer = build_reward_model(str(tiny_bert_dir))
    blocks = _bert_blocks(model.hf_model)
    assert blocks is not None  # BERT's layout is recognised, so the shortcut is really taken
    rows = []
    hook = blocks[-1].intermediate.register_forward_hook(lambda mod, args, out: rows.append(args[0].shape[-2]))
    examples = _examples(tokenizer)
    with torch.no_grad():
        _packed(model.eval(), examples, False)
        _padded(model, examples, tokenizer.pad_token_id)
    hook.remove()
    sequences = sum(len(e.sequences) for e in examples)
    assert rows[0] == sequences  # packed: the feed-forward saw one row per sequence, not every token
    assert rows[1] > 1  # padded: the full pass, every position


@pytest.mark.parametrize(("causal", "n_q", "n_k"), [(False, 5, 5), (True, 6, 6), (True, 4, 7)])
def test_short_segment_attention_gradients_are_exact(causal, n_q, n_k):
    from rewardlab.models.packing import _ShortAttention

    torch.manual_seed(0)
    q, k, v = (torch.randn(1, 2, n, 3, dtype=torch.float64, requires_grad=True) for n in (n_q, n_k, n_k))
    mask = torch.ones(n_q, n_k, dtype=torch.bool).tril(n_k - n_q) if causal else None  # a reply after its prompt
    assert torch.autograd.gradcheck(lambda q, k, v: _ShortAttention.apply(q, k, v, mask, 0.7), (q, k, v))
    reference = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=0.7)
    assert torch.allclose(_ShortAttention.apply(q, k, v, mask, 0.7), reference)


def test_bf16_packed_gradients_track_fp32(tiny_llama_dir):
    model, tokenizer = build_reward_model(str(tiny_llama_dir))
    examples = _examples(tokenizer)

    def grads(precision):
        model.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            rewards, _ = _packed(model, examples, True)
        rewards.float().sum().backward()
        return torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])

    exact, low = grads("fp32"), grads("bf16")
    assert torch.nn.functional.cosine_similarity(exact, low, dim=0) > 0.99


@pytest.mark.parametrize("kind", ["distilbert", "roberta"])
def test_unsupported_heads_are_named(kind):
    from transformers import (DistilBertConfig, DistilBertForSequenceClassification, RobertaConfig,
                              RobertaForSequenceClassification)

    if kind == "distilbert":
        hf = DistilBertForSequenceClassification(DistilBertConfig(dim=32, n_layers=1, n_heads=4, hidden_dim=64, num_labels=1))
    else:  # RoBERTa numbers positions from padding_idx + 1, which a packed row would get wrong
        hf = RobertaForSequenceClassification(RobertaConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                                                            intermediate_size=64, num_labels=1))
    reason = RewardModel(hf).packing_unsupported_reason()
    assert reason is not None and type(hf).__name__ in reason


def test_prefix_is_never_the_whole_sequence():
    # One reply is the other's prefix: each keeps its last token as its own segment to read from.
    _, layout = pack_examples([Example(((1, 2, 3), (1, 2, 3, 4)))], causal=True, share_prefix=True, readout="last")
    assert layout.readout.tolist() == [2, 4] and layout.segments[0].end == 2


def test_cuda_attention_leaves_out_cudnn(tiny_llama_dir, monkeypatch):
    """cuDNN builds a plan per new shape (the H200 run trained at 4 pairs/s); checked without a GPU:
    the context switches the backend flags, and every attention call (packed or padded) enters it."""
    import contextlib

    from rewardlab.models import packing

    with packing._gpu_kernels(torch.device("cuda")):
        assert not torch.backends.cuda.cudnn_sdp_enabled()
        assert torch.backends.cuda.flash_sdp_enabled() and torch.backends.cuda.mem_efficient_sdp_enabled()
    with packing._gpu_kernels(torch.device("cpu")):
        assert torch.backends.cuda.cudnn_sdp_enabled()  # CPUs: nothing changed
    entered = []
    monkeypatch.setattr(packing, "_gpu_kernels", lambda device: entered.append(device.type) or contextlib.nullcontext())
    model, tokenizer = build_reward_model(str(tiny_llama_dir))
    examples = _examples(tokenizer)
    with torch.no_grad():
        _packed(model.eval(), examples, True)
        packed_calls = len(entered)
        _padded(model, examples, tokenizer.pad_token_id)
    assert packed_calls == model.hf_model.config.num_hidden_layers  # one per layer
    assert len(entered) == 2 * packed_calls and set(entered) == {"cpu"}
