"""Anthropic HH transcripts (``"\\n\\nHuman: ...\\n\\nAssistant: ..."``) and the one rule for string prompts.

**The rule, at every entry point** (file readers, ``Scorer.score``, ``/v1/score``, ``/get_reward``, the TRL and verl
adapters, generation): a string prompt whose first non-space characters are ``"\\n\\nHuman:"`` is an HH transcript and
becomes its turns (``Human`` -> user, ``Assistant`` -> assistant; one trailing empty ``"\\n\\nAssistant:"``, the cue
HH prompts end with, is dropped); any other string is one user message. So the same (prompt, response) gets one
reward whichever way it arrives.
"""

from __future__ import annotations

import re
from typing import Any

from ..errors import DataFormatError
from .records import Message, Role

__all__ = ["looks_hh", "parse_hh_transcript", "prompt_messages"]

_HH_TURN = re.compile(r"\n\n(Human|Assistant):")
_HH_ROLES: dict[str, Role] = {"Human": "user", "Assistant": "assistant"}
_HH_CUE = re.compile(r"\n\nAssistant:\s*$")


def looks_hh(value: Any) -> bool:
    """A full HH transcript: starts with a Human turn and has an Assistant turn.

    >>> looks_hh("\\n\\nHuman: hi\\n\\nAssistant: hello"), looks_hh("Human: hi")
    (True, False)
    """
    return isinstance(value, str) and value.lstrip(" ").startswith("\n\nHuman:") and "\n\nAssistant:" in value


def parse_hh_transcript(text: str, location: str = "", field_name: str = "chosen") -> tuple[tuple[Message, ...], str]:
    """Split an Anthropic HH transcript into (prompt messages, final assistant reply).

    >>> prompt, reply = parse_hh_transcript("\\n\\nHuman: Hi\\n\\nAssistant: Hello!")
    >>> [(m.role, m.content) for m in prompt], reply
    ([('user', 'Hi')], 'Hello!')
    """
    pieces = _HH_TURN.split(text)
    if pieces[0].strip() or len(pieces) < 3:
        raise DataFormatError(location, "not an HH transcript (expected '\\n\\nHuman:' first)", field_name)
    turns = [Message(_HH_ROLES[pieces[i]], pieces[i + 1].strip()) for i in range(1, len(pieces), 2)]
    if turns[-1].role != "assistant":
        raise DataFormatError(location, "HH transcript must end with an '\\n\\nAssistant:' turn", field_name)
    return tuple(turns[:-1]), turns[-1].content


def prompt_messages(text: str, location: str = "") -> tuple[Message, ...]:
    """The messages of a string prompt under the module's rule.

    >>> [(m.role, m.content) for m in prompt_messages("\\n\\nHuman: Hi\\n\\nAssistant: Yes?\\n\\nHuman: Why\\n\\nAssistant:")]
    [('user', 'Hi'), ('assistant', 'Yes?'), ('user', 'Why')]
    >>> prompt_messages("Why is the sky blue?"), prompt_messages("")
    ((Message(role='user', content='Why is the sky blue?'),), ())
    """
    if not text.lstrip(" ").startswith("\n\nHuman:"):
        return (Message("user", text),) if text else ()
    body = _HH_CUE.sub("", text.rstrip(" "))
    return parse_hh_transcript(body + "\n\nAssistant:", location, "prompt")[0]
