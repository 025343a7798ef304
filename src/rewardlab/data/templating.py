"""Turn (prompt, response) into token ids: chat template or plain format, then truncation.

Plain format (for tokenizers without a chat template, e.g. BERT/MiniLM), one block per turn::

    Human: {user turn}\\n\\nAssistant: {assistant turn}\\n\\nHuman: ...\\n\\nAssistant: {response}

(a system turn is written ``System: ...``), tokenized with the tokenizer's own special tokens
(``[CLS] ... [SEP]``). With a chat template, the template's text is tokenized as is
(``add_special_tokens=False``: templates carry their own BOS).

Truncation never cuts the response: when the text is longer than ``max_length`` the prompt is
cut from the left (oldest turns first, keeping leading special tokens such as ``[CLS]``); when
the response alone does not fit, :func:`tokenize_conversation` returns ``None`` and callers
drop or reject the item.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Union

from ..errors import ConfigError, DataFormatError
from .records import Message
from .transcripts import prompt_messages

__all__ = ["Prompt", "as_messages", "count_tokens", "render", "tokenize_conversation", "tokenize_counting_cut", "tokenize_steps",
           "tokenize_with_boundary"]

Prompt = Union[str, Sequence[Message], Sequence[Mapping[str, str]]]
_PLAIN_ROLES = {"system": "System", "user": "Human", "assistant": "Assistant"}


def as_messages(prompt: Prompt) -> tuple[Message, ...]:
    """Normalize a prompt given as text, ``Message`` s or ``{"role", "content"}`` dicts.

    A string is one user message, unless it is an Anthropic HH transcript (``"\\n\\nHuman: ..."``): then its turns
    (:func:`~rewardlab.data.transcripts.prompt_messages`, the rule every entry point shares).

    >>> as_messages("Hi")
    (Message(role='user', content='Hi'),)
    >>> [m.role for m in as_messages("\\n\\nHuman: Hi\\n\\nAssistant: Yes?\\n\\nHuman: Why")]
    ['user', 'assistant', 'user']
    """
    if isinstance(prompt, str):
        return prompt_messages(prompt)
    out = []
    for i, item in enumerate(prompt):
        if isinstance(item, Message):
            out.append(item)
        elif isinstance(item, Mapping) and "role" in item and "content" in item:
            out.append(Message(item["role"], item["content"]))
        else:
            raise DataFormatError(f"prompt message {i}", "expected a Message or {'role', 'content'} dict", "prompt")
    return tuple(out)


def render(tokenizer: Any, prompt: Sequence[Message], response: str) -> tuple[str, int]:
    """Render a conversation to text; returns ``(text, n)`` where ``text[:n]`` is the prompt part.

    >>> render(None, (Message("user", "2+2?"),), "4")
    ('Human: 2+2?\\n\\nAssistant: 4', 24)
    """
    if getattr(tokenizer, "chat_template", None):
        messages = [m.as_dict() for m in prompt]
        full = tokenizer.apply_chat_template(messages + [{"role": "assistant", "content": response}], tokenize=False)
        head = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True) if messages else ""
        if full.startswith(head):
            return full, len(head)
        # Some templates rewrite earlier turns (e.g. strip reasoning); fall back to the reply's place.
        start = full.rfind(response) if response else len(full)
        return full, max(start, 0)
    head = "".join(f"{_PLAIN_ROLES[m.role]}: {m.content}\n\n" for m in prompt) + "Assistant: "
    return head + response, len(head)


def count_tokens(tokenizer: Any, items: Sequence[tuple[Sequence[Message], str]]) -> list[int]:
    """Token count of each ``(prompt, response)`` conversation as training and scoring render it (chat template,
    or special tokens added without one), uncut: one batched tokenizer call.

    >>> count_tokens(None, [((Message("user", "hi"),), "a")])
    Traceback (most recent call last):
    ...
    rewardlab.errors.ConfigError: count_tokens needs a tokenizer
    """
    if tokenizer is None:
        raise ConfigError("count_tokens needs a tokenizer")
    texts = [render(tokenizer, as_messages(p), r)[0] for p, r in items]
    templated = bool(getattr(tokenizer, "chat_template", None))
    return [len(ids) for ids in tokenizer(texts, add_special_tokens=not templated, truncation=False)["input_ids"]]


def tokenize_conversation(
    tokenizer: Any, prompt: Sequence[Message], response: str, max_length: int
) -> list[int] | None:
    """Token ids of the conversation, prompt cut from the left to fit ``max_length``.

    Returns ``None`` when the response (plus special tokens) alone exceeds ``max_length``.
    Needs a fast tokenizer (character offsets locate the prompt/response boundary).
    """
    split = tokenize_with_boundary(tokenizer, prompt, response, max_length)
    return None if split is None else split[0]


def _encode(tokenizer: Any, prompt: Sequence[Message], response: str) -> tuple[str, int, list[int], list[tuple[int, int]]]:
    """Render and tokenize with offsets: ``(text, prompt_chars, ids, offsets)``."""
    if not getattr(tokenizer, "is_fast", False):
        raise ConfigError(f"tokenizer {type(tokenizer).__name__} is not a fast tokenizer; offsets are required")
    text, boundary = render(tokenizer, prompt, response)
    templated = bool(getattr(tokenizer, "chat_template", None))
    enc = tokenizer(text, add_special_tokens=not templated, return_offsets_mapping=True, truncation=False)
    return text, boundary, list(enc["input_ids"]), [tuple(o) for o in enc["offset_mapping"]]


def _cut_prompt(ids: list[int], offsets: list[tuple[int, int]], boundary: int, max_length: int) -> tuple[list[int], int, int] | None:
    """Drop prompt tokens from the left (after leading special tokens) until ``max_length`` fits.

    Returns ``(ids, first_response_token, tokens_dropped)``, or None when the response alone is too long.
    """
    lead = 0
    while lead < len(ids) and offsets[lead] == (0, 0):
        lead += 1
    prompt_end = lead
    while prompt_end < len(ids) and offsets[prompt_end][0] < boundary and offsets[prompt_end] != (0, 0):
        prompt_end += 1
    excess = max(0, len(ids) - max_length)
    if excess > prompt_end - lead:
        return None
    return ids[:lead] + ids[lead + excess :], prompt_end - excess, excess


def _tokenize_and_cut(tokenizer: Any, prompt: Sequence[Message], response: str, max_length: int) -> tuple[list[int], int, int] | None:
    """``(ids, first response token, prompt tokens cut)``, or None when the response alone cannot fit."""
    _, boundary, ids, offsets = _encode(tokenizer, prompt, response)
    return _cut_prompt(ids, offsets, boundary, max_length)


def tokenize_counting_cut(
    tokenizer: Any, prompt: Sequence[Message], response: str, max_length: int
) -> tuple[list[int], int] | None:
    """Like :func:`tokenize_conversation`, plus how many prompt tokens were cut to fit (0 when none)."""
    cut = _tokenize_and_cut(tokenizer, prompt, response, max_length)
    return None if cut is None else (cut[0], cut[2])


def tokenize_with_boundary(
    tokenizer: Any, prompt: Sequence[Message], response: str, max_length: int
) -> tuple[list[int], int] | None:
    """Like :func:`tokenize_conversation`, plus the index of the first response token."""
    cut = _tokenize_and_cut(tokenizer, prompt, response, max_length)
    return None if cut is None else (cut[0], cut[1])


def tokenize_steps(
    tokenizer: Any, prompt: Sequence[Message], steps: Sequence[str], max_length: int, separator: str = "\n"
) -> tuple[list[int], list[int]] | None:
    """Token ids of a step-by-step solution and, per step, the index of its last token.

    The steps are joined with ``separator`` into the assistant reply; step k's score is read at
    the last token that starts inside step k's text. Prompts are cut from the left as in
    :func:`tokenize_conversation`; ``None`` when the solution alone cannot fit.
    """
    response = separator.join(steps)
    text, boundary, ids, offsets = _encode(tokenizer, prompt, response)
    start = text.find(response, boundary) if response else boundary
    ends, cursor = [], start
    for step in steps:
        cursor += len(step)
        ends.append(cursor)
        cursor += len(separator)
    positions = []
    for end in ends:
        inside = [i for i, (a, b) in enumerate(offsets) if (a, b) != (0, 0) and a < end]
        positions.append(inside[-1] if inside else 0)
    cut = _cut_prompt(ids, offsets, boundary, max_length)
    return None if cut is None else (cut[0], [p - cut[2] for p in positions])
