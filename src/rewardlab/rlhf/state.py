"""The run folder's state file and the loading of a proxy by name, shared by the loop and the round's end."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..jsonsafe import dumps
from ..scoring.protocol import Scorer

__all__ = ["load_scorer", "save_state"]


def save_state(out: Path, state: dict[str, Any]) -> None:
    """Write ``state.json`` atomically (a kill mid-write leaves the previous state)."""
    tmp = out / "state.json.tmp"
    tmp.write_text(dumps(state, indent=2))
    os.replace(tmp, out / "state.json")


def load_scorer(source: str) -> Scorer:
    """The scorer ``source`` names (a reward-model folder, an ensemble listing, a serve URL), as ``--model`` reads it."""
    from ..scoring.config import build_scorer, scorer_config

    return build_scorer(scorer_config(source))
