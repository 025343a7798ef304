"""Request bodies of the reward server, validated by pydantic (a wrong type or a missing field is a 422 naming it)."""

from __future__ import annotations

from typing import Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict

__all__ = ["ChatMessage", "RewardRequest", "ScoreRequest"]


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Literal["system", "user", "assistant", "tool"]
    content: str


class ScoreRequest(BaseModel):
    """``POST /v1/score``: one prompt (text or chat messages) per response."""

    model_config = ConfigDict(extra="forbid")
    prompts: list[Union[str, list[ChatMessage]]]
    responses: list[str]


class RewardRequest(BaseModel):
    """``POST /get_reward`` (OpenRLHF): ``query`` = prompt + response as rendered text; ``prompts`` and ``labels``
    as newer OpenRLHF versions send them. Unknown fields are kept (OpenRLHF adds some over time) and unused."""

    model_config = ConfigDict(extra="allow")
    query: list[str]
    prompts: Optional[list[str]] = None
    labels: Optional[list[Any]] = None
