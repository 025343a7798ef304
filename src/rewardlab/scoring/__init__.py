"""Scoring: the ``Scorer`` protocol every consumer of rewards takes, and the scorers behind it.

* ``protocol``: :class:`Scorer` (``score`` + ``describe``) and its optional capabilities.
* ``config``: one frozen config per kind of scorer and wrapper (:data:`ScorerConfig` is their union),
  :func:`scorer_config` from flat options and :func:`build_scorer` (the CLI's scoring flags come from them).
* ``local`` / ``process`` / ``dpo``: a reward model, a process reward model, a DPO policy in this
  process, sharing one batching ``engine``.
* ``combine``: rules for multi-objective heads; ``aggregation``: PRM step aggregation.
* ``files``: :func:`score_file`, streamed and resumable, for any scorer.

Names load on first use, so ``import rewardlab.scoring`` does not load torch for a protocol check.
"""

from __future__ import annotations

from ..lazy import lazy_exports

_EXPORTS = {
    "Scorer": "protocol", "LengthChecked": "protocol", "HeadScorer": "protocol", "FunctionScorer": "protocol",
    "ScorerConfig": "config", "ScorerKind": "config", "build_scorer": "config", "resolve_kind": "config",
    "scorer_config": "config", "RewardModelConfig": "config", "ProcessConfig": "config", "DPOConfig": "config",
    "JudgeConfig": "config", "RemoteConfig": "config", "EnsembleConfig": "config", "EnsembleRule": "config",
    "SavedEnsembleConfig": "config", "HeadEnsembleConfig": "config", "LengthPenaltyConfig": "config",
    "LengthDebiasConfig": "config",
    "WeightedSum": "combine", "ConstrainedReward": "combine",
    "Aggregation": "aggregation", "aggregate": "aggregation",
    "LocalScorer": "local", "load_reward_model": "local", "prefix_groups": "local", "MIN_SHARED_PREFIX": "local",
    "CPU_BATCH_TOKENS": "local",
    "ProcessScorer": "process", "load_process_reward_model": "process",
    "DPOScorer": "dpo", "load_dpo_scorer": "dpo", "sequence_logprobs": "dpo",
    "score_file": "files", "ScoreFileResult": "files", "SCORE_CHUNK_RECORDS": "files",
}
__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
