"""Every judge call cached on disk in SQLite, keyed by model, messages and parameters.

A re-run (or a resumed, interrupted run) answers from the cache without calling the backend;
``max_calls`` stops cleanly before a paid call would exceed the budget.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ..errors import RewardlabError
from .clients import ChatClient, Completion

__all__ = ["BudgetExceeded", "CachedClient"]


class BudgetExceeded(RewardlabError, RuntimeError):
    """The call budget (``max_calls``) is spent; everything answered so far is in the cache."""


class CachedClient:
    """Wrap a :class:`ChatClient` with a persistent cache and an optional call budget."""

    def __init__(self, client: ChatClient, path: str | Path, max_calls: int | None = None):
        self.client = client
        self.model = client.model
        self.max_calls = max_calls
        self.backend_calls = 0
        self.cache_hits = 0
        self._lock = threading.Lock()
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(str(path), check_same_thread=False)
            self._db.execute("CREATE TABLE IF NOT EXISTS calls (key TEXT PRIMARY KEY, completion TEXT NOT NULL)")
            self._db.execute("SELECT count(*) FROM calls").fetchone()
            self._db.commit()
        except sqlite3.DatabaseError as err:
            raise RewardlabError(f"{path}: the judge cache is corrupt or not an SQLite file ({err}); move it aside "
                                 f"(mv {path} {path}.corrupt) to start a fresh cache, or pass another --cache") from None

    @staticmethod
    def key(model: str, messages: Sequence[dict[str, str]], params: dict[str, Any]) -> str:
        blob = json.dumps({"model": model, "messages": list(messages), "params": params}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()

    def complete(self, messages: Sequence[dict[str, str]], temperature: float = 0.0, max_tokens: int = 512,
                 logprobs: bool = False) -> Completion:
        key = self.key(self.model, messages, {"temperature": temperature, "max_tokens": max_tokens, "logprobs": logprobs})
        with self._lock:
            row = self._db.execute("SELECT completion FROM calls WHERE key = ?", (key,)).fetchone()
            if row is not None:
                self.cache_hits += 1
                raw = json.loads(row[0])
                return Completion(raw["text"], raw["model"], tuple(raw["tokens"]), tuple(raw["top_logprobs"]), raw["usage"])
            if self.max_calls is not None and self.backend_calls >= self.max_calls:
                raise BudgetExceeded(f"call budget of {self.max_calls} spent; cached answers are kept, re-run to resume")
            self.backend_calls += 1
        completion = self.client.complete(messages, temperature=temperature, max_tokens=max_tokens, logprobs=logprobs)
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO calls VALUES (?, ?)", (key, json.dumps(asdict(completion))))
            self._db.commit()
        return completion
