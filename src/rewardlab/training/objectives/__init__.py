"""Training objectives: how records become token groups (``Example``), and groups a loss.

Every objective reads its record type, turns each record into an :class:`Example` (a group of
token sequences plus numeric targets), and maps the rewards of a collated batch to a
per-example loss with a pure function from :mod:`rewardlab.losses`. The training loop only
sees this interface, so it is the same loop for every objective.

=================  ====================  =============================================
objective          records               loss
=================  ====================  =============================================
``bradley_terry``  PreferencePair        BT (+ margins, strength weights, centering)
``davidson``       PreferencePair + ties Davidson tie likelihood (BT when nu -> 0)
``regression``     ScoredResponse        MSE / Huber on (normalized) scores, K heads
``plackett_luce``  RankedResponses       listwise PL, optionally top-k truncated
``hybrid``         ScoredResponse        alpha * regression + (1 - alpha) * BT on
                   (grouped by prompt)   pairs derived from scores within a prompt
``prm``            StepLabeledSolution   per-step BCE (``prm_3class``: 3-way CE) at the
                                         step positions of one sequence
=================  ====================  =============================================

One module per family: :mod:`.pairwise` (BT, Davidson), :mod:`.pointwise` (regression, hybrid),
:mod:`.listwise` (Plackett-Luce), :mod:`.process` (PRM); :mod:`.base` holds the protocol and the
shared reading and tokenizing helpers; this module maps an objective config to its objective.
"""

from __future__ import annotations

from typing import Any

from ...data.collate import Example, collate_examples
from ...errors import ConfigError
from ..config import (BradleyTerryConfig, DavidsonConfig, HybridConfig, ObjectiveConfig, PlackettLuceConfig, ProcessConfig,
                     RegressionConfig)
from .base import PAIR_TARGETS, Objective, ObjectiveName, named_targets
from .listwise import ListwiseObjective, derive_pairs
from .pairwise import PairwiseObjective, bootstrap_heads, bootstrap_weights
from .pointwise import HybridObjective, RegressionObjective
from .process import ProcessObjective

__all__ = [
    "Example", "HybridObjective", "ListwiseObjective", "Objective", "ObjectiveName", "PAIR_TARGETS", "PairwiseObjective",
    "ProcessObjective", "RegressionObjective", "bootstrap_heads", "bootstrap_weights", "collate_examples", "derive_pairs",
    "make_objective", "named_targets",
]


def _heads(names: str | None) -> tuple[str, ...]:
    return tuple(h.strip() for h in (names or "score").split(",") if h.strip())


def _pair_heads(config: Any) -> tuple[str, ...]:
    if config.ensemble > 1 and config.ensemble_kind != "heads":  # each member is a plain model; train() runs K of them
        return _heads(config.heads)
    if config.ensemble > 1 and config.heads is not None:
        raise ConfigError("option 'ensemble' names its own heads (boot_0, ...): leave 'heads' unset")
    return bootstrap_heads(config.ensemble) if config.ensemble > 1 else _heads(config.heads)


def _head_count(config: Any) -> int:
    return config.ensemble if config.ensemble_kind == "heads" else 1


_BUILDERS: dict[type, Any] = {
    BradleyTerryConfig: lambda c: PairwiseObjective(_pair_heads(c), False, c.use_margins, c.center_rewards_coef, 1.0,
                                                    c.strength_margins, c.strength_weights, _head_count(c), c.augment,
                                                    c.length_balance),
    DavidsonConfig: lambda c: PairwiseObjective(_pair_heads(c), True, c.use_margins, c.center_rewards_coef, c.tie_strength,
                                                c.strength_margins, c.strength_weights, _head_count(c), c.augment,
                                                c.length_balance),
    RegressionConfig: lambda c: RegressionObjective(_heads(c.heads), c.regression_loss, c.huber_delta, c.normalize_targets),
    PlackettLuceConfig: lambda c: ListwiseObjective(c.top_k, _heads(c.heads)),
    HybridConfig: lambda c: HybridObjective(c.hybrid_alpha, c.regression_loss, c.huber_delta, c.pair_rule, c.min_score_gap,
                                            c.normalize_targets, heads=_heads(c.heads)),
    ProcessConfig: lambda c: ProcessObjective(c.name == "prm_3class", c.prm_neutral, c.step_separator),
}


def make_objective(config: ObjectiveConfig) -> Objective:
    """The objective an objective config (``TrainConfig.objective``) describes, with its options.

    >>> make_objective(PlackettLuceConfig(top_k=2)).top_k
    2
    """
    if type(config) not in _BUILDERS:
        raise ConfigError(f"option 'objective' must be an objective config, got {config!r}")
    return _BUILDERS[type(config)](config)
