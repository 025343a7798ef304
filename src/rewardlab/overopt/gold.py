"""A cheap, real gold reward: the programmatic checks behind the built-in demo instructions (``data/demo.py``).

``demo_gold(prompt, reply)`` in [0, 1.5]: 1 when the instruction is followed (the required word is used, the word
limit kept, three bullet points given, the topic addressed) plus 0.5 when the reply is on the asked topic at all.
"""

from __future__ import annotations

import re
from typing import Any

from ..data.templating import Prompt, as_messages
from ..errors import DataFormatError
from ..scoring.protocol import FunctionScorer

__all__ = ["demo_gold", "demo_gold_scorer"]

_TOPIC = re.compile(r"about (?P<topic>[a-z ]+?)(?: and use| as bullet|\.|$)")
_WORD = re.compile(r"use the word '(?P<word>[a-z]+)'")
_LIMIT = re.compile(r"In at most (?P<limit>\d+) words")


def _stem(word: str) -> str:
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    return word[:-1] if word.endswith("s") and len(word) > 3 else word


def demo_gold(prompt: Prompt, reply: str) -> float:
    """Gold reward of ``reply`` to one of the demo's instruction prompts.

    >>> demo_gold("Write two sentences about bees and use the word 'golden'.", "Bees make golden honey.")
    1.5
    >>> demo_gold("In at most 6 words, tell me about trains.", "Trains run on steel rails and carry many people.")
    0.5
    >>> demo_gold("List three facts about rain as bullet points.", "- Rain falls.\\n- Rain fills rivers.\\n- Deserts get little rain.")
    1.5
    """
    messages = as_messages(prompt)
    text = messages[-1].content if messages else ""
    topic_match = _TOPIC.search(text)
    if topic_match is None:
        raise DataFormatError(text[:60], "not one of the demo's instruction prompts (no 'about <topic>')", "prompt")
    topic = topic_match["topic"].removeprefix("the ").strip()
    words = re.findall(r"[a-z]+", reply.lower())
    on_topic = any(_stem(w) == _stem(t) for t in topic.split() for w in words)
    if (word := _WORD.search(text)) is not None:
        followed = word["word"] in words
    elif (limit := _LIMIT.search(text)) is not None:
        followed = 0 < len(reply.split()) <= int(limit["limit"])
    elif "bullet points" in text:
        followed = sum(1 for line in reply.splitlines() if re.match(r"\s*[-*\u2022]\s+\S", line)) >= 3
    else:
        followed = on_topic and len(words) >= 5
    return float(followed) + 0.5 * float(on_topic)


def demo_gold_scorer() -> Any:
    """:func:`demo_gold` as a :class:`~rewardlab.scoring.protocol.Scorer`."""
    return FunctionScorer(demo_gold, name="demo-gold")
