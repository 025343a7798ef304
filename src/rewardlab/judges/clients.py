"""Chat backends for judges, injected: an OpenAI-compatible HTTP client and a local Hugging Face LM.

Both satisfy :class:`ChatClient`; judges never import a vendor library. The HTTP client speaks
the ``/v1/chat/completions`` protocol (OpenAI, vLLM, llama.cpp server, ...) with the standard
library only: timeout, retries with exponential backoff on 429 and 5xx (honouring
``Retry-After``), and an API key read from an environment variable (never logged or stored).
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from ..errors import RewardlabError

__all__ = ["ChatClient", "ClientError", "Completion", "LocalHFClient", "OpenAIChatClient"]


class ClientError(RewardlabError, RuntimeError):
    """A backend call failed for good (retries exhausted, or a non-retryable HTTP status)."""


@dataclass(frozen=True)
class Completion:
    """One chat completion: the text, and per generated token its top alternatives when asked."""

    text: str
    model: str = ""
    tokens: tuple[str, ...] = ()
    top_logprobs: tuple[dict[str, float], ...] = ()
    usage: dict[str, int] = field(default_factory=dict)


@runtime_checkable
class ChatClient(Protocol):
    """``complete(messages, temperature=..., max_tokens=..., logprobs=...) -> Completion``; ``model`` names it."""

    model: str

    def complete(self, messages: Sequence[dict[str, str]], temperature: float = 0.0, max_tokens: int = 512,
                 logprobs: bool = False) -> Completion: ...


class OpenAIChatClient:
    """A client for any OpenAI-compatible chat endpoint (``base_url`` ending in ``/v1``)."""

    def __init__(self, base_url: str, model: str, api_key_env: str | None = "OPENAI_API_KEY", timeout: float = 60.0,
                 max_retries: int = 5, backoff_seconds: float = 1.0, max_backoff_seconds: float = 60.0):
        self.base_url = base_url.rstrip("/")
        self.model = model
        self._api_key_env = api_key_env
        self.timeout, self.max_retries = timeout, max_retries
        self.backoff_seconds, self.max_backoff_seconds = backoff_seconds, max_backoff_seconds
        self.calls = 0  # HTTP requests sent, retries included

    def __repr__(self) -> str:  # never show the key
        return f"OpenAIChatClient(base_url={self.base_url!r}, model={self.model!r})"

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(self._api_key_env) if self._api_key_env else None
        if key:
            headers["Authorization"] = f"Bearer {key}"
        return headers

    def complete(self, messages: Sequence[dict[str, str]], temperature: float = 0.0, max_tokens: int = 512,
                 logprobs: bool = False) -> Completion:
        body: dict[str, Any] = {"model": self.model, "messages": list(messages), "temperature": temperature,
                                "max_tokens": max_tokens}
        if logprobs:
            body.update(logprobs=True, top_logprobs=5)
        data = json.dumps(body).encode()
        last_error = ""
        for attempt in range(self.max_retries + 1):
            request = urllib.request.Request(f"{self.base_url}/chat/completions", data=data, headers=self._headers(), method="POST")
            self.calls += 1
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    return self._parse(json.loads(response.read().decode()))
            except urllib.error.HTTPError as err:
                last_error = f"HTTP {err.code}: {err.read().decode(errors='replace')[:200]}"
                if err.code != 429 and err.code < 500:
                    raise ClientError(f"{self.base_url}: {last_error}") from None
                retry_after = err.headers.get("Retry-After") if err.headers else None
                delay = float(retry_after) if retry_after and retry_after.replace(".", "", 1).isdigit() else None
            except (urllib.error.URLError, TimeoutError, ConnectionError) as err:
                last_error, delay = f"{type(err).__name__}: {err}", None
            if attempt == self.max_retries:
                break
            time.sleep(min(self.max_backoff_seconds, delay if delay is not None else self.backoff_seconds * 2**attempt))
        raise ClientError(f"{self.base_url}: gave up after {self.max_retries + 1} attempts; last error {last_error}")

    def _parse(self, payload: dict[str, Any]) -> Completion:
        try:
            choice = payload["choices"][0]
            text = choice["message"]["content"] or ""
        except (KeyError, IndexError, TypeError):
            raise ClientError(f"{self.base_url}: response without choices[0].message.content: {str(payload)[:200]}") from None
        tokens, alternatives = [], []
        for entry in ((choice.get("logprobs") or {}).get("content") or []):
            tokens.append(entry.get("token", ""))
            alternatives.append({alt["token"]: alt["logprob"] for alt in entry.get("top_logprobs", [])})
        return Completion(text, payload.get("model", self.model), tuple(tokens), tuple(alternatives), payload.get("usage", {}))


class LocalHFClient:
    """A local causal LM (e.g. ``builtin:smollm2``) through its chat template; greedy at temperature 0.

    ``answer_prefix`` (e.g. ``"Verdict: [["``) is written at the start of the assistant turn and
    returned as part of the text: weak local models then emit a parseable verdict directly (the
    reasoning is skipped), and with ``logprobs`` the verdict token's alternatives give
    probabilities.
    """

    def __init__(self, model: str, device: str | None = None, max_input_tokens: int = 2048, answer_prefix: str = ""):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from ..models.io import resolve_model_source

        path, extra = resolve_model_source(model)
        self.model = model
        self.tokenizer = AutoTokenizer.from_pretrained(path, **extra)
        self.lm = AutoModelForCausalLM.from_pretrained(path, **extra).eval()
        if device:
            self.lm.to(device)
        self.max_input_tokens = max_input_tokens
        self.answer_prefix = answer_prefix
        self.calls = 0

    def complete(self, messages: Sequence[dict[str, str]], temperature: float = 0.0, max_tokens: int = 512,
                 logprobs: bool = False) -> Completion:
        import torch

        self.calls += 1
        head = self.tokenizer.apply_chat_template(list(messages), add_generation_prompt=True, tokenize=False)
        ids = self.tokenizer(head + self.answer_prefix, return_tensors="pt", add_special_tokens=False)
        input_ids = ids["input_ids"][:, -self.max_input_tokens :].to(self.lm.device)
        sample = temperature > 0
        with torch.inference_mode():
            out = self.lm.generate(input_ids, attention_mask=torch.ones_like(input_ids), max_new_tokens=max_tokens,
                                   do_sample=sample, temperature=temperature if sample else None, top_p=None, top_k=None,
                                   output_scores=logprobs, return_dict_in_generate=True,
                                   pad_token_id=self.tokenizer.pad_token_id or self.tokenizer.eos_token_id)
        new = out.sequences[0, input_ids.shape[1] :]
        text = self.answer_prefix + self.tokenizer.decode(new, skip_special_tokens=True)
        tokens, alternatives = (), ()
        if logprobs:
            tokens = (self.answer_prefix,) * bool(self.answer_prefix) + tuple(self.tokenizer.decode([t]) for t in new)
            alts = []
            for scores in out.scores:
                top = torch.log_softmax(scores[0].float(), -1).topk(5)
                alts.append({self.tokenizer.decode([int(i)]): float(v) for v, i in zip(top.values, top.indices)})
            alternatives = ({},) * bool(self.answer_prefix) + tuple(alts)
        return Completion(text, self.model, tokens, alternatives)
