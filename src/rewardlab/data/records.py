"""Record types: one frozen dataclass per kind of data. Leaf module: imports nothing from rewardlab."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["Message", "PreferencePair", "RankedResponses", "Role", "ScoredResponse", "StepLabeledSolution"]

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
    arXiv:2307.09288 eq. 2). ``tie`` marks "neither is better" (then the order of the two is
    meaningless). ``strength`` is a preference-strength label ("significantly better", ...)
    mapped to a margin or weight by the training config; ``attribute`` names the objective the
    preference is about, for multi-objective models. ``weight`` (optional, >= 0) multiplies the
    pair's loss (e.g. written by ``rewardlab data filter`` from agreement or confidence). ``source`` is where the record came from
    (``"file:line"``), so later errors and reports can point back at it.

    >>> pair = PreferencePair((Message("user", "2+2?"),), chosen="4", rejected="5")
    >>> pair.prompt[-1].content, pair.chosen, pair.margin
    ('2+2?', '4', None)
    """

    prompt: tuple[Message, ...]
    chosen: str
    rejected: str
    margin: float | None = None
    source: str = ""
    tie: bool = False
    strength: str | None = None
    attribute: str | None = None
    weight: float | None = None


@dataclass(frozen=True)
class ScoredResponse:
    """One response with absolute scores (e.g. 1-5 Likert), one per named attribute.

    ``annotator`` (optional) identifies who gave the score, for per-annotator normalization.

    >>> ScoredResponse((Message("user", "Hi"),), "Hello", {"score": 4.0}).scores["score"]
    4.0
    """

    prompt: tuple[Message, ...]
    response: str
    scores: dict[str, float]
    annotator: str | None = None
    source: str = ""


@dataclass(frozen=True)
class RankedResponses:
    """K >= 2 responses to one prompt with ranks (1 = best; equal ranks are ties).

    >>> RankedResponses((Message("user", "Hi"),), ("Hello", "Go away"), (1, 2)).responses[0]
    'Hello'
    """

    prompt: tuple[Message, ...]
    responses: tuple[str, ...]
    ranks: tuple[int, ...]
    source: str = ""


@dataclass(frozen=True)
class StepLabeledSolution:
    """A solution split into reasoning steps, with one label per step (None = unlabelled, masked).

    Labels are hard (0/1), soft (a float in [0, 1], e.g. Math-Shepherd's fraction of correct
    completions) or 3-class (-1 bad / 0 neutral / +1 good, as PRM800K).

    >>> s = StepLabeledSolution((Message("user", "1+1*2?"),), ("1*2 = 2", "1+2 = 3"), (1.0, 1.0))
    >>> len(s.steps) == len(s.step_labels)
    True
    """

    prompt: tuple[Message, ...]
    steps: tuple[str, ...]
    step_labels: tuple[float | None, ...]
    source: str = ""
    answer: str | None = None
