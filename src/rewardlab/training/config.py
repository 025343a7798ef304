"""TrainConfig: every option of a training run, frozen and validated when built."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..config import validate_fields
from ..errors import ConfigError

__all__ = ["TrainConfig"]


@dataclass(frozen=True)
class TrainConfig:
    """A reward-model training run. The CLI's ``rewardlab train`` flags mirror these fields."""

    model: str
    """Backbone: a local folder, a Hub name, or ``builtin:minilm`` / ``builtin:smollm2``."""
    data: str
    """Training pairs: a .jsonl/.json/.parquet file (optionally .gz) or a ``datasets`` name."""
    output_dir: str
    """Where the final model, checkpoints, metrics.jsonl and the resolved config go."""
    eval_data: str | None = None
    """Held-out pairs; when unset, ``eval_fraction`` of ``data`` is held out."""
    data_split: str = "train"
    """Split name when ``data`` is a ``datasets`` name."""
    eval_fraction: float = 0.05
    """Fraction of ``data`` held out for evaluation when ``eval_data`` is unset (0 for none)."""
    max_pairs: int | None = None
    """Read at most this many records of ``data`` (before dropping)."""
    max_length: int = 512
    """Token budget per sequence; prompts are cut from the left, longer responses dropped."""
    batch_size: int = 8
    """Pairs per device per micro-step (each pair is two sequences in one forward pass)."""
    grad_accum_steps: int = 1
    """Micro-steps per optimizer step; the global batch is batch_size * processes * this."""
    learning_rate: float = 2e-5
    """Peak AdamW learning rate."""
    weight_decay: float = 0.0
    """AdamW decoupled weight decay."""
    warmup_ratio: float = 0.05
    """Fraction of optimizer steps with linear warmup from 0."""
    lr_schedule: Literal["cosine", "linear", "constant"] = "cosine"
    """Decay after warmup."""
    num_epochs: float = 1.0
    """Passes over the training pairs (ignored when max_steps is set)."""
    max_steps: int | None = None
    """Optimizer steps to run; overrides num_epochs."""
    max_grad_norm: float = 1.0
    """Gradient clipping norm (0 disables clipping)."""
    precision: Literal["fp32", "bf16"] = "fp32"
    """Mixed precision through Accelerate: fp32 weights, bf16 autocast when 'bf16'."""
    gradient_checkpointing: bool = False
    """Recompute activations in backward to save memory (slower)."""
    freeze_layers: int = 0
    """Freeze the embeddings and the bottom k transformer blocks (cheap CPU runs)."""
    group_by_length: bool = True
    """Batch pairs of similar length together (less padding), in shuffled order."""
    use_margins: bool = True
    """Subtract a pair's 'margin' field inside the Bradley-Terry loss when present."""
    center_rewards_coef: float = 0.0
    """Reward-centering penalty coefficient (0 disables)."""
    eval_every: int = 100
    """Evaluate every N optimizer steps (and at the end)."""
    save_every: int = 100
    """Write a resumable checkpoint every N optimizer steps."""
    keep_checkpoints: int = 2
    """How many recent checkpoints to keep."""
    log_every: int = 10
    """Write the running training loss to metrics.jsonl every N optimizer steps."""
    tie_policy: Literal["half", "zero", "exclude"] = "half"
    """How a tie (r_c == r_r) counts in accuracy: 0.5, 0, or excluded."""
    seed: int = 42
    """Seed for the split, batch order, head initialisation and dropout."""
    resume: bool = False
    """Continue from the latest checkpoint in output_dir."""
    trust_remote_code: bool = False
    """Allow model code from the model's folder/Hub repo (only when you trust it)."""
    show_progress: bool = True
    """Show a progress bar."""

    def __post_init__(self) -> None:
        validate_fields(self)
        positive = ("max_length", "batch_size", "grad_accum_steps", "eval_every", "save_every", "keep_checkpoints", "log_every")
        for name in positive:
            if getattr(self, name) < 1:
                raise ConfigError(f"option '{name}' must be >= 1, got {getattr(self, name)}")
        if not 0 <= self.eval_fraction < 1:
            raise ConfigError(f"option 'eval_fraction' must be in [0, 1), got {self.eval_fraction}")
        if not 0 <= self.warmup_ratio < 1:
            raise ConfigError(f"option 'warmup_ratio' must be in [0, 1), got {self.warmup_ratio}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ConfigError(f"option 'max_steps' must be >= 1, got {self.max_steps}")
        if self.num_epochs <= 0 or self.learning_rate <= 0 or self.freeze_layers < 0:
            raise ConfigError("options 'num_epochs' and 'learning_rate' must be > 0 and 'freeze_layers' >= 0")
