"""``RemoteScorer``: a :class:`Scorer` served over HTTP by ``rewardlab serve`` (``/v1/score``) or any OpenRLHF-style
``/get_reward`` server; connection reuse, timeouts, retries with backoff, chunked calls."""

from __future__ import annotations

import os
import random
import time
from collections.abc import Sequence
from typing import Any

from ..data.templating import Prompt, as_messages
from ..errors import ConfigError, RewardlabError, SequenceTooLongError
from .config import RemoteConfig

__all__ = ["RemoteScorer", "RemoteScorerError"]

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


class RemoteScorerError(RewardlabError, RuntimeError):
    """The reward server refused a request (4xx other than 429), or kept failing after every retry."""


def _wire_prompt(prompt: Prompt) -> Any:
    return prompt if isinstance(prompt, str) else [m.as_dict() for m in as_messages(prompt)]


def _text_prompt(prompt: Prompt, index: int) -> str:
    """The text OpenRLHF's ``/get_reward`` takes for a prompt: a string as it is, a prompt of one user message (what
    the file readers make of a string prompt) as its content; a conversation has no text form without the policy's
    chat template.

    >>> _text_prompt("Hi ", 0), _text_prompt([{"role": "user", "content": "Hi "}], 0)
    ('Hi ', 'Hi ')
    """
    if isinstance(prompt, str):
        return prompt
    messages = as_messages(prompt)
    if not messages:
        return ""
    if len(messages) == 1 and messages[0].role == "user":
        return messages[0].content
    raise ConfigError(f"item {index}: the openrlhf contract sends prompt + response as one text, and a prompt of "
                      f"{len(messages)} messages ({', '.join(m.role for m in messages)}) has none without the policy's "
                      "chat template: render it first, or use contract 'rewardlab' (rewardlab serve's /v1/score)")


class RemoteScorer:
    """Rewards from a reward server.

    ``contract="rewardlab"`` posts ``{"prompts", "responses"}`` to ``URL/v1/score`` (texts or chat messages);
    ``contract="openrlhf"`` posts ``{"query": [prompt + response]}`` to ``URL/get_reward`` (text prompts only).
    Calls larger than ``config.batch_size`` items go as several requests, in order. 429/5xx and connection errors
    are retried ``config.max_retries`` times with exponential backoff and jitter (``Retry-After`` honoured); a 422
    naming too-long items becomes :class:`SequenceTooLongError` with their indices; other 4xx fail at once.

    >>> RemoteScorer(RemoteConfig(model="http://127.0.0.1:8000")).describe()["kind"]
    'remote'
    """

    def __init__(self, config: RemoteConfig):
        self.config = config
        self.url, self.contract, self.chunk_size = config.model.rstrip("/"), config.contract, config.batch_size
        self.timeout, self.max_retries = config.timeout, config.max_retries
        self.backoff_seconds, self.max_backoff_seconds = config.backoff_seconds, config.max_backoff_seconds
        self._api_key_env = config.api_key_env
        self._client: Any = None
        self._metadata: dict[str, Any] | None = None
        self.requests = 0  # HTTP requests sent, retries included

    def _http(self) -> Any:
        if self._client is None:
            import httpx  # the 'serve' extra; one client keeps connections alive across calls

            headers = {}
            if self._api_key_env:
                key = os.environ.get(self._api_key_env)
                if not key:
                    raise ConfigError(f"environment variable {self._api_key_env} (the reward server's API key) is not set")
                headers["Authorization"] = f"Bearer {key}"
            self._client = httpx.Client(timeout=self.timeout, headers=headers)
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def _request(self, method: str, path: str, payload: dict[str, Any] | None = None) -> Any:
        import httpx

        url = self.url + path
        for attempt in range(self.max_retries + 1):
            self.requests += 1
            try:
                response = self._http().request(method, url, json=payload)
            except httpx.TransportError as err:  # refused, reset, timed out
                problem: str = f"{type(err).__name__}: {err}"
                wait = None
            else:
                if response.status_code < 400:
                    return response.json()
                if response.status_code not in RETRY_STATUSES:
                    self._raise_for(response, url)
                problem = f"HTTP {response.status_code}"
                wait = response.headers.get("Retry-After")
            if attempt == self.max_retries:
                raise RemoteScorerError(f"{url}: {problem} after {self.max_retries + 1} attempts")
            delay = float(wait) if wait and wait.replace(".", "", 1).isdigit() else min(
                self.max_backoff_seconds, self.backoff_seconds * 2 ** attempt)
            time.sleep(delay * (0.5 + random.random() / 2) if not wait else delay)  # jitter spreads retrying clients
        raise AssertionError("unreachable")

    @staticmethod
    def _raise_for(response: Any, url: str) -> None:
        try:
            detail = response.json().get("detail")
        except ValueError:
            detail = response.text[:300]
        if response.status_code == 422 and isinstance(detail, dict) and detail.get("too_long"):
            raise SequenceTooLongError(f"{url}: {detail.get('message')}", tuple(detail["too_long"]), detail.get("max_length"))
        raise RemoteScorerError(f"{url}: HTTP {response.status_code}: {detail}")

    def metadata(self) -> dict[str, Any]:
        """The server's ``/v1/metadata`` (model, heads, max length, ...); ``{}`` for an OpenRLHF-style server."""
        if self._metadata is None:
            self._metadata = self._request("GET", "/v1/metadata") if self.contract == "rewardlab" else {}
        return self._metadata

    def describe(self) -> dict[str, Any]:
        meta = self._metadata or {}
        return {"kind": "remote", "model": self.url, "record": {},
                "settings": {"contract": self.contract, "server_model": meta.get("model"), "server_settings": meta.get("scorer")}}

    def score(self, prompts: Sequence[Prompt], responses: Sequence[str]) -> list[float]:
        if len(prompts) != len(responses):
            raise ValueError(f"got {len(prompts)} prompts but {len(responses)} responses")
        if self.contract == "rewardlab" and self._metadata is None and prompts:
            self.metadata()  # recorded by describe(): what model answered
        rewards: list[float] = []
        for start in range(0, len(prompts), self.chunk_size):
            chunk_p, chunk_r = prompts[start : start + self.chunk_size], responses[start : start + self.chunk_size]
            try:
                rewards += self._score_chunk(chunk_p, chunk_r)
            except SequenceTooLongError as err:  # indices of this chunk -> indices of the call
                raise SequenceTooLongError(str(err), tuple(start + i for i in err.items), err.max_length) from None
        return rewards

    def _score_chunk(self, prompts: Sequence[Prompt], responses: Sequence[str]) -> list[float]:
        if self.contract == "openrlhf":
            reply = self._request("POST", "/get_reward", {"query": [_text_prompt(p, start) + r for start, (p, r)
                                                                    in enumerate(zip(prompts, responses))]})
        else:
            reply = self._request("POST", "/v1/score", {"prompts": [_wire_prompt(p) for p in prompts], "responses": list(responses)})
        rewards = reply.get("rewards") if isinstance(reply, dict) else None
        if not isinstance(rewards, list) or len(rewards) != len(prompts) or any(r is None for r in rewards):
            raise RemoteScorerError(f"{self.url}: expected {len(prompts)} rewards, got {str(reply)[:200]}")
        return [float(r) for r in rewards]
