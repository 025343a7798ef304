"""rewardlab: train, label, use and check reward models for LLM post-training.

Heavy dependencies (transformers, accelerate, datasets) load on first use, so
``import rewardlab`` stays fast.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "Message": "rewardlab.data.records",
    "PreferencePair": "rewardlab.data.records",
    "read_preference_pairs": "rewardlab.data.readers",
    "demo_pairs": "rewardlab.data.demo",
    "RewardModel": "rewardlab.models.reward_model",
    "RewardModelMetadata": "rewardlab.models.io",
    "build_reward_model": "rewardlab.models.io",
    "save_pretrained": "rewardlab.models.io",
    "Scorer": "rewardlab.scoring.protocol",
    "FunctionScorer": "rewardlab.scoring.protocol",
    "ScorerConfig": "rewardlab.scoring.config",
    "RewardModelConfig": "rewardlab.scoring.config",
    "scorer_config": "rewardlab.scoring.config",
    "build_scorer": "rewardlab.scoring.config",
    "LocalScorer": "rewardlab.scoring.local",
    "load_reward_model": "rewardlab.scoring.local",
    "load_process_reward_model": "rewardlab.scoring.process",
    "score_file": "rewardlab.scoring.files",
    "TrainConfig": "rewardlab.training.config",
    "TrainResult": "rewardlab.training.loop",
    "train": "rewardlab.training.loop",
    "run_demo": "rewardlab.demo",
    "bradley_terry_loss": "rewardlab.losses",
    "pairwise_accuracy": "rewardlab.metrics",
}
__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'rewardlab' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
