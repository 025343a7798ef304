"""A round's new preference data: the current policy answers the labelling prompts, every pair of its replies
with different labels becomes a preference pair, and the reward model is fine-tuned on old plus new pairs.

Labellers: a scorer (the gold, an LLM judge, the proxy itself), or people: the pairs go to
``round_<r>/pairs_to_label.jsonl`` (id, prompt, reply_a, reply_b) and the run stops until
``round_<r>/labels.jsonl`` (id, preferred: "a", "b" or "tie") is there.
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..data.records import PreferencePair
from ..data.templating import as_messages
from ..errors import DataFormatError
from ..jsonsafe import dumps
from ..metrics import pairwise_accuracy
from ..scoring.protocol import Scorer

__all__ = ["LabelledPairs", "candidate_pairs", "export_for_people", "import_people_labels", "label_with_scorer",
           "reward_model_accuracy"]


@dataclass(frozen=True)
class LabelledPairs:
    """Pairs that got a preference, and how many candidate pairs were ties (kept out, counted)."""

    pairs: list[PreferencePair]
    prompt_ids: list[int]
    ties: int


def candidate_pairs(prompts: Sequence[Any], replies: Sequence[Sequence[str]]) -> list[tuple[int, str, str]]:
    """Every unordered pair of distinct replies to the same prompt: ``(prompt index, reply a, reply b)``.

    >>> candidate_pairs(["q"], [["x", "y", "x"]])
    [(0, 'x', 'y'), (0, 'y', 'x')]
    """
    out = []
    for i, group in enumerate(replies):
        for a, b in itertools.combinations(range(len(group)), 2):
            if group[a] != group[b]:
                out.append((i, group[a], group[b]))
    return out


def label_with_scorer(prompts: Sequence[Any], candidates: Sequence[tuple[int, str, str]], labeller: Scorer) -> LabelledPairs:
    """The reply the labeller scores higher is chosen; equal scores are ties (counted, not used)."""
    flat_prompts = [prompts[i] for i, _, _ in candidates for _ in (0, 1)]
    flat_replies = [r for _, a, b in candidates for r in (a, b)]
    scores = labeller.score(flat_prompts, flat_replies) if candidates else []
    pairs, ids, ties = [], [], 0
    for k, (i, a, b) in enumerate(candidates):
        sa, sb = scores[2 * k], scores[2 * k + 1]
        if sa == sb:
            ties += 1
            continue
        chosen, rejected = (a, b) if sa > sb else (b, a)
        pairs.append(PreferencePair(as_messages(prompts[i]), chosen, rejected, source=f"rlhf:prompt{i}"))
        ids.append(i)
    return LabelledPairs(pairs, ids, ties)


def export_for_people(prompts: Sequence[Any], candidates: Sequence[tuple[int, str, str]], path: str | os.PathLike) -> int:
    """Write the pairs to label (``id``, ``prompt``, ``reply_a``, ``reply_b``); returns the count."""
    rows = [{"id": f"pair-{k}", "prompt_index": i, "prompt": prompts[i], "reply_a": a, "reply_b": b}
            for k, (i, a, b) in enumerate(candidates)]
    Path(path).write_text("".join(dumps(r) + "\n" for r in rows))
    return len(rows)


def import_people_labels(exported: str | os.PathLike, labels: str | os.PathLike) -> LabelledPairs:
    """Read people's labels back: every exported id must be labelled once with ``"a"``, ``"b"`` or ``"tie"``, and
    nothing else; a mismatch is a :class:`~rewardlab.errors.DataFormatError` naming the line."""
    pending = {}
    for line in Path(exported).read_text().splitlines():
        row = json.loads(line)
        pending[row["id"]] = row
    seen: dict[str, str] = {}
    for lineno, line in enumerate(Path(labels).read_text().splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{labels}:{lineno}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataFormatError(where, f"malformed JSON ({err.msg})") from None
        if not isinstance(row, dict) or row.get("id") not in pending:
            raise DataFormatError(where, f"id {row.get('id') if isinstance(row, dict) else row!r} is not one of the exported "
                                         f"pairs in {exported}", "id")
        if row["id"] in seen:
            raise DataFormatError(where, f"pair {row['id']} is labelled twice", "id")
        if row.get("preferred") not in ("a", "b", "tie"):
            raise DataFormatError(where, f"expected 'a', 'b' or 'tie', got {row.get('preferred')!r}", "preferred")
        seen[row["id"]] = row["preferred"]
    missing = sorted(set(pending) - set(seen))
    if missing:
        raise DataFormatError(str(labels), f"{len(missing)} exported pair(s) have no label, e.g. {missing[:3]}", "id")
    pairs, ids, ties = [], [], 0
    for pid, row in pending.items():
        if seen[pid] == "tie":
            ties += 1
            continue
        chosen, rejected = (row["reply_a"], row["reply_b"]) if seen[pid] == "a" else (row["reply_b"], row["reply_a"])
        pairs.append(PreferencePair(as_messages(row["prompt"]), chosen, rejected, source=f"rlhf:{pid}"))
        ids.append(int(row["prompt_index"]))
    return LabelledPairs(pairs, ids, ties)


def reward_model_accuracy(scorer: Scorer, pairs: Sequence[PreferencePair]) -> float:
    """Pairwise accuracy (ties half) of ``scorer`` on ``pairs``; ``nan`` for none."""
    if not pairs:
        return float("nan")
    prompts = [p.prompt for p in pairs]
    chosen = scorer.score(prompts, [p.chosen for p in pairs])
    rejected = scorer.score(prompts, [p.rejected for p in pairs])
    return pairwise_accuracy(np.asarray(chosen), np.asarray(rejected))
