"""``RLHFConfig``: every option of an iterative RLHF run, one field per ``rewardlab rlhf`` flag, saved in the run
folder and checked on resume."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

from ..config import validate_fields
from ..errors import ConfigError

__all__ = ["RLHFConfig", "quick_config"]

Labeler = Literal["gold", "proxy", "judge", "human"]


@dataclass(frozen=True)
class RLHFConfig:
    """An iterative RLHF run: rounds of (GRPO against the proxy reward model, evaluation, labelling, RM update)."""

    policy: str = "builtin:smollm2"
    """The initial policy (a causal LM folder, Hub name or builtin:smollm2); it is also the fixed reference."""
    proxy: str | None = None
    """The proxy reward: a reward-model folder, an ensemble listing, or a rewardlab serve URL (anything --model of
    `rewardlab score` takes). None with --quick: a MiniLM RM trained on a few demo pairs at the start of the run."""
    proxy_data: str | None = None
    """Preference pairs the proxy was trained on: the 'old' pairs each RM update trains on beside the new ones."""
    gold: str | None = None
    """The gold reward: 'demo' (the demo instructions' programmatic checks) or a reward-model folder / URL; None: no gold."""
    prompts: str | None = None
    """A .jsonl/.json/.parquet of {prompt} records (text or chat messages); None: the built-in demo instructions."""
    eval_prompts: int = 4
    """Held-out prompts evaluated every eval_every steps (the first prompts of the file, never trained or labelled on)."""
    label_prompts: int = 8
    """Prompts the policy answers for each round's new preference pairs (the next ones; never evaluated)."""
    train_prompts: int = 64
    """Prompts GRPO samples from (the rest, up to this many)."""
    eval_samples: int = 4
    """Replies sampled per evaluation prompt at every evaluation (fixed seed, temperature 1)."""
    eval_every: int = 10
    """Optimizer steps between evaluations (and the end of every round)."""
    rounds: int = 2
    """RL phases; after each but the last, the reward model is updated on pairs from the current policy."""
    steps_per_round: int = 30
    """GRPO optimizer steps per round."""
    prompts_per_step: int = 2
    """Prompts per GRPO step."""
    num_generations: int = 4
    """Completions per prompt (the GRPO group)."""
    max_completion_length: int = 48
    """Most new tokens per completion (training and evaluation)."""
    learning_rate: float = 5e-5
    """Policy learning rate (constant schedule: rounds extend the run)."""
    lora_rank: int = 0
    """LoRA rank of the policy (peft); 0 trains every weight."""
    lora_alpha: int = 16
    """LoRA alpha (with lora_rank > 0)."""
    kl_coef: float = 0.0
    """KL coefficient (TRL GRPO's beta) towards the reference; the starting value with kl_control 'adaptive'."""
    kl_control: Literal["fixed", "adaptive"] = "fixed"
    """'adaptive': Ziegler et al.'s controller steers the per-sequence KL to kl_target (needs kl_coef > 0)."""
    kl_target: float = 6.0
    """Target per-sequence KL in nats for the adaptive controller."""
    kl_horizon: float = 10000.0
    """Horizon (in samples) of the adaptive controller."""
    labeler: Labeler = "gold"
    """Who labels each round's pairs: the gold, an LLM judge (judge_model at judge_base_url), the proxy itself, or
    people ('human': the run writes the pairs and stops; --resume continues once the labels file is there)."""
    judge_model: str | None = None
    """The judge's model name (labeler 'judge')."""
    judge_base_url: str | None = None
    """The judge's OpenAI-compatible endpoint (labeler 'judge')."""
    label_samples: int = 4
    """Replies sampled per labelling prompt; every pair of them with different labels becomes a preference pair."""
    rm_steps: int = 40
    """Reward-model fine-tuning steps per update."""
    rm_learning_rate: float = 2e-5
    """Reward-model fine-tuning learning rate."""
    rm_batch_size: int = 8
    """Pairs per reward-model step."""
    min_gold_gain: float | None = None
    """Stop rule: stop when a round improves the evaluation gold by less than this (needs a gold)."""
    kl_budget: float | None = None
    """Stop rule: stop when the evaluated per-sequence KL (k3, nats) exceeds this."""
    stop_on_alarm: bool = True
    """Stop rule: stop when a reward-hacking alarm in stop_alarms fires (rewardlab.monitor)."""
    stop_alarms: str = "proxy_gold_gap,gold_drawdown,repetition,diversity_collapse"
    """Comma-separated monitor rules that stop the run (when stop_on_alarm)."""
    min_distinct: float | None = 0.2
    """Stop rule: stop when the evaluation replies' distinct-2 falls below this (diversity collapse)."""
    monitor_window: int = 32
    """Training rollouts per monitor window (rewardlab.monitor.MonitorConfig.min_window_rollouts)."""
    bon_samples: int = 16
    """Best-of-n pool per evaluation prompt, sampled from the initial policy, for the BoN-vs-RL comparison (0: none)."""
    checkpoint_every: int = 10
    """Steps between resumable checkpoints (the latest one is kept)."""
    seed: int = 0
    """Seed of the RL run, sampling and data order."""
    device: str | None = None
    """Device of the policy and the evaluation (default: cuda when available, else cpu)."""

    def __post_init__(self) -> None:
        validate_fields(self)
        positive = ("eval_prompts", "label_prompts", "train_prompts", "eval_samples", "eval_every", "rounds", "steps_per_round",
                    "prompts_per_step", "num_generations", "max_completion_length", "label_samples", "rm_steps",
                    "rm_batch_size", "monitor_window", "checkpoint_every")
        for name in positive:
            if getattr(self, name) < 1:
                raise ConfigError(f"option '{name}' must be >= 1, got {getattr(self, name)}")
        if self.num_generations < 2:
            raise ConfigError("option 'num_generations' must be >= 2 (GRPO compares completions within a group)")
        if self.lora_rank < 0 or self.kl_coef < 0 or self.bon_samples < 0 or self.learning_rate <= 0:
            raise ConfigError("need lora_rank >= 0, kl_coef >= 0, bon_samples >= 0 and learning_rate > 0")
        if self.kl_control == "adaptive" and self.kl_coef <= 0:
            raise ConfigError("kl_control 'adaptive' needs a starting kl_coef > 0 (TRL builds no reference model at beta 0)")
        if self.labeler == "judge" and not (self.judge_model and self.judge_base_url):
            raise ConfigError("labeler 'judge' needs judge_model and judge_base_url")
        if self.labeler != "judge" and (self.judge_model or self.judge_base_url):
            raise ConfigError("judge_model and judge_base_url are read only with labeler 'judge'")
        if self.lora_rank == 0 and self.lora_alpha != 16:
            raise ConfigError("lora_alpha is read only with lora_rank > 0")
        from ..monitor.monitor import default_rules

        known = {r.name for r in default_rules()}
        unknown = sorted(set(self.stop_alarms_list) - known)
        if unknown:
            raise ConfigError(f"option 'stop_alarms' names unknown rule(s) {unknown}; known: {sorted(known)}")

    @property
    def stop_alarms_list(self) -> list[str]:
        return [name.strip() for name in self.stop_alarms.split(",") if name.strip()]

    def needs_gold(self) -> list[str]:
        """The options that read a gold reward (an error when none is given)."""
        uses = []
        if self.min_gold_gain is not None:
            uses.append("min_gold_gain")
        if self.labeler == "gold":
            uses.append("labeler 'gold'")
        return uses

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_options(cls, **options: Any) -> RLHFConfig:
        """Build from a mapping (a YAML file); an unknown key is an error listing the known ones."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise ConfigError(f"unknown option(s) {unknown}; known options: {sorted(known)}")
        return cls(**options)


def quick_config(**overrides: Any) -> RLHFConfig:
    """``rewardlab rlhf --quick``: SmolLM2-135M on the demo instructions, a MiniLM proxy trained on few demo pairs,
    the demo gold, two rounds of 30 steps, a small KL coefficient (docs/rlhf.md has what it shows)."""
    base = dict(policy="builtin:smollm2", proxy=None, gold="demo", rounds=2, steps_per_round=30, prompts_per_step=2,
                num_generations=4, max_completion_length=48, learning_rate=5e-5, kl_coef=0.01, eval_every=10)
    base.update({k: v for k, v in overrides.items() if v is not None})
    return RLHFConfig.from_options(**base)
