"""Padding-free forward passes: per-segment attention for packed rows (see ``data.collate.pack_examples``).

The packed row goes through the backbone as one ``(1, T)`` sequence, so every linear layer
sees only real tokens; attention is computed segment by segment, so no token attends across
sequences and no work is spent on padding. The kernel is registered with transformers'
``AttentionInterface``; a model that has run packed keeps it as its attention implementation,
and it behaves exactly like ``sdpa`` for ordinary padded calls (no ``rewardlab_layout``
argument), so evaluation, gradient-checkpoint recomputation and scoring all work. Transformers
never saves the attention implementation into ``config.json``, so saved models are untouched.

Kernel choice (measured on this project's CPU, benchmarks/bench_train.py): fp32 uses
``scaled_dot_product_attention`` per segment (the same kernel as the padded path, so rewards
agree to 1e-6); bf16 uses explicit ``softmax(q k^T / sqrt(d)) v`` (``_ShortAttention``, which
keeps only the bf16 probabilities for backward) for segments of at most ``EXPLICIT_MAX_SCORES``
(query, key) pairs, 2-3x faster than PyTorch's CPU flash kernel in bf16 at head sizes 32-64, and
the fp32 flash kernel for longer ones (its memory stays linear). On GPUs every segment goes to
``scaled_dot_product_attention`` in the inputs' dtype (CUDA's flash kernels take bf16, not fp32).
"""

from __future__ import annotations

import contextlib
import inspect
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from ..data.collate import Example, PackedLayout, pack_examples
from ..errors import ConfigError
from .hf import HFModel

__all__ = ["PACKED_ATTENTION", "choose_layout", "pack_for", "packed_attention", "packing_unsupported_reason", "run_packed"]

PACKED_ATTENTION = "rewardlab_packed"
EXPLICIT_MAX_SCORES = 256 * 256
"""bf16 without dropout: segments with at most this many (query, key) pairs use explicit softmax
attention (fast at short lengths, but it keeps a bf16 probability matrix for backward); longer ones
use the fp32 flash kernel, whose memory is linear in length."""


class _ShortAttention(torch.autograd.Function):
    """``softmax(q k^T * scale + mask) v`` for one short segment, keeping only the probabilities for backward.

    Shapes: q ``(1, H, Q, D)``, k/v ``(1, H, K, D)``, mask ``(Q, K)`` bool or None -> ``(1, H, Q, D)``.
    The softmax runs in fp32 and its result is stored once, in the inputs' dtype (bf16): the
    plain autograd graph would keep the fp32 probabilities, their bf16 copy and the mask (7 bytes
    per score instead of 2). Backward is the standard softmax-attention gradient
    (Vaswani et al. 2017, eq. 1): ``dV = P^T dO``, ``dP = dO V^T``, ``dS = P * (dP - rowsum(P * dP))``,
    ``dQ = dS K * scale``, ``dK = dS^T Q * scale``, with ``dS`` formed in fp32.
    """

    @staticmethod
    def forward(ctx: Any, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None, scale: float) -> torch.Tensor:
        scores = torch.matmul(q, k.transpose(-1, -2)) * scale
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        probs = scores.softmax(dim=-1, dtype=torch.promote_types(q.dtype, torch.float32)).to(q.dtype)
        ctx.save_for_backward(q, k, v, probs)
        ctx.scale = scale
        return torch.matmul(probs, v)

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, None, None]:
        q, k, v, probs = ctx.saved_tensors
        grad_v = torch.matmul(probs.transpose(-1, -2), grad_out)
        wide = torch.promote_types(q.dtype, torch.float32)
        grad_probs = torch.matmul(grad_out, v.transpose(-1, -2)).to(wide)
        p32 = probs.to(wide)
        grad_scores = (p32 * (grad_probs - (p32 * grad_probs).sum(dim=-1, keepdim=True))).to(q.dtype)
        grad_q = torch.matmul(grad_scores, k) * ctx.scale
        grad_k = torch.matmul(grad_scores.transpose(-1, -2), q) * ctx.scale
        return grad_q, grad_k, grad_v, None, None


def packed_attention(
    module: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, attention_mask: Any,
    dropout: float = 0.0, scaling: float | None = None, **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """Attention inside each segment of ``rewardlab_layout``. Shapes: q ``(1, H, T, D)``, k/v ``(1, H_kv, T, D)`` -> ``(1, T, H, D)``.

    Without ``rewardlab_layout`` this is transformers' ``sdpa`` attention, unchanged (on CUDA both
    run without SDPA's cuDNN backend, see ``_gpu_kernels``).
    """
    layout: PackedLayout | None = kwargs.pop("rewardlab_layout", None)
    with _gpu_kernels(query.device):
        if layout is None:
            from transformers.integrations.sdpa_attention import sdpa_attention_forward

            return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs)
        return _segment_attention(module, query, key, value, layout, dropout, scaling)


def _gpu_kernels(device: torch.device) -> Any:
    """On CUDA, SDPA without its cuDNN backend: torch >= 2.5 tries cuDNN first on Hopper and newer, and
    cuDNN builds an execution plan (~0.5 s forward + backward) for every new shape; packed segments
    and dynamically padded batches bring new shapes at every step. Flash / memory-efficient kernels
    need no plan. A no-op context elsewhere."""
    if device.type != "cuda":
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel([SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH])


def _segment_attention(
    module: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, layout: PackedLayout,
    dropout: float, scaling: float | None,
) -> tuple[torch.Tensor, None]:
    groups = query.shape[1] // key.shape[1]  # grouped-query attention: each K/V head serves `groups` query heads
    scale = scaling if scaling is not None else query.shape[-1] ** -0.5
    dropout = dropout if module.training else 0.0
    low_precision = query.dtype in (torch.bfloat16, torch.float16)
    on_cpu = query.device.type == "cpu"  # GPUs: bf16 flash / memory-efficient kernels for every segment
    # One split per tensor (its backward is one concatenation); slicing per segment would make
    # backward zero-fill a full-length gradient for every segment.
    sizes = [seg.end - seg.start for seg in layout.segments]
    queries, keys, values = (torch.split(t, sizes, dim=2) for t in (query, key, value))
    piece = {(seg.start, seg.end): i for i, seg in enumerate(layout.segments)}
    outputs = []
    for i, seg in enumerate(layout.segments):
        q = queries[i]
        if len(seg.keys) == 1:
            k, v = keys[i], values[i]
        else:  # a reply after its shared prompt
            k = torch.cat([keys[piece[r]] for r in seg.keys], dim=2)
            v = torch.cat([values[piece[r]] for r in seg.keys], dim=2)
        n_q, n_k = q.shape[2], k.shape[2]
        explicit = on_cpu and low_precision and dropout == 0.0 and n_q * n_k <= EXPLICIT_MAX_SCORES
        # Causal masks are bottom-right aligned (a reply after a shared prompt sees all of it); the
        # flash kernel needs none for a segment attending only to itself (is_causal skips the masked half).
        needs_mask = seg.causal and (explicit or n_q != n_k)
        mask = torch.ones(n_q, n_k, dtype=torch.bool, device=q.device).tril(n_k - n_q) if needs_mask else None
        if explicit:
            if groups > 1:
                k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)
            outputs.append(_ShortAttention.apply(q, k, v, mask, scale))
        else:  # fp32, long bf16 segments on CPU (fp32 flash keeps memory linear and beats bf16 flash there), dropout, GPUs
            kernel_dtype = torch.float32 if on_cpu else query.dtype
            out = F.scaled_dot_product_attention(q.to(kernel_dtype), k.to(kernel_dtype), v.to(kernel_dtype), attn_mask=mask,
                                                 dropout_p=dropout, is_causal=seg.causal and mask is None, scale=scale,
                                                 enable_gqa=groups > 1)
            outputs.append(out.to(query.dtype))
    return torch.cat(outputs, dim=2).transpose(1, 2).contiguous(), None


def _register() -> None:
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(PACKED_ATTENTION, packed_attention)
    # Padded calls get sdpa's masks; packed calls pass an all-ones mask, which sdpa_mask skips.
    AttentionMaskInterface.register(PACKED_ATTENTION, sdpa_mask)


def packing_unsupported_reason(hf_model: HFModel, pooling: str) -> str | None:
    """Why ``hf_model`` cannot run packed (``None`` when it can): the check behind ``layout='auto'``."""
    name = type(hf_model).__name__
    if not getattr(hf_model, "_supports_attention_backend", False):
        return f"{name} does not route attention through transformers' AttentionInterface"
    if hf_model.config._attn_implementation not in ("sdpa", PACKED_ATTENTION):
        return f"{name} uses '{hf_model.config._attn_implementation}' attention (packing builds on 'sdpa')"
    if "position_ids" not in inspect.signature(hf_model.base_model.forward).parameters:
        return f"{type(hf_model.base_model).__name__}.forward takes no position_ids"
    if pooling == "native":
        classifier = getattr(hf_model, "classifier", None)
        pooler = getattr(hf_model.base_model, "pooler", None)
        embeddings = getattr(hf_model.base_model, "embeddings", None)
        if getattr(embeddings, "padding_idx", None) is not None:  # RoBERTa family: positions start at padding_idx + 1
            return f"{name} numbers positions from its padding index"
        if isinstance(classifier, nn.Linear) and pooler is not None and isinstance(getattr(hf_model, "dropout", None), nn.Dropout):
            return None  # BERT-style: classifier(dropout(pooler(h[CLS])))
        return f"{name}'s classification head is not BERT's pooler + linear classifier"
    return None


def choose_layout(requested: str, unsupported_reason: str | None) -> str:
    """``packed`` or ``padded`` for a ``layout`` option of ``auto`` / ``packed`` / ``padded``.

    >>> choose_layout("auto", None), choose_layout("auto", "no position_ids"), choose_layout("padded", None)
    ('packed', 'padded', 'padded')
    """
    if requested == "padded":
        return "padded"
    if unsupported_reason is None:
        return "packed"
    if requested == "packed":
        raise ConfigError(f"option 'layout' is 'packed' but {unsupported_reason}; use layout='padded' or 'auto'")
    return "padded"


def pack_for(pooling: str | None, examples: list[Example], share_prefix: bool) -> tuple[torch.Tensor, PackedLayout]:
    """:func:`pack_examples` with what ``pooling`` implies: causal attention and last-token reads for
    decoders (prompt sharing allowed), bidirectional attention and [CLS] reads for encoders (never shared)."""
    causal = pooling == "last_token"
    return pack_examples(examples, causal=causal, share_prefix=share_prefix and causal, readout="last" if causal else "first")


def _native_head(hf_model: HFModel, first_token: torch.Tensor) -> torch.Tensor:
    """``(N, H)`` [CLS] states -> ``(N, K)`` logits, exactly as the model's own head computes them."""
    states = first_token[:, None]  # (N, 1, H): the pooler reads position 0 of a sequence
    return hf_model.classifier(hf_model.dropout(hf_model.base_model.pooler(states)))


def _bert_blocks(hf_model: HFModel) -> nn.ModuleList | None:
    """BERT's encoder blocks when the last one can be run for the [CLS] rows alone (else None)."""
    config, base = hf_model.config, hf_model.base_model
    blocks = getattr(getattr(base, "encoder", None), "layer", None)
    if not isinstance(blocks, nn.ModuleList) or not blocks or getattr(base, "embeddings", None) is None:
        return None
    last = blocks[-1]
    attention = getattr(getattr(last, "attention", None), "self", None)
    plain = (getattr(config, "position_embedding_type", "absolute") == "absolute" and not config.is_decoder
             and not getattr(config, "add_cross_attention", False))
    parts = all(isinstance(getattr(attention, n, None), nn.Linear) for n in ("query", "key", "value"))
    return blocks if plain and parts and hasattr(last, "feed_forward_chunk") and hasattr(last.attention, "output") else None


def _bert_readout_states(hf_model: HFModel, blocks: nn.ModuleList, input_ids: torch.Tensor, layout: PackedLayout) -> torch.Tensor:
    """``(1, T)`` packed ids -> ``(N, H)`` final hidden states at the [CLS] rows, computing the last
    block only where it is read: its keys and values come from every token of the segment, its query,
    output projection and feed-forward from the [CLS] token alone (the other T - N rows of the last
    block feed nothing). Exact: the same numbers as the full pass at those rows.
    """
    hidden = hf_model.base_model.embeddings(input_ids=input_ids, position_ids=layout.position_ids)
    for block in blocks[:-1]:
        hidden = block(hidden, None, rewardlab_layout=layout)
    last: Any = blocks[-1]  # a BertLayer (see _bert_blocks)
    attention = last.attention.self
    rows = layout.readout
    states = hidden[:, rows]  # (1, N, H)
    heads = (1, -1, attention.num_attention_heads, attention.attention_head_size)
    q = attention.query(states).view(heads).transpose(1, 2)  # (1, h, N, d)
    k, v = (proj(hidden).view(heads).transpose(1, 2) for proj in (attention.key, attention.value))  # (1, h, T, d)
    segment_of = torch.empty(hidden.shape[1], dtype=torch.long, device=hidden.device)
    for i, seg in enumerate(layout.segments):
        segment_of[seg.start : seg.end] = i
    mask = segment_of[None, :] == segment_of[rows][:, None]  # (N, T): each [CLS] sees its own sequence
    dropout = attention.dropout.p if attention.training else 0.0
    kernel_dtype = torch.float32 if q.device.type == "cpu" else q.dtype  # as in _segment_attention: fp32 flash on CPUs
    context = F.scaled_dot_product_attention(q.to(kernel_dtype), k.to(kernel_dtype), v.to(kernel_dtype), attn_mask=mask,
                                             dropout_p=dropout, scale=attention.scaling).to(q.dtype)
    context = context.transpose(1, 2).reshape(1, rows.shape[0], -1)
    return last.feed_forward_chunk(last.attention.output(context, states))[0]


def run_packed(hf_model: HFModel, pooling: str, input_ids: torch.Tensor, layout: PackedLayout) -> torch.Tensor:
    """Rewards of every packed sequence: ``(1, T)`` ids -> ``(N, K)`` logits, in ``layout.readout`` order."""
    if hf_model.config._attn_implementation != PACKED_ATTENTION:
        hf_model.config._attn_implementation = PACKED_ATTENTION  # sdpa plus the packed path; see the module doc
    if pooling == "native" and (blocks := _bert_blocks(hf_model)) is not None:
        return _native_head(hf_model, _bert_readout_states(hf_model, blocks, input_ids, layout))
    extra = {"use_cache": False} if pooling == "last_token" else {}
    hidden = hf_model.base_model(
        input_ids=input_ids, attention_mask=torch.ones_like(input_ids), position_ids=layout.position_ids,
        rewardlab_layout=layout, **extra,
    ).last_hidden_state[0]
    states = hidden[layout.readout]
    return hf_model.score(states) if pooling == "last_token" else _native_head(hf_model, states)


_register()
