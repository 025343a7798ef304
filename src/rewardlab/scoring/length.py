"""Length control at scoring time: penalize or remove the part of a reward that length explains.

Reward models prefer longer replies (Singhal et al. arXiv:2310.03716); a policy optimized against one learns
to ramble. These wrap any :class:`Scorer`; length is counted in words (``unit="words"``, tokenizer-free, the
default) or characters.

* ``LengthPenalty(mode="absolute")``: ``r - alpha * len(y)``;
* ``LengthPenalty(mode="normalized")``: ``r - alpha * (len(y) - mean) / std``, length statistics from a
  reference set (:meth:`LengthPenalty.fit`);
* ``LengthDebiased``: fit ``r = a + b * len(y)`` by least squares on a reference set and score
  ``r - b * (len(y) - mean_len)``: the reward with its linear length component removed (its length
  correlation on the reference set is then 0). Cf. ODIN (Chen et al. arXiv:2402.07319), which removes it in training.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

from ..data.templating import Prompt
from ..errors import ConfigError
from .protocol import LengthChecked, Scorer

__all__ = ["LengthDebiased", "LengthPenalty", "response_length"]

Unit = Literal["words", "chars"]


def response_length(response: str, unit: Unit = "words") -> int:
    """A response's length: whitespace-separated words, or characters.

    >>> response_length("two  words\\n"), response_length("abc", "chars")
    (2, 3)
    """
    if unit == "words":
        return len(response.split())
    if unit == "chars":
        return len(response)
    raise ConfigError(f"length unit must be 'words' or 'chars', got {unit!r}")


class _Wrapper:
    """Forwards the length check and the description of the wrapped scorer."""

    scorer: Scorer

    @property
    def max_length(self) -> int:
        return self.scorer.max_length if isinstance(self.scorer, LengthChecked) else 0

    def too_long(self, prompts: Sequence[Prompt], responses: Sequence[str]) -> list[int]:
        return self.scorer.too_long(prompts, responses) if isinstance(self.scorer, LengthChecked) else []


class LengthPenalty(_Wrapper):
    """``r - alpha * len`` (``absolute``) or ``r - alpha * (len - mean) / std`` (``normalized``, after :meth:`fit`).

    >>> from rewardlab.scoring.protocol import FunctionScorer
    >>> LengthPenalty(FunctionScorer(lambda p, r: 10.0), alpha=0.5).score(["q"], ["one two three"])
    [8.5]
    """

    def __init__(self, scorer: Scorer, alpha: float, mode: Literal["absolute", "normalized"] = "absolute", unit: Unit = "words",
                 mean: float | None = None, std: float | None = None):
        if mode not in ("absolute", "normalized"):
            raise ConfigError(f"length penalty mode must be 'absolute' or 'normalized', got {mode!r}")
        response_length("", unit)
        self.scorer, self.alpha, self.mode, self.unit, self.mean, self.std = scorer, alpha, mode, unit, mean, std

    def fit(self, responses: Sequence[str]) -> LengthPenalty:
        """Length mean and std of a reference set of responses (``normalized`` mode)."""
        lengths = np.array([response_length(r, self.unit) for r in responses], dtype=float)
        if lengths.size < 2 or lengths.std() == 0:
            raise ConfigError("the length reference set needs at least 2 responses of different lengths")
        self.mean, self.std = float(lengths.mean()), float(lengths.std())
        return self

    def score(self, prompts: Sequence[Prompt], responses: Sequence[str]) -> list[float]:
        lengths = np.array([response_length(r, self.unit) for r in responses], dtype=float)
        if self.mode == "absolute":
            penalty = lengths
        elif self.mean is None or not self.std:
            raise ConfigError("a normalized length penalty needs length statistics: fit(reference_responses) first")
        else:
            penalty = (lengths - self.mean) / self.std
        return (np.asarray(self.scorer.score(prompts, responses), dtype=float) - self.alpha * penalty).tolist()

    def describe(self) -> dict[str, Any]:
        inner = self.scorer.describe()
        return {**inner, "kind": f"length_penalty({inner.get('kind')})",
                "settings": {**inner.get("settings", {}), "length_penalty": {"alpha": self.alpha, "mode": self.mode, "unit": self.unit,
                                                                            "mean": self.mean, "std": self.std}}}


class LengthDebiased(_Wrapper):
    """The scorer's reward minus its least-squares length slope times the centred length (see the module docstring).

    >>> from rewardlab.scoring.protocol import FunctionScorer
    >>> verbose = FunctionScorer(lambda p, r: 1.0 + 2.0 * len(r.split()))
    >>> debiased = LengthDebiased(verbose).fit(["q"] * 3, ["a", "a b", "a b c"])
    >>> debiased.slope, debiased.score(["q", "q"], ["a", "a b c d e"])
    (2.0, [5.0, 5.0])
    """

    def __init__(self, scorer: Scorer, unit: Unit = "words", slope: float | None = None, mean_length: float | None = None):
        response_length("", unit)
        self.scorer, self.unit, self.slope, self.mean_length = scorer, unit, slope, mean_length

    def fit(self, prompts: Sequence[Prompt], responses: Sequence[str]) -> LengthDebiased:
        lengths = np.array([response_length(r, self.unit) for r in responses], dtype=float)
        if lengths.size < 2 or lengths.std() == 0:
            raise ConfigError("the length reference set needs at least 2 responses of different lengths")
        rewards = np.asarray(self.scorer.score(prompts, responses), dtype=float)
        self.slope = float(np.cov(lengths, rewards, ddof=0)[0, 1] / lengths.var())
        self.mean_length = float(lengths.mean())
        return self

    def score(self, prompts: Sequence[Prompt], responses: Sequence[str]) -> list[float]:
        if self.slope is None or self.mean_length is None:
            raise ConfigError("LengthDebiased needs fit(prompts, responses) on a reference set first")
        lengths = np.array([response_length(r, self.unit) for r in responses], dtype=float)
        return (np.asarray(self.scorer.score(prompts, responses), dtype=float) - self.slope * (lengths - self.mean_length)).tolist()

    def describe(self) -> dict[str, Any]:
        inner = self.scorer.describe()
        return {**inner, "kind": f"length_debiased({inner.get('kind')})",
                "settings": {**inner.get("settings", {}), "length_debias": {"slope": self.slope, "mean_length": self.mean_length,
                                                                           "unit": self.unit}}}
