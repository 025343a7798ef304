"""Optional dependencies: one helper that imports a module of an extra or ends the command with one line naming the
feature and the install command. Leaf module: imports nothing from rewardlab but ``errors``."""

from __future__ import annotations

import importlib
from types import ModuleType

from .errors import RewardlabError

__all__ = ["MissingExtraError", "require"]


class MissingExtraError(RewardlabError, ImportError):
    """A feature needs an optional dependency that is not installed; the message says which extra to install."""


def require(module: str, extra: str, feature: str) -> ModuleType:
    """``import module``, or raise :class:`MissingExtraError` saying ``pip install "rewardlab[extra]"``.

    >>> require("json", "core", "parsing").__name__
    'json'
    >>> require("no_such_module_here", "rl", "rewardlab rlhf")
    Traceback (most recent call last):
    ...
    rewardlab.extras.MissingExtraError: rewardlab rlhf needs 'no_such_module_here': pip install "rewardlab[rl]"
    """
    try:
        return importlib.import_module(module)
    except ImportError as err:
        if err.name and err.name != module and not module.startswith(err.name + "."):
            raise  # the module is there but one of its own imports is broken: show that, not an install hint
        raise MissingExtraError(f"{feature} needs '{module}': pip install \"rewardlab[{extra}]\"") from None
