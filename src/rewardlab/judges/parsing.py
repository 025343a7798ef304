"""Parse judge outputs into typed verdicts: pure functions, ``None`` (with the raw text) when unparseable.

The verdict is the *last* ``[[...]]`` in the text, so reasoning that quotes the format earlier
does not count.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "PairwiseVerdict", "RankingVerdict", "ScoreVerdict", "expected_score", "pairwise_probabilities",
    "parse_pairwise", "parse_ranking", "parse_score",
]

_BRACKETS = re.compile(r"\[\[\s*([^\[\]]*?)\s*\]\]")
Winner = Literal["A", "B", "tie"]


@dataclass(frozen=True)
class PairwiseVerdict:
    """``winner`` is None when the output could not be parsed; ``raw`` is always kept."""

    winner: Winner | None
    raw: str


@dataclass(frozen=True)
class ScoreVerdict:
    score: float | None
    raw: str


@dataclass(frozen=True)
class RankingVerdict:
    """``ranking`` lists 0-based response indices best first, or None."""

    ranking: tuple[int, ...] | None
    raw: str


def _last_bracket(text: str) -> str | None:
    found = _BRACKETS.findall(text or "")
    return found[-1] if found else None


def parse_pairwise(text: str) -> PairwiseVerdict:
    """``[[A]]``, ``[[B]]`` or ``[[tie]]`` (case-insensitive), the last one in the text.

    >>> parse_pairwise("A is more precise. Verdict: [[A]]").winner
    'A'
    >>> parse_pairwise("Both fine. Verdict: [[Tie]]").winner
    'tie'
    >>> print(parse_pairwise("I think A").winner)
    None
    """
    token = _last_bracket(text)
    names: dict[str, Winner] = {"a": "A", "b": "B", "tie": "tie", "c": "tie"}
    return PairwiseVerdict(names.get((token or "").strip().lower()), text)


def parse_score(text: str, low: float = 1, high: float = 10) -> ScoreVerdict:
    """A number in ``[[...]]`` within ``[low, high]``.

    >>> parse_score("Good. Score: [[8]]").score
    8.0
    >>> print(parse_score("Score: [[11]]").score, parse_score("Score: [[eight]]").score)
    None None
    """
    token = _last_bracket(text)
    try:
        value = float(token) if token is not None else None
    except ValueError:
        value = None
    if value is None or not math.isfinite(value) or not low <= value <= high:
        return ScoreVerdict(None, text)
    return ScoreVerdict(value, text)


def parse_ranking(text: str, k: int) -> RankingVerdict:
    """A permutation of 1..k in ``[[...]]`` (1-based in the text, 0-based in the verdict).

    >>> parse_ranking("Ranking: [[2, 1, 3]]", 3).ranking
    (1, 0, 2)
    >>> print(parse_ranking("Ranking: [[2, 2, 3]]", 3).ranking)
    None
    """
    token = _last_bracket(text)
    try:
        numbers = [int(x) for x in re.split(r"[,\s>]+", token.strip()) if x] if token else []
    except ValueError:
        numbers = []
    if sorted(numbers) != list(range(1, k + 1)):
        return RankingVerdict(None, text)
    return RankingVerdict(tuple(n - 1 for n in numbers), text)


def _verdict_position(tokens: Sequence[str]) -> int | None:
    text, starts = "", []
    for token in tokens:
        starts.append(len(text))
        text += token
    opening = text.rfind("[[")
    if opening < 0:
        return None
    after = opening + 2
    for i, start in enumerate(starts):
        if start <= after < start + max(len(tokens[i]), 1) or start >= after:
            return i
    return None


def pairwise_probabilities(tokens: Sequence[str], top_logprobs: Sequence[dict[str, float]]) -> dict[str, float] | None:
    """Probability-weighted verdict from the log-probabilities at the verdict token.

    ``tokens`` are the generated tokens and ``top_logprobs[i]`` the alternatives at token i (as
    OpenAI-compatible servers return them). Returns ``{"A", "B", "tie"}`` probabilities
    renormalized over those three, or None when the verdict token or its alternatives are missing.

    >>> import math
    >>> probs = pairwise_probabilities(["Verdict: [[", "A", "]]"],
    ...     [{}, {"A": math.log(0.6), "B": math.log(0.3), "tie": math.log(0.1)}, {}])
    >>> round(probs["A"], 2), round(probs["B"], 2)
    (0.6, 0.3)
    """
    position = _verdict_position(tokens)
    if position is None or position >= len(top_logprobs):
        return None
    mass = {"A": 0.0, "B": 0.0, "tie": 0.0}
    for token, logprob in top_logprobs[position].items():
        key = {"a": "A", "b": "B", "tie": "tie", "t": "tie"}.get(token.strip().lower())
        if key:
            mass[key] += math.exp(logprob)
    total = sum(mass.values())
    return {k: v / total for k, v in mass.items()} if total > 0 else None


def expected_score(top_logprobs: dict[str, float], low: int = 1, high: int = 10) -> float | None:
    """Probability-weighted score over integer tokens at the score position (G-Eval style).

    >>> import math
    >>> expected_score({"7": math.log(0.5), "9": math.log(0.5), "x": 0.0})
    8.0
    """
    weights: dict[int, float] = {}
    for token, logprob in top_logprobs.items():
        try:
            value = int(token.strip())
        except ValueError:
            continue
        if low <= value <= high:
            weights[value] = weights.get(value, 0.0) + math.exp(logprob)
    total = sum(weights.values())
    return sum(v * w for v, w in weights.items()) / total if total > 0 else None
