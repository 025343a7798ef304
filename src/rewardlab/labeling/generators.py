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

        from ..models.io import check_model_source, resolve_model_source

        check_model_source(model, "generator model")
        path, extra = resolve_model_source(model)
        self.tokenizer: Any = AutoTokenizer.from_pretrained(path, **extra)  # typed loosely: decode() is typed str | list[str]
        self.lm = AutoModelForCausalLM.from_pretrained(path, **extra).eval()
        if device:
            self.lm.to(device)
        self.temperature, self.top_p, self.seed = temperature, top_p, seed
        self.calls = 0

    def _generate(self, prompt: Sequence[Message], prefix: str, n: int, max_new_tokens: int, seed: int | None,
                  logprobs: bool) -> tuple[Any, Any, Any]:
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
                                   pad_token_id=self.tokenizer.pad_token_id or self.tokenizer.eos_token_id,
                                   output_logits=logprobs, return_dict_in_generate=True)
        return ids, out.sequences, out.logits if logprobs else None

    def continue_solution(self, prompt: Sequence[Message], prefix: str, n: int, max_new_tokens: int = 256,
                          stop: str | None = None, seed: int | None = None) -> list[str]:
        """``n`` sampled continuations; ``seed`` fixes this call's draws (default: the generator's seed + call count)."""
        ids, sequences, _ = self._generate(prompt, prefix, n, max_new_tokens, seed, False)
        return [_cut(self.tokenizer.decode(row[ids.shape[1]:], skip_special_tokens=True), stop) for row in sequences]

    def sample_with_logprobs(self, prompt: Sequence[Message], n: int, max_new_tokens: int = 256,
                             seed: int | None = None) -> list[tuple[str, list[float]]]:
        """``n`` sampled replies with each generated token's log-probability under the model itself (raw logits,
        temperature 1, no top-p: ``log pi(y_t | x, y_<t)``), up to and including the end-of-sequence token; the same
        draws as :meth:`continue_solution` with the same seed. Shapes: n replies, each with one float per token."""
        import torch

        ids, sequences, logits = self._generate(prompt, "", n, max_new_tokens, seed, True)
        new = sequences[:, ids.shape[1]:]  # (n, T)
        # one step at a time: (n, vocab) each, never the (n, T, vocab) stack in fp32 again
        token_logps = torch.stack([step.float().log_softmax(-1).gather(-1, new[:, t, None]).squeeze(-1)
                                   for t, step in enumerate(logits)], dim=1)  # (n, T)
        configured = getattr(self.lm.generation_config, "eos_token_id", None)
        eos = set(configured if isinstance(configured, list) else [configured]) | {self.tokenizer.eos_token_id}
        eos.discard(None)
        out = []
        for row in range(new.shape[0]):
            tokens = new[row].tolist()
            end = next((t + 1 for t, tok in enumerate(tokens) if tok in eos), len(tokens))
            out.append((self.tokenizer.decode(new[row][:end], skip_special_tokens=True), token_logps[row, :end].tolist()))
        return out


class ChatEndpointGenerator:
    """Continuations from an OpenAI-compatible chat endpoint (vLLM, llama.cpp server, hosted APIs).

    The partial solution is sent in the user turn with an instruction to continue it; a prompt's ``n`` samples are
    one request with ``n`` when the client can ask for several (vLLM, SGLang, OpenAI), else one request each.
    """

    def __init__(self, client: Any, temperature: float = 0.7, concurrency: int = 4):
        self.client, self.temperature, self.concurrency = client, temperature, concurrency

    def _completions(self, messages: list[dict[str, str]], n: int, max_new_tokens: int, logprobs: bool) -> list[Any]:
        from ..judges.clients import OpenAIChatClient

        if isinstance(self.client, OpenAIChatClient):
            return self.client.complete_many(messages, n, temperature=self.temperature, max_tokens=max_new_tokens,
                                             logprobs=logprobs, concurrency=self.concurrency)
        return [self.client.complete(messages, temperature=self.temperature, max_tokens=max_new_tokens, logprobs=logprobs)
                for _ in range(n)]

    def continue_solution(self, prompt: Sequence[Message], prefix: str, n: int, max_new_tokens: int = 256,
                          stop: str | None = None, seed: int | None = None) -> list[str]:
        """``n`` continuations from the endpoint; ``seed`` is accepted for the interface, but the endpoint's sampling
        is not seeded (few servers honour it)."""
        messages = [m.as_dict() for m in prompt]
        if prefix:
            messages[-1] = {"role": "user", "content": messages[-1]["content"] + "\n\nContinue this partial solution "
                            "step by step and give the final answer:\n" + prefix}
        return [_cut(r.text, stop) for r in self._completions(messages, n, max_new_tokens, False)]

    def sample_with_logprobs(self, prompt: Sequence[Message], n: int, max_new_tokens: int = 256,
                             seed: int | None = None) -> list[tuple[str, list[float] | None]]:
        """``n`` replies with the per-token log-probs the server returns (None for a reply it returned without them);
        which distribution they are of (before or after temperature) is the server's choice, not checked here."""
        replies = self._completions([m.as_dict() for m in prompt], n, max_new_tokens, True)
        return [(r.text, list(r.token_logprobs) if r.token_logprobs else None) for r in replies]
