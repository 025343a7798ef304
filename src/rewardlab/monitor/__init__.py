"""Reward-hacking monitors for live RL runs: streaming window statistics against a reference, alarm rules with a
patience, a latent-space outlier monitor over the reward model's own features, a TRL callback, and the reader and
report for rollout dumps of any trainer (``rewardlab monitor``). docs/monitoring.md has the defaults and their
measured lead times and false-alarm rates.

* ``stats``: pure statistics (drift, repetition, rank correlation, KL from log-probs).
* ``rollouts``: the :class:`Rollout` record and the dump reader (field names mapped by :class:`RolloutFields`).
* ``rules``: :class:`AlarmRule` and :class:`Alarm`.
* ``monitor``: :class:`RewardHackingMonitor` and :class:`MonitorConfig`.
* ``latent``: :class:`LatentOutlierMonitor` (InfoRM-style Mahalanobis outliers).
* ``callback``: :class:`RewardHackingCallback` for TRL trainers (needs ``transformers``).
* ``report``: :func:`monitor_file`, the report and the plot.
"""

from __future__ import annotations

from ..lazy import lazy_exports

_EXPORTS = {
    "Rollout": "rollouts", "RolloutFields": "rollouts", "read_rollouts": "rollouts",
    "Alarm": "rules", "AlarmRule": "rules",
    "MonitorConfig": "monitor", "RewardHackingMonitor": "monitor", "WindowPlugin": "monitor", "default_rules": "monitor",
    "LatentOutlierMonitor": "latent",
    "HeldoutProbe": "callback", "RewardHackingCallback": "callback",
    "MonitorResult": "report", "monitor_file": "report",
}
__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
