"""Seed and LoRA ensembles: K ordinary runs into one folder, and the ``ensemble.json`` that names them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

from ..errors import ConfigError
from .config import BradleyTerryConfig, DavidsonConfig, TrainConfig

__all__ = ["ENSEMBLE_FILE", "is_member_ensemble", "train_member_ensemble"]

ENSEMBLE_FILE = "ensemble.json"
"""A seeds or LoRA ensemble's folder lists its members here; ``scoring.config.scorer_config`` scores the folder as
their ensemble (it names the file itself: scoring sits below training; a test checks the two agree)."""


def is_member_ensemble(config: TrainConfig) -> bool:
    """True when the objective asks for ``ensemble > 1`` members trained as separate runs (``seeds`` or ``lora``)."""
    objective = config.objective
    return (isinstance(objective, (BradleyTerryConfig, DavidsonConfig)) and objective.ensemble > 1
            and objective.ensemble_kind in ("seeds", "lora"))


def train_member_ensemble(config: TrainConfig, train_one: Callable[[TrainConfig], Any]) -> tuple[Path, list[str], list[Any]]:
    """K runs with seeds ``seed..seed+K-1`` into ``OUTPUT/member_k`` (each resumable and refused or overwritten like
    any run; LoRA members train adapters on the frozen backbone), then ``OUTPUT/ensemble.json`` naming them.

    Returns ``(output folder, member names, what train_one returned for each)``.
    """
    objective = config.objective
    if not is_member_ensemble(config):
        raise ConfigError(f"{config.objective_name} with ensemble={getattr(objective, 'ensemble', 1)}: not a seeds or lora ensemble")
    assert isinstance(objective, (BradleyTerryConfig, DavidsonConfig))  # for the type checker: implied by the check
    out = Path(config.output_dir)
    lora = {"lora_rank": config.lora_rank or 8} if objective.ensemble_kind == "lora" else {}
    members = [f"member_{i}" for i in range(objective.ensemble)]
    results = [train_one(config.with_options(output_dir=str(out / name), seed=config.seed + i, ensemble=1,
                                             ensemble_kind="heads", **lora))
               for i, name in enumerate(members)]
    listing: dict[str, Any] = {"kind": objective.ensemble_kind, "members": members,
                               "seeds": [config.seed + i for i in range(objective.ensemble)]}
    if objective.ensemble_kind == "lora":
        listing["base_model"] = config.model
    (out / ENSEMBLE_FILE).write_text(json.dumps(listing, indent=2))
    return out, members, results
