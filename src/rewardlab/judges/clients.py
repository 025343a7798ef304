"""Chat backends for judges, injected: an OpenAI-compatible HTTP client and a local Hugging Face LM.

Both satisfy :class:`ChatClient`; judges never import a vendor library. The HTTP client speaks
the ``/v1/chat/completions`` protocol (OpenAI, vLLM, llama.cpp server, ...) over httpx (the
``serve`` extra): a total deadline per request, retries with exponential backoff on 429, 5xx and
unusable replies (honouring ``Retry-After``), no redirects, and an API key read from an
environment variable (never logged, stored or echoed).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from ..errors import RewardlabError

__all__ = ["ChatClient", "ClientError", "Completion", "LocalHFClient", "OpenAIChatClient", "retry_after_seconds"]


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
    token_logprobs: tuple[float, ...] = ()
    """The log-probability of each generated token, when the server returned them."""


@runtime_checkable
class ChatClient(Protocol):
    """``complete(messages, temperature=..., max_tokens=..., logprobs=...) -> Completion``; ``model`` names it."""

    model: str

    def complete(self, messages: Sequence[dict[str, str]], temperature: float = 0.0, max_tokens: int = 512,
                 logprobs: bool = False) -> Completion: ...


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """``Retry-After`` in seconds: a number, or an HTTP date (RFC 9110); None when absent or unreadable.

    >>> retry_after_seconds("2.5"), retry_after_seconds("Wed, 21 Oct 2015 07:28:10 GMT", now=1445412480.0)
    (2.5, 10.0)
    """
    if not value:
        return None
    value = value.strip()
    if value.replace(".", "", 1).isdigit():
        return float(value)
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, when - (time.time() if now is None else now))


class _Retryable(Exception):
    """A failed attempt worth retrying (transport error, 429/5xx, an unusable reply)."""

    def __init__(self, message: str, delay: float | None = None):
        super().__init__(message)
        self.delay = delay


class OpenAIChatClient:
    """A client for any OpenAI-compatible chat endpoint (``base_url`` ending in ``/v1``), on httpx.

    * Retries 429, 5xx, transport errors and unusable replies (malformed JSON, an HTML page with status
      200, a body cut short, a reply with no content) with exponential backoff, honouring
      ``Retry-After`` as seconds or an HTTP date; other 4xx fail at once.
    * ``timeout`` is a total deadline per request (connect, send, every byte of the reply), so a
      server that dribbles bytes cannot hold a run.
    * Credentials never leave the configured origin: redirects are not followed (a 3xx is an error
      naming where it pointed); a key sent over plain http to a non-loopback host gets a warning;
      error messages never include the key.
    * ``transport`` (an ``httpx`` transport) can be injected for tests.
    """

    def __init__(self, base_url: str, model: str, api_key_env: str | None = "OPENAI_API_KEY", timeout: float = 60.0,
                 max_retries: int = 5, backoff_seconds: float = 1.0, max_backoff_seconds: float = 60.0,
                 transport: Any = None):
        self.base_url = base_url.rstrip("/")
        self.model = model
        self._api_key_env = api_key_env
        self.timeout, self.max_retries = timeout, max_retries
        self.backoff_seconds, self.max_backoff_seconds = backoff_seconds, max_backoff_seconds
        self._transport = transport
        self._client: Any = None
        self._warned = False
        self.calls = 0  # HTTP requests sent, retries included

    def __repr__(self) -> str:  # never show the key
        return f"OpenAIChatClient(base_url={self.base_url!r}, model={self.model!r})"

    def _key(self) -> str | None:
        return os.environ.get(self._api_key_env) if self._api_key_env else None

    def _redact(self, text: str) -> str:
        key = self._key()
        return text.replace(key, "[API key]") if key else text

    def _http(self) -> Any:
        if self._client is None:
            import httpx

            self._client = httpx.Client(follow_redirects=False, transport=self._transport,
                                        timeout=httpx.Timeout(self.timeout))
        return self._client

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        key = self._key()
        if key:
            from urllib.parse import urlsplit

            parts = urlsplit(self.base_url)
            if parts.scheme == "http" and parts.hostname not in ("127.0.0.1", "localhost", "::1") and not self._warned:
                import logging

                logging.getLogger(__name__).warning("sending an API key over plain http to %s; use https", parts.hostname)
                self._warned = True
            headers["Authorization"] = f"Bearer {key}"
        return headers

    def _attempt_all(self, url: str, body: dict[str, Any]) -> list[Completion]:
        import httpx

        deadline = time.monotonic() + self.timeout
        try:
            with self._http().stream("POST", url, json=body, headers=self._headers()) as response:
                chunks = []
                for chunk in response.iter_bytes():
                    chunks.append(chunk)
                    if time.monotonic() > deadline:
                        raise _Retryable(f"no complete reply within {self.timeout} s (the server sends too slowly)")
                raw = b"".join(chunks)
        except httpx.TimeoutException as err:
            raise _Retryable(f"timed out after {self.timeout} s ({type(err).__name__})") from None
        except httpx.TransportError as err:
            raise _Retryable(f"{type(err).__name__}: {self._redact(str(err))}") from None
        status = response.status_code
        if 300 <= status < 400:
            raise ClientError(f"{self.base_url}: HTTP {status} redirect to {response.headers.get('location')!r}; not followed "
                              "(credentials are only ever sent to the configured address): fix --base-url")
        if status == 429 or status >= 500:
            raise _Retryable(f"HTTP {status}: {self._redact(raw[:200].decode(errors='replace'))}",
                             retry_after_seconds(response.headers.get("retry-after")))
        if status >= 400:
            raise ClientError(f"{self.base_url}: HTTP {status}: {self._redact(raw[:200].decode(errors='replace'))}")
        try:
            payload = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            kind = "an HTML page" if raw.lstrip()[:1] == b"<" else "malformed or incomplete JSON"
            raise _Retryable(f"HTTP {status} with {kind} ({len(raw)} bytes)") from None
        return self._parse_all(payload)

    def complete(self, messages: Sequence[dict[str, str]], temperature: float = 0.0, max_tokens: int = 512,
                 logprobs: bool = False) -> Completion:
        body: dict[str, Any] = {"model": self.model, "messages": list(messages), "temperature": temperature,
                                "max_tokens": max_tokens}
        if logprobs:
            body.update(logprobs=True, top_logprobs=5)
        return self._request_parsed(body)[0]

    def _parse_all(self, payload: Any) -> list[Completion]:
        try:
            choices = payload["choices"]
            texts = [c["message"]["content"] for c in choices]
        except (KeyError, IndexError, TypeError):
            raise _Retryable(f"reply without choices[].message.content: {self._redact(str(payload)[:200])}") from None
        if not choices or any(t is None for t in texts):  # an empty transport reply is retried, and never cached as an answer
            raise _Retryable("reply with null content")
        out = []
        for choice, text in zip(choices, texts):
            tokens, alternatives, logps = [], [], []
            for entry in ((choice.get("logprobs") or {}).get("content") or []):
                tokens.append(entry.get("token", ""))
                logps.append(float(entry.get("logprob", 0.0)))
                alternatives.append({alt["token"]: alt["logprob"] for alt in entry.get("top_logprobs", [])})
            out.append(Completion(text, payload.get("model", self.model), tuple(tokens), tuple(alternatives),
                                  payload.get("usage", {}), tuple(logps)))
        return out

    def complete_many(self, messages: Sequence[dict[str, str]], n: int, temperature: float = 0.7, max_tokens: int = 512,
                      logprobs: bool = False, concurrency: int = 4) -> list[Completion]:
        """``n`` samples for one conversation: asked for in one request (the ``n`` parameter vLLM, SGLang and OpenAI
        honour); what a server does not return is asked for one request each, ``concurrency`` at a time. Token
        log-probs are kept when ``logprobs``."""
        from concurrent.futures import ThreadPoolExecutor

        body: dict[str, Any] = {"model": self.model, "messages": list(messages), "temperature": temperature,
                                "max_tokens": max_tokens, "n": n}
        if logprobs:
            body.update(logprobs=True, top_logprobs=1)
        got = self._request_parsed(body)
        missing = n - len(got)
        if missing > 0:
            single = {**body, "n": 1}
            with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
                for extra in pool.map(lambda _: self._request_parsed(single), range(missing)):
                    got += extra[:1]
        return got[:n]

    def _request_parsed(self, body: dict[str, Any]) -> list[Completion]:
        """POST ``body`` with retries (429, 5xx, transport errors, unparseable replies), backing off exponentially or
        as ``Retry-After`` says; every attempt counts in ``calls``."""
        url = f"{self.base_url}/chat/completions"
        last_error = ""
        for attempt in range(self.max_retries + 1):
            self.calls += 1
            try:
                return self._attempt_all(url, body)
            except _Retryable as err:
                last_error, delay = str(err), err.delay
            if attempt == self.max_retries:
                break
            time.sleep(min(self.max_backoff_seconds, delay if delay is not None else self.backoff_seconds * 2**attempt))
        raise ClientError(f"{self.base_url}: gave up after {self.max_retries + 1} attempts; last error {last_error}")


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
        self.tokenizer: Any = AutoTokenizer.from_pretrained(path, **extra)  # typed loosely: decode() is typed str | list[str]
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
        tokens: tuple[str, ...] = ()
        alternatives: tuple[dict[str, float], ...] = ()
        if logprobs:
            tokens = (self.answer_prefix,) * bool(self.answer_prefix) + tuple(self.tokenizer.decode([t]) for t in new)
            alts: list[dict[str, float]] = []
            for scores in out.scores:
                top = torch.log_softmax(scores[0].float(), -1).topk(5)
                alts.append({self.tokenizer.decode([int(i)]): float(v) for v, i in zip(top.values, top.indices)})
            empty: tuple[dict[str, float], ...] = ({},) * bool(self.answer_prefix)
            alternatives = empty + tuple(alts)
        return Completion(text, self.model, tokens, alternatives)
