"""Iterative RLHF on TRL: rounds of GRPO against a rewardlab proxy (KL towards the fixed initial policy, fixed or
adaptive coefficient), evaluation on held-out prompts (proxy, gold, per-sequence KL, length, repetition, win rate),
reward-hacking monitors, labelling of the policy's own replies, reward-model updates, stop rules, and the
over-optimization curve on the RL axis beside best-of-n (docs/rlhf.md).

* ``config``: :class:`RLHFConfig` (one field per ``rewardlab rlhf`` flag) and :func:`quick_config`.
* ``loop``: :func:`run_rlhf`, the loop (GRPO phase, evaluation, round end), resumable.
* ``evaluation``: the evaluator and its statistics; ``labels``: pairs, labellers, people's labels;
  ``rounds``: the reward-model update; ``callbacks``: TRL callbacks (KL coefficient, evaluation);
  ``report``: report.md, rlhf.png, Gao fits, alarm lead times, people's ratings.
"""

from __future__ import annotations

from ..lazy import lazy_exports

_EXPORTS = {"RLHFConfig": "config", "quick_config": "config", "RLHFResult": "loop", "run_rlhf": "loop",
            "import_human_ratings": "report"}
__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
