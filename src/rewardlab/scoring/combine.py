"""Rules that turn a multi-objective model's head rewards into one reward."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ConfigError

__all__ = ["ConstrainedReward", "WeightedSum"]


@dataclass(frozen=True)
class WeightedSum:
    """Combine named rewards as ``sum_k w_k r_k`` (heads without a weight count 0).

    >>> WeightedSum({"helpful": 1.0, "safe": 0.5})({"helpful": 2.0, "safe": -2.0, "fluent": 9.0})
    1.0
    """

    weights: dict[str, float]
    """Multi-objective reward models: one reward as a weighted sum of heads, e.g. {"helpfulness": 1, "safety": 0.5}."""

    def __call__(self, rewards: dict[str, float]) -> float:
        unknown = sorted(set(self.weights) - set(rewards))
        if unknown:
            raise ConfigError(f"weights name heads the model does not have: {unknown}; it has {sorted(rewards)}")
        return float(sum(w * rewards[name] for name, w in self.weights.items()))


@dataclass(frozen=True)
class ConstrainedReward:
    """The ``primary`` head's reward, or ``penalty`` when any constraint head is below its threshold.

    ``penalty`` is an absolute value (``-inf`` by default, so a violating response never wins a
    best-of-N), as in "maximize helpfulness subject to RM_safety > tau".

    >>> rule = ConstrainedReward("helpful", {"safe": 0.0})
    >>> rule({"helpful": 3.0, "safe": 0.5}), rule({"helpful": 3.0, "safe": -0.1})
    (3.0, -inf)
    """

    primary: str
    """Multi-objective reward models: the head to maximize subject to 'thresholds'."""
    thresholds: dict[str, float]
    """Multi-objective reward models: constraint heads and their minimum rewards, e.g. {"safety": 0.0}."""
    penalty: float = float("-inf")
    """Multi-objective reward models: the reward when a constraint fails."""

    def __call__(self, rewards: dict[str, float]) -> float:
        unknown = sorted(({self.primary} | set(self.thresholds)) - set(rewards))
        if unknown:
            raise ConfigError(f"constraint names heads the model does not have: {unknown}; it has {sorted(rewards)}")
        if any(rewards[name] < tau for name, tau in self.thresholds.items()):
            return self.penalty
        return float(rewards[self.primary])
