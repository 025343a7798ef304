"""Generators that continue a partial solution: a local Hugging Face causal LM, or an
OpenAI-compatible chat endpoint. Both satisfy :class:`Generator`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

from ..data.records import Message

__all__ = ["ChatEndpointGenerator", "Generator", "LocalHFGenerator"]


@runtime_checkable
class Generator(Protocol):
    """``continue_solution(prompt, prefix, n, max_new_tokens, stop) -> n continuations`` of ``prefix``."""

    def continue_solution(self, prompt: Sequence[Message], prefix: str, n: int, max_new_tokens: int = 256,
                          stop: str | None = None, seed: int | None = None) -> list[str]: ...


def _cut(text: str, stop: str | None) -> str:
    if stop and stop in text:
        return text[: text.index(stop)]
    return text


class LocalHFGenerator:
    """Batched sampling (``num_return_sequences=n``) from a local causal LM, e.g. ``builtin:smollm2``."""

    def __init__(self, model: str, temperature: float = 0.7, top_p: float = 0.95, seed: int = 0, device: str | None = None):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from ..models.io import resolve_model_source

        path, extra = resolve_model_source(model)
        self.tokenizer = AutoTokenizer.from_pretrained(path, **extra)
        self.lm = AutoModelForCausalLM.from_pretrained(path, **extra).eval()
        if device:
            self.lm.to(device)
        self.temperature, self.top_p, self.seed = temperature, top_p, seed
        self.calls = 0

    def continue_solution(self, prompt: Sequence[Message], prefix: str, n: int, max_new_tokens: int = 256,
                          stop: str | None = None, seed: int | None = None) -> list[str]:
        """``n`` sampled continuations; ``seed`` fixes this call's draws (default: the generator's seed + call count)."""
        import torch

        self.calls += 1
        messages = [m.as_dict() for m in prompt]
        if getattr(self.tokenizer, "chat_template", None):
            head = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        else:
            head = "".join(f"{m['content']}\n\n" for m in messages)
        ids = self.tokenizer(head + prefix, return_tensors="pt", add_special_tokens=False)["input_ids"].to(self.lm.device)
        torch.manual_seed(self.seed + self.calls if seed is None else seed)  # reproducible runs, different draws per call
        with torch.inference_mode():
            out = self.lm.generate(ids, attention_mask=torch.ones_like(ids), do_sample=True, temperature=self.temperature,
                                   top_p=self.top_p, max_new_tokens=max_new_tokens, num_return_sequences=n,
                                   pad_token_id=self.tokenizer.pad_token_id or self.tokenizer.eos_token_id)
        return [_cut(self.tokenizer.decode(row[ids.shape[1]:], skip_special_tokens=True), stop) for row in out]


class ChatEndpointGenerator:
    """Continuations from an OpenAI-compatible chat endpoint (vLLM, llama.cpp server, hosted APIs).

    The partial solution is sent as the start of the assistant turn with an instruction to
    continue it; ``n`` samples are ``n`` calls at ``temperature``.
    """

    def __init__(self, client: Any, temperature: float = 0.7, concurrency: int = 4):
        self.client, self.temperature, self.concurrency = client, temperature, concurrency

    def continue_solution(self, prompt: Sequence[Message], prefix: str, n: int, max_new_tokens: int = 256,
                          stop: str | None = None, seed: int | None = None) -> list[str]:
        """``n`` continuations from the endpoint: one request with ``n`` when the client can ask for several (vLLM,
        SGLang, OpenAI), else one request each; ``seed`` is accepted for the interface, but the endpoint's sampling is
        not seeded (few servers honour it)."""
        messages = [m.as_dict() for m in prompt]
        if prefix:
            messages[-1] = {"role": "user", "content": messages[-1]["content"] + "\n\nContinue this partial solution "
                            "step by step and give the final answer:\n" + prefix}
        from ..judges.clients import OpenAIChatClient

        if isinstance(self.client, OpenAIChatClient):
            replies = self.client.complete_many(messages, n, temperature=self.temperature, max_tokens=max_new_tokens,
                                                concurrency=self.concurrency)
            return [_cut(r.text, stop) for r in replies]
        return [_cut(self.client.complete(messages, temperature=self.temperature, max_tokens=max_new_tokens).text, stop)
                for _ in range(n)]
