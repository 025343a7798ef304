"""Alarm rules: a statistic, a threshold, a direction and a patience (consecutive windows), and the alarm they raise."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from ..errors import ConfigError

__all__ = ["Alarm", "AlarmRule", "RuleState"]


@dataclass(frozen=True)
class AlarmRule:
    """Fire when ``statistic`` is beyond ``threshold`` (``above`` or ``below``) in ``patience`` consecutive windows.

    A statistic that is undefined in a window (``nan``, e.g. no gold given) never counts as crossed and resets
    the streak. A rule fires once per excursion: it re-arms after a window back on the safe side.

    >>> rule = AlarmRule("length_growth", "length_ratio", 1.5, patience=2)
    >>> rule.crossed(1.7), rule.crossed(float("nan"))
    (True, False)
    """

    name: str
    statistic: str
    threshold: float
    direction: Literal["above", "below"] = "above"
    patience: int = 2

    def __post_init__(self) -> None:
        if self.direction not in ("above", "below"):
            raise ConfigError(f"rule {self.name!r}: direction must be 'above' or 'below', got {self.direction!r}")
        if self.patience < 1:
            raise ConfigError(f"rule {self.name!r}: patience must be >= 1, got {self.patience}")
        if not math.isfinite(self.threshold):
            raise ConfigError(f"rule {self.name!r}: threshold must be finite, got {self.threshold}")

    def crossed(self, value: float | None) -> bool:
        if value is None or not math.isfinite(value):
            return False
        return value > self.threshold if self.direction == "above" else value < self.threshold


@dataclass(frozen=True)
class Alarm:
    """What fired: the rule, the statistic and its value against the threshold, at which step, with the window's numbers."""

    step: int
    rule: str
    statistic: str
    value: float
    threshold: float
    direction: str
    patience: int
    window: dict[str, Any] = field(repr=False)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        """One line: ``step 40: length_growth: length_ratio = 1.83 > 1.5 for 2 windows (steps 33-40)``."""
        sign = ">" if self.direction == "above" else "<"
        return (f"step {self.step}: {self.rule}: {self.statistic} = {self.value:.4g} {sign} {self.threshold:g} for "
                f"{self.patience} window(s) (steps {self.window.get('first_step')}-{self.window.get('last_step')})")


@dataclass
class RuleState:
    """A rule's streak of consecutive crossed windows, and whether it has fired in the current excursion."""

    streak: int = 0
    active: bool = False

    def update(self, rule: AlarmRule, value: float | None) -> bool:
        """Advance by one window; True when the rule fires at this window."""
        if not rule.crossed(value):
            self.streak, self.active = 0, False
            return False
        self.streak += 1
        if self.streak >= rule.patience and not self.active:
            self.active = True
            return True
        return False
