"""Training-time augmentations against known reward-model pathologies (robust RM training).

Each augmentation copies a training pair and gives its *rejected* reply the feature a reward model
should not reward, so the copy teaches that the feature alone does not make a reply better:

* ``length``: the rejected reply padded with bland filler sentences until it is longer (in words) than
  the chosen one (counters "longer is better", Singhal et al. arXiv:2310.03716);
* ``format``: the rejected reply dressed as Markdown (a header, its sentences as bullets);
* ``sycophancy``: a flattering opening added to the rejected reply ("Great question! ...").

``rate`` is the fraction of training pairs that get an augmented copy (chosen by a hash of the pair, so
runs are reproducible); the originals are kept. Ties are not augmented.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Literal

from ..errors import ConfigError
from .records import PreferencePair

__all__ = ["AUGMENTATIONS", "augment_pairs", "augment_reply"]

Augmentation = Literal["length", "format", "sycophancy"]
AUGMENTATIONS: tuple[str, ...] = ("length", "format", "sycophancy")

_FILLER = ("This is an important point to keep in mind.", "There are many aspects to consider here.",
           "It is worth thinking about this carefully.", "Overall, this covers the main idea.",
           "In other words, the details matter.", "That is a common question.")
_FLATTERY = ("Great question! ", "What a wonderful question! ", "You're absolutely right to ask. ",
             "Excellent point, you clearly know this well. ")


def _sentences(text: str) -> list[str]:
    return [s for s in re.split(r"(?<=[.!?])\s+|\n+", text.strip()) if s.strip()]


def augment_reply(kind: Augmentation, reply: str, target_words: int = 0, key: int = 0) -> str:
    """The reply with one pathology added.

    >>> augment_reply("sycophancy", "It is 4.")
    'Great question! It is 4.'
    >>> augment_reply("format", "First point. Second point.")
    '## Answer\\n\\n- First point.\\n- Second point.'
    >>> len(augment_reply("length", "Short.", target_words=12).split()) > 12
    True
    """
    if kind == "sycophancy":
        return _FLATTERY[key % len(_FLATTERY)] + reply
    if kind == "format":
        return "## Answer\n\n" + "\n".join(f"- {s}" for s in _sentences(reply) or [reply])
    if kind == "length":
        out, i = reply.rstrip(), key
        while len(out.split()) <= target_words:
            out += " " + _FILLER[i % len(_FILLER)]
            i += 1
        return out
    raise ConfigError(f"augmentation must be one of {list(AUGMENTATIONS)}, got {kind!r}")


def augment_pairs(pairs: Sequence[PreferencePair], rates: Mapping[str, float]) -> list[PreferencePair]:
    """``pairs`` plus, for each augmentation, augmented copies of about ``rate`` of them (see the module docstring).

    >>> from rewardlab.data.records import Message
    >>> pairs = [PreferencePair((Message("user", f"q{i}"),), "a long and careful answer", "no") for i in range(100)]
    >>> out = augment_pairs(pairs, {"length": 0.5})
    >>> 30 < len(out) - 100 < 70, all(len(p.rejected.split()) > len(p.chosen.split()) for p in out[100:])
    (True, True)
    """
    for kind, rate in rates.items():
        if kind not in AUGMENTATIONS:
            raise ConfigError(f"option 'augment': unknown augmentation {kind!r}; known: {list(AUGMENTATIONS)}")
        if not 0 <= rate <= 1:
            raise ConfigError(f"option 'augment': rate of {kind!r} must be in [0, 1], got {rate}")
    out = list(pairs)
    for kind, rate in rates.items():
        for pair in pairs:
            if pair.tie:
                continue
            key = zlib.crc32(f"{kind}|{pair.prompt!r}|{pair.chosen}|{pair.rejected}".encode())
            if (key % 10_000) / 10_000 >= rate:
                continue
            rejected = augment_reply(kind, pair.rejected, len(pair.chosen.split()), key)  # type: ignore[arg-type]  # kinds checked on entry
            out.append(replace(pair, rejected=rejected, source=f"{pair.source} (augmented: {kind})"))
    return out
