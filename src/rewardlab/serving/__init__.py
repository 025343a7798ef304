"""Serving rewards to RL trainers: the HTTP reward server (``app``) and adapters for TRL and verl (``adapters``).

FastAPI/uvicorn/httpx are the ``serve`` extra (``pip install rewardlab[serve]``), imported here lazily.
"""

from __future__ import annotations

__all__ = ["ServeConfig", "create_app", "serve", "trl_reward_function"]


def __getattr__(name: str):  # noqa: ANN202 - lazy re-exports
    if name in ("ServeConfig", "create_app", "serve"):
        from . import app

        return getattr(app, name)
    if name == "trl_reward_function":
        from . import adapters

        return adapters.trl_reward_function
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
