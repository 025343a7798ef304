"""Pointwise, pairwise (both orders), listwise and reference-guided judges over a ``ChatClient``."""

from __future__ import annotations


from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from ..data.templating import Prompt, as_messages
from ..errors import ConfigError, RewardlabError
from .clients import ChatClient
from .parsing import PairwiseVerdict, Winner, pairwise_probabilities, parse_pairwise, parse_ranking, parse_score

__all__ = [
    "JudgeParseError", "ListwiseJudge", "PairwiseJudge", "PairwiseResult", "PointwiseJudge", "load_template",
    "pairwise_summary",
]

TEMPLATE_VARIABLES = {
    "pairwise": {"question", "response_a", "response_b", "rubric"},
    "reference": {"question", "reference", "response_a", "response_b", "rubric"},
    "pointwise": {"question", "response", "rubric", "scale_min", "scale_max"},
    "listwise": {"question", "responses", "k", "rubric"},
}


class JudgeParseError(RewardlabError, ValueError):
    """Some judge outputs could not be parsed (the raw texts are in ``raw``)."""

    def __init__(self, message: str, raw: list[str]):
        super().__init__(message)
        self.raw = raw


def load_template(name_or_path: str) -> str:
    """A built-in template (``pairwise``, ``reference``, ``pointwise``, ``listwise``) or a file path."""
    if name_or_path in TEMPLATE_VARIABLES:
        return (resources.files("rewardlab.judges") / "templates" / f"{name_or_path}.txt").read_text()
    path = Path(name_or_path)
    if not path.is_file():
        raise ConfigError(f"template {name_or_path!r} is neither a built-in ({sorted(TEMPLATE_VARIABLES)}) nor a file")
    return path.read_text()


def _question(prompt: Prompt) -> str:
    messages = as_messages(prompt)
    if len(messages) == 1:
        return messages[0].content
    return "\n".join(f"{m.role}: {m.content}" for m in messages)


def _fill(template: str, **values: Any) -> str:
    try:
        return template.format(**values)
    except (KeyError, IndexError) as err:
        raise ConfigError(f"template uses a variable that is not provided: {err}; available: {sorted(values)}") from None


def _map(fn: Any, items: Sequence[Any], concurrency: int) -> list[Any]:
    if concurrency <= 1:
        return [fn(x) for x in items]
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        return list(pool.map(fn, items))


@dataclass(frozen=True)
class PairwiseResult:
    """One pair judged in one or both orders; verdicts are in the original A/B labels."""

    winner: Literal["A", "B", "tie"] | None
    forward: PairwiseVerdict
    swapped: PairwiseVerdict | None
    probabilities: dict[str, float] | None = None

    @property
    def flipped(self) -> bool | None:
        """Whether the verdict changed with the order (None unless both orders parsed)."""
        if self.swapped is None or self.forward.winner is None or self.swapped.winner is None:
            return None
        return self.forward.winner != self.swapped.winner


_SWAP: dict[str | None, Winner | None] = {"A": "B", "B": "A", "tie": "tie", None: None}


class PairwiseJudge:
    """Compare two responses; by default in both orders, disagreement becoming a tie.

    ``on_disagreement="average"`` averages the verdict-token probabilities of the two orders
    when the backend returns log-probabilities (and falls back to a tie otherwise).
    """

    def __init__(self, client: ChatClient, template: str = "pairwise", rubric: str = "", both_orders: bool = True,
                 on_disagreement: Literal["tie", "average"] = "tie", temperature: float = 0.0, max_tokens: int = 512,
                 use_logprobs: bool = False, concurrency: int = 4):
        self.client, self.template = client, load_template(template)
        self.rubric, self.both_orders, self.on_disagreement = rubric, both_orders, on_disagreement
        self.temperature, self.max_tokens, self.use_logprobs, self.concurrency = temperature, max_tokens, use_logprobs, concurrency

    def _ask(self, job: tuple[str, str, str, str | None]) -> tuple[PairwiseVerdict, dict[str, float] | None]:
        question, first, second, reference = job
        text = _fill(self.template, question=question, response_a=first, response_b=second, rubric=self.rubric,
                     reference=reference or "")
        completion = self.client.complete([{"role": "user", "content": text}], temperature=self.temperature,
                                          max_tokens=self.max_tokens, logprobs=self.use_logprobs)
        probs = pairwise_probabilities(completion.tokens, completion.top_logprobs) if self.use_logprobs else None
        return parse_pairwise(completion.text), probs

    def judge(self, prompts: Sequence[Prompt], responses_a: Sequence[str], responses_b: Sequence[str],
              references: Sequence[str] | None = None) -> list[PairwiseResult]:
        refs = list(references) if references is not None else [None] * len(prompts)
        questions = [_question(p) for p in prompts]
        forward = _map(self._ask, list(zip(questions, responses_a, responses_b, refs)), self.concurrency)
        swapped = _map(self._ask, list(zip(questions, responses_b, responses_a, refs)), self.concurrency) if self.both_orders else None
        results = []
        for i, (fwd, fwd_probs) in enumerate(forward):
            if swapped is None:
                results.append(PairwiseResult(fwd.winner, fwd, None, fwd_probs))
                continue
            raw_swap, swap_probs = swapped[i]
            back = PairwiseVerdict(_SWAP[raw_swap.winner], raw_swap.raw)
            probs = None
            if fwd_probs and swap_probs:
                probs = {"A": (fwd_probs["A"] + swap_probs["B"]) / 2, "B": (fwd_probs["B"] + swap_probs["A"]) / 2,
                         "tie": (fwd_probs["tie"] + swap_probs["tie"]) / 2}
            if fwd.winner is None or back.winner is None:
                winner = None
            elif fwd.winner == back.winner:
                winner = fwd.winner
            elif self.on_disagreement == "average" and probs:
                winner = max(probs, key=lambda w: probs[w])
            else:
                winner = "tie"
            results.append(PairwiseResult(winner, fwd, back, probs))
        return results


def pairwise_summary(results: Sequence[PairwiseResult]) -> dict[str, float]:
    """Parse failures, tie rate, flip rate and first-position win rate over judged pairs.

    The first-position win rate counts, over every parsed single-order verdict that is not a
    tie, how often the response shown first won (0.5 for an unbiased judge).
    """
    single = []
    for r in results:
        single.append(r.forward.winner)
        if r.swapped is not None:
            single.append(_SWAP[r.swapped.winner])  # back to "as shown": A = shown first
    decided = [v for v in single if v in ("A", "B")]
    flips = [r.flipped for r in results if r.flipped is not None]
    finals = [r.winner for r in results if r.winner is not None]
    return {
        "pairs": len(results),
        "parse_failures": sum(v is None for v in single),
        "unresolved_pairs": sum(r.winner is None for r in results),
        "flip_rate": sum(flips) / len(flips) if flips else float("nan"),
        "first_position_win_rate": sum(v == "A" for v in decided) / len(decided) if decided else float("nan"),
        "tie_rate": sum(w == "tie" for w in finals) / len(finals) if finals else float("nan"),
    }


class PointwiseJudge:
    """Score each response on a scale; a :class:`~rewardlab.scoring.Scorer`, so BoN and evaluation take it."""

    def __init__(self, client: ChatClient, template: str = "pointwise", rubric: str = "", scale: tuple[int, int] = (1, 10),
                 temperature: float = 0.0, max_tokens: int = 512, concurrency: int = 4, model_id: str | None = None):
        self.client, self.template, self.rubric, self.scale = client, load_template(template), rubric, scale
        self.temperature, self.max_tokens, self.concurrency = temperature, max_tokens, concurrency
        self.template_name, self.model_id = template, model_id

    def describe(self) -> dict[str, Any]:
        """See :class:`~rewardlab.scoring.protocol.Scorer`: the judge model, its prompt and sampling settings."""
        import hashlib

        return {"kind": "judge", "model": self.model_id, "record": {},
                "settings": {"template": self.template_name, "template_sha256": hashlib.sha256(self.template.encode()).hexdigest()[:16],
                             "rubric": self.rubric, "scale": list(self.scale), "temperature": self.temperature,
                             "max_tokens": self.max_tokens}}

    def judge(self, prompts: Sequence[Prompt], responses: Sequence[str]) -> list[Any]:
        def ask(job: tuple[Prompt, str]) -> Any:
            text = _fill(self.template, question=_question(job[0]), response=job[1], rubric=self.rubric,
                         scale_min=self.scale[0], scale_max=self.scale[1])
            completion = self.client.complete([{"role": "user", "content": text}], temperature=self.temperature,
                                              max_tokens=self.max_tokens)
            return parse_score(completion.text, *self.scale)

        return _map(ask, list(zip(prompts, responses)), self.concurrency)

    def score(self, prompts: Sequence[Prompt], responses: Sequence[str]) -> list[float]:
        """Scores; raises :class:`JudgeParseError` (with the raw outputs) if any cannot be parsed."""
        verdicts = self.judge(prompts, responses)
        failed = [v.raw for v in verdicts if v.score is None]
        if failed:
            raise JudgeParseError(f"{len(failed)} of {len(verdicts)} judge outputs had no parseable score", failed)
        return [float(v.score) for v in verdicts]


class ListwiseJudge:
    """Rank K responses to one prompt; returns :class:`~rewardlab.judges.parsing.RankingVerdict` s."""

    def __init__(self, client: ChatClient, template: str = "listwise", rubric: str = "", temperature: float = 0.0,
                 max_tokens: int = 512):
        self.client, self.template, self.rubric = client, load_template(template), rubric
        self.temperature, self.max_tokens = temperature, max_tokens

    def rank(self, prompt: Prompt, responses: Sequence[str]) -> Any:
        listing = "\n\n".join(f"[Response {i + 1}]\n{r}" for i, r in enumerate(responses))
        text = _fill(self.template, question=_question(prompt), responses=listing, k=len(responses), rubric=self.rubric)
        completion = self.client.complete([{"role": "user", "content": text}], temperature=self.temperature,
                                          max_tokens=self.max_tokens)
        return parse_ranking(completion.text, len(responses))


