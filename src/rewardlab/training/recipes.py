"""Named training recipes: presets of existing :class:`~rewardlab.training.config.TrainConfig` options, given as one
flag (``rewardlab train --recipe robust``) or keyword (``TrainConfig.from_options(recipe="robust", ...)``). An option
given explicitly wins over the recipe's value; the run's ``run_config.json`` records the resolved options, so a recipe
never hides what was trained.

``robust``: length reweighting (chosen-longer and chosen-shorter pairs carry equal total weight; every pair kept),
for pairwise objectives. Chosen by measurement (``benchmarks/bench_robust.py``, PandaLM's human labels, 3 seeds):
accuracy on held-out chosen-shorter pairs 0.33 -> 0.51 at a length-controlled accuracy of 0.58 -> 0.59; adding the
length/format/sycophancy augmentations, the combination issue 33 proposed, gave 0.30 and 0.52 instead (after them
the pairs are already balanced, 49.5% chosen-longer, so reweighting changes nothing), so they are not part of it.
docs/training.md has the table.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from ..errors import ConfigError

__all__ = ["RECIPES", "apply_recipe"]

RECIPES: Mapping[str, Mapping[str, Any]] = MappingProxyType({
    "robust": MappingProxyType({"length_balance": "reweight"}),
})
"""Recipe name -> the options it sets."""


def apply_recipe(name: str | None, options: Mapping[str, Any]) -> dict[str, Any]:
    """``options`` with the recipe's values filled in where ``options`` does not set them.

    >>> apply_recipe("robust", {"length_balance": "drop"})["length_balance"], apply_recipe(None, {"a": 1})
    ('drop', {'a': 1})
    >>> apply_recipe("fast", {})
    Traceback (most recent call last):
    ...
    rewardlab.errors.ConfigError: unknown recipe 'fast'; known: ['robust']
    """
    if name is None:
        return dict(options)
    if name not in RECIPES:
        raise ConfigError(f"unknown recipe {name!r}; known: {sorted(RECIPES)}")
    preset = {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in RECIPES[name].items()}
    return {**preset, **{k: v for k, v in options.items() if v is not None}}
