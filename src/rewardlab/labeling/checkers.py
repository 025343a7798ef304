"""Answer checkers: extract a final answer and compare it with the gold one. Pure functions."""

from __future__ import annotations

import re
from collections.abc import Callable

__all__ = ["Checker", "FINAL_ANSWER_MARKERS", "boxed_answer", "exact_match", "gsm8k_answer", "has_final_answer", "make_checker",
           "normalize_math", "up_to_first_answer"]

Checker = Callable[[str, str], bool]
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


FINAL_ANSWER_MARKERS = ("####", "\\boxed{", "answer is", "A:")
"""Text that states a final answer; a step containing one is checked on that answer, not on a continuation."""


def has_final_answer(text: str) -> bool:
    """Whether ``text`` states a final answer (one of :data:`FINAL_ANSWER_MARKERS`).

    >>> has_final_answer("So she pays 12 dollars.\\n#### 12"), has_final_answer("3 + 4 = 7")
    (True, False)
    """
    return any(marker in text for marker in FINAL_ANSWER_MARKERS)


def up_to_first_answer(text: str) -> str:
    """``text`` cut after the line that states its first final answer (a model that keeps writing after it is held
    to that answer); unchanged when it states none.

    >>> up_to_first_answer("3 + 4 = 7\\n#### 7\\nNext: 5 + 7 = 12\\n#### 12")
    '3 + 4 = 7\\n#### 7'
    """
    starts = [text.find(m) for m in FINAL_ANSWER_MARKERS if m in text]
    if not starts:
        return text
    end = text.find("\n", min(starts))
    return text if end < 0 else text[:end]


def gsm8k_answer(text: str) -> str | None:
    """The number after ``####`` (GSM8K), else after ``A:`` or "answer is", else the last number.

    >>> gsm8k_answer("so 3 + 4 = 7\\n#### 7"), gsm8k_answer("The answer is $1,250."), print(gsm8k_answer("no idea"))
    None
    ('7', '1250', None)
    """
    for marker in ("####", "A:", "answer is"):
        if marker in text:
            found = _NUMBER.findall(text.rsplit(marker, 1)[1])
            if found:
                return _clean_number(found[0])
    found = _NUMBER.findall(text)
    return _clean_number(found[-1]) if found else None


def _clean_number(token: str) -> str:
    token = token.replace(",", "").rstrip(".")
    if "." in token:
        token = token.rstrip("0").rstrip(".")
    return token


def boxed_answer(text: str) -> str | None:
    """The content of the last ``\\boxed{...}`` (balanced braces), normalized.

    >>> boxed_answer("so \\\\boxed{\\\\frac{1}{2}}")
    '\\\\frac{1}{2}'
    """
    start = text.rfind("\\boxed{")
    if start < 0:
        return None
    out: list[str] = []
    i, depth = start + len("\\boxed{"), 1
    while i < len(text):
        ch = text[i]
        depth += ch == "{"
        depth -= ch == "}"
        if depth == 0:
            return normalize_math("".join(out))
        out.append(ch)
        i += 1
    return None


def normalize_math(answer: str) -> str:
    """Light MATH-style normalization: spaces, ``\\left``/``\\right``, ``dfrac``, ``$``, trailing ``.``, units of ``^\\circ``.

    >>> normalize_math(" \\\\dfrac{1}{2} ."), normalize_math("90^\\\\circ")
    ('\\\\frac{1}{2}', '90')
    """
    s = answer.strip().strip("$").replace(" ", "").replace("\\left", "").replace("\\right", "")
    s = s.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac").replace("^\\circ", "").replace("^{\\circ}", "")
    s = s.rstrip(".")
    return _clean_number(s) if _NUMBER.fullmatch(s) else s


def exact_match(prediction: str, gold: str) -> bool:
    """Whitespace- and case-insensitive equality of the whole texts."""
    return " ".join(prediction.split()).lower() == " ".join(gold.split()).lower()


def make_checker(kind: str) -> Checker:
    """``gsm8k`` (numbers), ``boxed`` (MATH ``\\boxed{}``), ``exact``; a callable is used as is."""
    if kind == "gsm8k":
        return lambda completion, gold: (a := gsm8k_answer(completion)) is not None and a == (gsm8k_answer(gold) or gold)
    if kind == "boxed":
        return lambda completion, gold: (a := boxed_answer(completion)) is not None and a == (boxed_answer(gold) or normalize_math(gold))
    if kind == "exact":
        return exact_match
    raise ValueError(f"checker must be gsm8k, boxed or exact, got {kind!r}")
