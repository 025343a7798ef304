"""Lazy re-exports for package ``__init__`` modules: names resolve on first use, so importing a package does not
load torch or transformers. Leaf module: imports nothing from rewardlab."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(package: str, exports: Mapping[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package`` whose public ``name`` lives in submodule ``exports[name]``.

    >>> getattr_, dir_ = lazy_exports("rewardlab.monitor", {"AlarmRule": "rules"})
    >>> getattr_("AlarmRule").__name__, dir_()
    ('AlarmRule', ['AlarmRule'])
    """
    names = sorted(exports)

    def __getattr__(name: str) -> Any:
        if name in exports:
            return getattr(importlib.import_module(f"{package}.{exports[name]}"), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return names

    return __getattr__, __dir__
