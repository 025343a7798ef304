"""The ``Scorer`` protocol: prompts and responses in, rewards out. Every consumer of rewards takes one.

A scorer may also offer two capabilities, each a small protocol checked with ``isinstance``:
:class:`LengthChecked` (say which items cannot be scored before scoring anything) and
:class:`HeadScorer` (a multi-objective model's reward per head). Consumers work without them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable

from ..data.templating import Prompt

__all__ = ["BatchShaped", "FunctionScorer", "HeadScorer", "LengthChecked", "MemberScorer", "Scorer", "TextScorer", "WrappedScorer",
           "ensemble_rewards", "is_ensemble"]


@runtime_checkable
class Scorer(Protocol):
    """Anything that scores responses: a local RM, a PRM, a DPO policy, a remote server, an ensemble, a judge.

    * ``score(prompts, responses)[i]`` is the reward of ``responses[i]`` to ``prompts[i]`` (a text,
      or a list of chat messages); higher is better. Shapes: ``N`` prompts and ``N`` responses in,
      ``N`` floats out, in input order. A response the scorer cannot take whole (too long) raises
      :class:`~rewardlab.errors.SequenceTooLongError` with the item indices in ``.items``.
    * ``describe()`` is a JSON-able dict: ``kind`` (e.g. ``"local"``, ``"dpo"``), ``model`` (an id
      or path, or None), ``settings`` (everything the rewards depend on; a resumed run must match
      it) and ``record`` (fields every results line carries, e.g. a DPO beta; may be empty).

    >>> isinstance(FunctionScorer(lambda p, r: float(len(r))), Scorer)
    True
    """

    def score(self, prompts: Sequence[Prompt], responses: Sequence[str]) -> list[float]: ...

    def describe(self) -> dict[str, Any]: ...


@runtime_checkable
class LengthChecked(Protocol):
    """A scorer with a length limit (``max_length`` tokens) that can say, cheaply and without scoring, which items exceed it."""

    max_length: int

    def too_long(self, prompts: Sequence[Prompt], responses: Sequence[str]) -> list[int]:
        """Indices of the items that cannot be scored whole (empty when all fit)."""
        ...


@runtime_checkable
class HeadScorer(Protocol):
    """A multi-objective scorer: a reward per named head, and the rule (if any) that combines them."""

    @property
    def heads(self) -> list[str]: ...

    def describe(self) -> dict[str, Any]: ...

    def score_named(self, prompts: Sequence[Prompt], responses: Sequence[str]) -> list[dict[str, float]]: ...

    def combined(self, row: dict[str, float]) -> float | None:
        """The one reward of a row of head rewards, or None when the scorer has no combination rule."""
        ...


@runtime_checkable
class TextScorer(Protocol):
    """A scorer that can also score whole conversations already rendered to text (OpenRLHF's ``/get_reward``
    sends ``query`` = prompt + response formatted by the policy's chat template)."""

    def score_texts(self, texts: Sequence[str]) -> list[float]:
        """Reward per rendered text; a text longer than the scorer's limit raises ``SequenceTooLongError``."""
        ...

    def too_long_texts(self, texts: Sequence[str]) -> list[int]:
        """Indices of the texts that cannot be scored whole."""
        ...


@runtime_checkable
class BatchShaped(Protocol):
    """A scorer that says how its forward passes are cut: at most ``max_batch_tokens`` tokens each (None: no cap),
    and whether sequences with a common prefix compute it once (``shares_prefixes``). A reward server budgets its
    batches with both."""

    max_batch_tokens: int | None

    @property
    def shares_prefixes(self) -> bool: ...


@runtime_checkable
class WrappedScorer(Protocol):
    """A scorer that adjusts the rewards of the one it wraps (the length penalty and debias): ``scorer``, so a report
    can show what the adjustment changed."""

    scorer: Scorer

    def score(self, prompts: Sequence[Prompt], responses: Sequence[str]) -> list[float]:
        ...


@runtime_checkable
class MemberScorer(Protocol):
    """An ensemble whose members can be asked one by one: ``raw_members`` gives their rewards before any scaling,
    ``(K, N)``."""

    def raw_members(self, prompts: Sequence[Prompt], responses: Sequence[str]) -> Any:
        ...


def is_ensemble(scorer: Scorer) -> bool:
    """True for an ensemble scorer: a :class:`HeadScorer` whose heads are the members plus ``std`` (``describe()``
    kind ``"ensemble"``), so ``score_named`` gives every member's reward and ``combined`` the aggregate.

    >>> is_ensemble(FunctionScorer(lambda p, r: 0.0))
    False
    """
    return isinstance(scorer, HeadScorer) and scorer.describe().get("kind") == "ensemble"


def ensemble_rewards(scorer: Scorer, prompts: Sequence[Prompt],
                     responses: Sequence[str]) -> tuple[list[float], list[dict[str, float]]] | None:
    """For an ensemble (:func:`is_ensemble`): ``(aggregate reward per item, each item's member rewards and std)``;
    None for any other scorer (score it with ``score``)."""
    if not (isinstance(scorer, HeadScorer) and is_ensemble(scorer)):
        return None
    rows = scorer.score_named(prompts, responses)
    rewards = [scorer.combined(row) for row in rows]
    if any(r is None for r in rewards):
        raise ValueError(f"{scorer.describe().get('kind')} scorer gave no aggregate reward")
    return [float(r) for r in rewards if r is not None], rows


class FunctionScorer:
    """A plain Python function ``fn(prompt, response) -> float`` as a :class:`Scorer` (rules, checkers, tests).

    >>> FunctionScorer(lambda prompt, response: float(len(response)), name="length").score(["q", "q"], ["ab", "abcd"])
    [2.0, 4.0]
    """

    def __init__(self, fn: Callable[[Prompt, str], float], name: str = "function"):
        self.fn, self.name = fn, name

    def score(self, prompts: Sequence[Prompt], responses: Sequence[str]) -> list[float]:
        if len(prompts) != len(responses):
            raise ValueError(f"got {len(prompts)} prompts but {len(responses)} responses")
        return [float(self.fn(p, r)) for p, r in zip(prompts, responses)]

    def describe(self) -> dict[str, Any]:
        return {"kind": "function", "model": self.name, "settings": {}, "record": {}}
