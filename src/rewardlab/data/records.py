"""Record types: one frozen dataclass per kind of data. Leaf module: imports nothing from rewardlab."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["Message", "PreferencePair", "Role"]

Role = Literal["system", "user", "assistant"]


@dataclass(frozen=True)
class Message:
    """One chat turn.

    >>> Message("user", "Hi").as_dict()
    {'role': 'user', 'content': 'Hi'}
    """

    role: Role
    content: str

    def as_dict(self) -> dict[str, str]:
        return {"role": self.role, "content": self.content}


@dataclass(frozen=True)
class PreferencePair:
    """A prompt (a conversation ending with a user turn) and two assistant replies.

    ``margin`` (optional, >= 0) is how much better ``chosen`` is, for margin losses (Llama 2,
    arXiv:2307.09288 eq. 2). ``source`` is where the record came from (``"file:line"``), so
    later errors and reports can point back at it.

    >>> pair = PreferencePair((Message("user", "2+2?"),), chosen="4", rejected="5")
    >>> pair.prompt[-1].content, pair.chosen, pair.margin
    ('2+2?', '4', None)
    """

    prompt: tuple[Message, ...]
    chosen: str
    rejected: str
    margin: float | None = None
    source: str = ""
