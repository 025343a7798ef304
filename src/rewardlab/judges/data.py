"""Pairs to judge, with optional human votes: converters for the pair formats and PandaLM's layout."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..data.readers import iter_records, pair_sides, scalar_as_text
from ..data.records import Message
from ..errors import DataFormatError

__all__ = ["JudgeItem", "read_judge_items", "read_verdict_file"]

_PANDALM_VOTE = {0: "tie", 1: "A", 2: "B"}


@dataclass(frozen=True)
class JudgeItem:
    """Response A and B to a prompt; ``human_votes`` as "A" / "B" / "tie" when known."""

    prompt: tuple[Message, ...]
    response_a: str
    response_b: str
    human_votes: tuple[str, ...] = ()
    key: str = ""
    source: str = ""


def _convert(record: Mapping, location: str) -> JudgeItem:
    if "response1" in record and "instruction" in record:  # PandaLM test set
        prompt = record["instruction"] + ("\n\n" + record["input"] if record.get("input") else "")
        votes = []
        for name in ("annotator1", "annotator2", "annotator3"):
            if name in record:
                if record[name] not in _PANDALM_VOTE:
                    raise DataFormatError(location, f"expected 0, 1 or 2, got {record[name]!r}", name)
                votes.append(_PANDALM_VOTE[record[name]])
        return JudgeItem((Message("user", prompt),), scalar_as_text(record["response1"], location, "response1"),
                         scalar_as_text(record["response2"], location, "response2"), tuple(votes),
                         str(record.get("idx", location)), location)
    (prompt, chosen), (_, rejected) = pair_sides(record, location)
    # a preference pair: the human verdict is that the chosen reply (shown as A) is better
    return JudgeItem(prompt, chosen, rejected, ("A",), str(record.get("id", location)), location)


def read_judge_items(source: str, limit: int | None = None) -> list[JudgeItem]:
    items: list[Any] = []
    for location, record in iter_records(source):
        if limit is not None and len(items) >= limit:
            break
        items.append(_convert(record, location))
    if not items:
        raise DataFormatError(source, "contains no records")
    return items


def read_verdict_file(source: str) -> dict[str, str | None]:
    """Shipped judge verdicts keyed by ``idx``: PandaLM-7B (``pandalm_result`` 0/1/2) or GPT
    (``gpt_result`` "1"/"2"/"Tie"/"garbage"); unparseable verdicts are None."""
    out: dict[str, str | None] = {}
    gpt = {"1": "A", "2": "B", "tie": "tie"}
    for location, record in iter_records(source):
        if "pandalm_result" in record:
            out[str(record["idx"])] = _PANDALM_VOTE.get(record["pandalm_result"])
        elif "gpt_result" in record:
            out[str(record["idx"])] = gpt.get(str(record["gpt_result"]).strip().lower())
        else:
            raise DataFormatError(location, "expected 'pandalm_result' or 'gpt_result' (with 'idx')", "pandalm_result")
    return out
