"""Sampling replies from an in-memory causal LM (a policy being trained, its reference) and reading the sampled
tokens' log-probabilities back by teacher forcing: what evaluation, KL and labelling rounds of an RL run need.

Replies are sampled at temperature 1 with no top-p/top-k, so they are draws of the policy itself and the KL
estimators (:mod:`rewardlab.control`) apply to them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..data.templating import Prompt, as_messages

__all__ = ["SampledReply", "render_prompt", "reply_logprobs", "sample_replies"]


@dataclass(frozen=True)
class SampledReply:
    """One sampled reply: its text and token ids (up to and including the end-of-sequence token, if one came)."""

    prompt_index: int
    text: str
    prompt_ids: tuple[int, ...]
    reply_ids: tuple[int, ...]


def render_prompt(tokenizer: Any, prompt: Prompt) -> str:
    """The prompt as the policy sees it: its chat template with the generation prompt, else the plain turns."""
    messages = [m.as_dict() for m in as_messages(prompt)]
    if getattr(tokenizer, "chat_template", None):
        return str(tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True))
    return "".join(f"{m['content']}\n\n" for m in messages)


def _eos_ids(model: Any, tokenizer: Any) -> set[int]:
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids = set(configured if isinstance(configured, list) else [configured]) | {tokenizer.eos_token_id}
    ids.discard(None)
    return ids


def sample_replies(model: Any, tokenizer: Any, prompts: Sequence[Prompt], n: int, max_new_tokens: int, seed: int,
                   batch_size: int = 16) -> list[SampledReply]:
    """``n`` replies per prompt (prompt-major order: prompt 0's n replies first), reproducible for a ``seed``.

    Shapes: P prompts -> P * n replies. Generation runs in batches of ``batch_size`` sequences, left-padded.
    """
    import torch

    was_training = model.training
    model.eval()
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    eos = _eos_ids(model, tokenizer)
    encoded = [tokenizer(render_prompt(tokenizer, p), add_special_tokens=False)["input_ids"] for p in prompts]
    jobs = [(i, ids) for i, ids in enumerate(encoded) for _ in range(n)]
    out: list[SampledReply] = []
    device = next(model.parameters()).device
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        for start in range(0, len(jobs), batch_size):
            chunk = jobs[start:start + batch_size]
            width = max(len(ids) for _, ids in chunk)
            input_ids = torch.tensor([[pad] * (width - len(ids)) + list(ids) for _, ids in chunk], device=device)
            mask = torch.tensor([[0] * (width - len(ids)) + [1] * len(ids) for _, ids in chunk], device=device)
            with torch.inference_mode():
                generated = model.generate(input_ids=input_ids, attention_mask=mask, do_sample=True, temperature=1.0,
                                           top_p=1.0, top_k=0, max_new_tokens=max_new_tokens, pad_token_id=pad)
            for (index, ids), row in zip(chunk, generated[:, width:].tolist()):
                end = next((t + 1 for t, tok in enumerate(row) if tok in eos), len(row))
                reply = tuple(row[:end])
                out.append(SampledReply(index, tokenizer.decode(reply, skip_special_tokens=True), tuple(ids), reply))
    finally:
        torch.random.set_rng_state(generator_state)
        model.train(was_training)
    return out


def reply_logprobs(model: Any, replies: Sequence[SampledReply], pad_token_id: int, batch_size: int = 16) -> list[list[float]]:
    """Per reply token ``log p(token | prompt, earlier reply tokens)`` under ``model`` (teacher forcing, fp32 softmax).

    Shapes: N replies -> N lists, one float per reply token.
    """
    import torch

    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    out: list[list[float]] = []
    try:
        for start in range(0, len(replies), batch_size):
            chunk = replies[start:start + batch_size]
            seqs = [list(r.prompt_ids) + list(r.reply_ids) for r in chunk]
            width = max(len(s) for s in seqs)
            ids = torch.tensor([s + [pad_token_id] * (width - len(s)) for s in seqs], device=device)
            mask = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in seqs], device=device)
            with torch.inference_mode():
                logps = torch.log_softmax(model(input_ids=ids, attention_mask=mask).logits[:, :-1].float(), -1)
                logps = logps.gather(-1, ids[:, 1:, None]).squeeze(-1).cpu()
            for row, r in enumerate(chunk):
                first = len(r.prompt_ids) - 1  # logits at position t predict token t + 1
                out.append(logps[row, first:first + len(r.reply_ids)].tolist())
    finally:
        model.train(was_training)
    return out
