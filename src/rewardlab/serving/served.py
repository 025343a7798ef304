"""What the reward server does with a batch of items, apart from HTTP: :class:`ServedScorer` wraps the served
:class:`~rewardlab.scoring.Scorer` (length checks, the too-long policy, HH transcripts in rendered queries, per-head
rows) so that ``app.create_app`` is thin routes over it. Called from the batcher's one worker thread only."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from ..data.transcripts import looks_hh, parse_hh_transcript
from ..errors import DataFormatError, SequenceTooLongError
from ..scoring.protocol import BatchShaped, HeadScorer, LengthChecked, Scorer, TextScorer
from .batcher import CostMeter

__all__ = ["ItemKind", "Result", "ServedScorer"]

ItemKind = Literal["texts", "pairs"]
"""``texts``: rendered queries (``/get_reward`` to a scorer that reads text); ``pairs``: ``(prompt, response)``."""
Result = tuple[Any, Any, bool]
"""One item's answer: ``(reward or None, per-head row or None, whether it was too long)``."""


class ServedScorer:
    """The served scorer with the server's item rules.

    ``too_long`` (``ServeConfig.too_long``): ``truncate`` scores the longest head of an over-long reply that fits,
    ``error`` makes the request fail with :class:`~rewardlab.errors.SequenceTooLongError`, ``null`` / ``penalty``
    answer ``None`` / ``penalty`` for it; ``count_too_long(n)`` is called with each request's count (for /metrics),
    ``observe(rewards, replies)`` after each model call.
    """

    def __init__(self, scorer: Scorer, too_long: str = "truncate", penalty: float = -10.0,
                 count_too_long: Any = None, observe: Any = None):
        self.scorer, self.policy, self.penalty = scorer, too_long, penalty
        self.count_too_long, self.observe = count_too_long, observe
        self.heads = list(scorer.heads) if isinstance(scorer, HeadScorer) else []
        self.multi = len(self.heads) > 1
        self.max_length = scorer.max_length if isinstance(scorer, LengthChecked) else None
        shaped = scorer if isinstance(scorer, BatchShaped) else None
        self.tokens_per_forward: int | None = shaped.max_batch_tokens if shaped is not None else None
        self.shares_prefixes = shaped is not None and shaped.shares_prefixes

    def token_meter(self) -> CostMeter:
        """A fresh cost counter for one batch (:class:`~rewardlab.serving.batcher.CostMeter`): about how many tokens a
        job's items add (characters / 4, English text's ratio), without tokenizing (tokenizing beside the model's
        threads slows both, see batcher.py). When the scorer computes a shared prefix once, the characters an item
        shares with one already in the batch (a prompt's other samples) are not counted again.

        >>> from rewardlab.scoring.protocol import FunctionScorer
        >>> meter = ServedScorer(FunctionScorer(lambda p, r: 0.0)).token_meter()
        >>> meter.cost("pairs", [("What is 2+2?", "4")]), meter.cost("texts", ["abcd" * 10])
        (3.5, 10.0)
        """
        return _PrefixMeter() if self.shares_prefixes else _PlainMeter()

    def _texts(self) -> TextScorer:
        if not isinstance(self.scorer, TextScorer):  # the routes send 'texts' items to text scorers only
            raise TypeError(f"{type(self.scorer).__name__} does not score rendered texts")
        return self.scorer

    @staticmethod
    def split_hh(items: list[str]) -> tuple[list[int], dict[int, Any]]:
        """Rendered queries (scored as given) vs Anthropic HH transcripts, scored as their turns (the one rule for
        string prompts, data/transcripts.py): ``(indices of rendered texts, {index: (prompt turns, reply)})``."""
        hh: dict[int, Any] = {}
        for i, text in enumerate(items):
            if looks_hh(text):
                try:
                    hh[i] = parse_hh_transcript(text)
                except DataFormatError:  # HH-like but not ending in an assistant turn: the text as given
                    pass
        return [i for i in range(len(items)) if i not in hh], hh

    def too_long(self, kind: ItemKind, items: list[Any]) -> list[int]:
        """Indices of the items whose reply cannot fit the scorer's max length even without the prompt."""
        if kind == "texts":
            plain, hh = self.split_hh(items)
            bad = [plain[i] for i in self._texts().too_long_texts([items[i] for i in plain])] if plain else []
            if hh:
                order = list(hh)
                bad += [order[i] for i in self.too_long("pairs", [hh[i] for i in order])]
            return sorted(bad)
        if isinstance(self.scorer, LengthChecked):
            return self.scorer.too_long([p for p, _ in items], [r for _, r in items])
        return []

    def score_items(self, kind: ItemKind, items: list[Any]) -> list[tuple[Any, Any]]:
        """``(reward, per-head row or None)`` per item, one scorer call per kind of item."""
        if kind == "texts":
            plain, hh = self.split_hh(items)
            out: list[Any] = [None] * len(items)
            if plain:
                for i, value in zip(plain, self._texts().score_texts([items[i] for i in plain])):
                    out[i] = (value, None)
            if hh:
                order = list(hh)
                for i, result in zip(order, self.score_items("pairs", [hh[i] for i in order])):
                    out[i] = result
            return out
        prompts, responses = [p for p, _ in items], [r for _, r in items]
        if self.multi and isinstance(self.scorer, HeadScorer):
            heads = self.scorer
            return [(heads.combined(row), row) for row in heads.score_named(prompts, responses)]
        return [(value, None) for value in self.scorer.score(prompts, responses)]

    def truncated(self, kind: ItemKind, item: Any) -> Any:
        """The item with its reply cut to the longest head (in characters) that fits: binary search over the length
        (about 12 length checks for a 4,000-character reply). A rendered query keeps its head, as OpenRLHF's
        server's right-side truncation does."""
        text = item if kind == "texts" else item[1]
        make = (lambda t: t) if kind == "texts" else (lambda t: (item[0], t))
        lo, hi = 0, len(text)  # make(text[:lo]) fits (an empty reply always does), make(text[:hi]) does not
        while hi - lo > 1:
            mid = (lo + hi) // 2
            lo, hi = (mid, hi) if not self.too_long(kind, [make(text[:mid])]) else (lo, mid)
        return make(text[:lo])

    def score_batch(self, kind: ItemKind, groups: list[list[Any]]) -> list[Any]:
        """Per request: its results (:data:`Result` per item), or the too-long error that request alone gets
        (policy 'error'); one scorer call for everything scored."""
        answers: list[Any] = []
        flagged: list[set[int]] = []
        for items in groups:
            bad = self.too_long(kind, items)
            if bad and self.count_too_long is not None:
                self.count_too_long(len(bad))
            refuse = bool(bad) and self.policy == "error"
            answers.append(SequenceTooLongError("too long", tuple(bad), self.max_length) if refuse else None)
            flagged.append(set() if refuse else set(bad))
        if self.policy == "truncate":
            groups = [[self.truncated(kind, item) if i in marks else item for i, item in enumerate(items)]
                      for items, marks in zip(groups, flagged)]
        sent = [item for items, answer, marks in zip(groups, answers, flagged) if answer is None
                for i, item in enumerate(items) if self.policy == "truncate" or i not in marks]
        scored = self.score_items(kind, sent)
        if self.observe is not None:
            self.observe([r for r, _ in scored], [item if kind == "texts" else item[1] for item in sent])
        results = iter(scored)
        fill = None if self.policy == "null" else self.penalty
        out: list[Any] = []
        for items, answer, marks in zip(groups, answers, flagged):
            if answer is not None:
                out.append(answer)
                continue
            rows: list[Result] = []
            for i in range(len(items)):
                if i in marks and self.policy != "truncate":
                    rows.append((fill, {h: fill for h in self.heads} if self.multi else None, True))
                else:
                    reward, row = next(results)
                    rows.append((reward, row, i in marks))
            out.append(rows)
        return out


def _as_text(kind: ItemKind, item: Any) -> str:
    """An item as one string whose prefix is what it shares with others: a rendered query, or prompt then reply."""
    if kind == "texts":
        return item
    prompt, reply = item
    if not isinstance(prompt, str):  # chat messages (dicts or Message records)
        prompt = "\x1e".join(str(m.get("content", "") if isinstance(m, dict) else getattr(m, "content", "")) for m in prompt)
    return f"{prompt}\x1f{reply}"


class _PlainMeter:
    """Every item counts whole (a scorer that shares no prefix)."""

    def cost(self, kind: ItemKind, items: Sequence[Any]) -> float:
        return sum(len(_as_text(kind, item)) for item in items) / 4

    def add(self, kind: ItemKind, items: Sequence[Any]) -> None:
        pass


def _common_chars(a: str, b: str) -> int:
    """Length of the common prefix of ``a`` and ``b``, by bisection over slice comparisons (each one in C)."""
    lo, hi = 0, min(len(a), len(b))
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if a[:mid] == b[:mid] else (lo, mid - 1)
    return lo


class _PrefixMeter:
    """Estimated tokens of one batch with shared prefixes counted once: an item is compared with the first item counted
    that starts with the same 512, 256 or 128 characters (the longest that matches), and only what follows their
    common prefix counts. Shorter prefixes are not looked for (the scorer shares prefixes of 32+ tokens)."""

    KEYS = (512, 256, 128)

    def __init__(self) -> None:
        self.seen: dict[str, str] = {}

    @classmethod
    def _note(cls, seen: dict[str, str], text: str) -> None:
        for k in cls.KEYS:
            if len(text) > k:
                seen.setdefault(text[:k], text)

    def cost(self, kind: ItemKind, items: Sequence[Any]) -> float:
        total = 0
        own: dict[str, str] = {}  # the job's own items (one call with a prompt's samples shares its prompt too)
        for item in items:
            text = _as_text(kind, item)
            earlier = next((seen[text[:k]] for k in self.KEYS for seen in (self.seen, own)
                            if len(text) > k and text[:k] in seen), None)
            total += len(text) - (_common_chars(earlier, text) if earlier is not None else 0)
            self._note(own, text)
        return total / 4

    def add(self, kind: ItemKind, items: Sequence[Any]) -> None:
        for item in items:
            self._note(self.seen, _as_text(kind, item))
