"""Strict JSON for results files: NaN and infinities become ``null`` (strict parsers reject ``NaN``).

A ``null`` metric means "undefined here" (e.g. a flip rate with no pair judged in both orders).
Leaf module: imports nothing from rewardlab.
"""

from __future__ import annotations

import json
import math
from typing import Any

__all__ = ["dumps", "strict"]


def strict(value: Any) -> Any:
    """``value`` with every non-finite float replaced by None, recursively; numpy scalars and arrays become Python.

    >>> strict({"a": float("nan"), "b": [1.0, float("inf")], "c": (2, "x")})
    {'a': None, 'b': [1.0, None], 'c': [2, 'x']}
    """
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: strict(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict(v) for v in value]
    if hasattr(value, "tolist") and callable(value.tolist):  # numpy scalars and arrays, torch tensors
        return strict(value.tolist())
    return value


def dumps(value: Any, **kwargs: Any) -> str:
    """``json.dumps`` of :func:`strict` ``(value)``; never writes ``NaN`` or ``Infinity``.

    >>> dumps({"flip_rate": float("nan")})
    '{"flip_rate": null}'
    """
    return json.dumps(strict(value), allow_nan=False, default=str, **kwargs)
