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
    """Training records: a .jsonl/.json/.parquet file (optionally .gz) or a ``datasets`` name."""
    output_dir: str
    """Where the final model, checkpoints, metrics.jsonl and the resolved config go."""
    objective: Literal["bradley_terry", "davidson", "regression", "plackett_luce", "hybrid", "prm", "prm_3class"] = "bradley_terry"
    """Training objective (docs/objectives.md): pairs, pairs with ties, scores, rankings, or scores + derived pairs."""
    heads: str | None = None
    """Comma-separated names of the reward heads (multi-objective when more than one); also the score fields to read."""
    eval_data: str | None = None
    """Held-out pairs; when unset, ``eval_fraction`` of ``data`` is held out."""
    data_split: str = "train"
    """Split name when ``data`` is a ``datasets`` name."""
    eval_fraction: float = 0.05
    """Fraction of ``data`` held out for evaluation when ``eval_data`` is unset (0 for none)."""
    token_cache: str = "auto"
    """Pairwise and listwise objectives: tokenize once into memory-mapped files and reuse them on later runs with the
    same data file, tokenizer, max_length and objective settings. 'auto': under $REWARDLAB_CACHE/tokens
    (default ~/.cache/rewardlab/tokens); 'off': tokenize in memory every run; any other value: that folder."""
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
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    """fp32 weights; bf16 autocast when 'bf16', or with 'auto' where the GPU/CPU has native bf16 (AVX512-BF16, AMX)."""
    layout: Literal["auto", "packed", "padded"] = "auto"
    """Training batches: 'packed' puts all sequences of a micro-batch into one padding-free row with
    per-sequence attention; 'auto' packs on CPUs when the backbone supports it and pads otherwise, GPUs
    included, where the per-segment attention loop measured slower than padded batches (it says why)."""
    share_prefix: bool = True
    """Packed decoder batches: store the tokens a pair's sequences share (the prompt) once (exact for causal models)."""
    disable_dropout: bool = True
    """Set every dropout probability to 0 (TRL's default for reward models; dropout also halves CPU throughput)."""
    gradient_checkpointing: bool | Literal["auto"] = "auto"
    """Recompute activations in backward to save memory; 'auto' turns it on for decoder (last-token)
    backbones trained on CPU (SmolLM2-135M: ~10% slower, peak memory 6.6 -> 4.4 GB, as TRL's default
    does) and leaves it off for encoders (MiniLM: 25% slower for 0.4 GB) and on GPUs (not measured)."""
    freeze_layers: int = 0
    """Freeze the embeddings and the bottom k transformer blocks (cheap CPU runs)."""
    group_by_length: bool = True
    """Batch pairs of similar length together (less padding), in shuffled order."""
    use_margins: bool = True
    """Subtract a pair's 'margin' field inside the Bradley-Terry loss when present."""
    center_rewards_coef: float = 0.0
    """Reward-centering penalty coefficient (0 disables)."""
    strength_margins: dict[str, float] | None = None
    """Margin per preference-strength label (a pair's 'strength' field), e.g. {"significantly better": 1.0}."""
    strength_weights: dict[str, float] | None = None
    """Loss weight per preference-strength label."""
    tie_strength: float = 1.0
    """Davidson tie parameter nu > 0 (larger: ties more likely at equal rewards)."""
    regression_loss: Literal["mse", "huber"] = "mse"
    """Pointwise loss for regression and hybrid objectives."""
    huber_delta: float = 1.0
    """Huber threshold (in normalized target units)."""
    normalize_targets: Literal["none", "global", "annotator"] = "none"
    """z-normalize regression targets over the data set or per annotator; stats go into the checkpoint."""
    top_k: int | None = None
    """Plackett-Luce: only the first k positions of each ranking count (None: all)."""
    hybrid_alpha: float = 0.5
    """Hybrid: weight of the regression term; 1 - alpha weighs the ranking term."""
    pair_rule: Literal["all", "best_worst", "adjacent"] = "all"
    """Hybrid: how pairs are derived from scores within a prompt."""
    min_score_gap: float = 0.0
    """Hybrid: derive a pair only when the scores differ by more than this (normalized units)."""
    step_separator: str = "\n"
    """PRM: the text joining steps in the reply; a step's score is read at its last token."""
    prm_neutral: Literal["positive", "negative", "ignore"] = "positive"
    """PRM (binary head): how a neutral (0) label of -1/0/+1 data counts."""
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
        if not 0 <= self.hybrid_alpha <= 1:
            raise ConfigError(f"option 'hybrid_alpha' must be in [0, 1], got {self.hybrid_alpha}")
        if self.tie_strength <= 0 or self.huber_delta <= 0:
            raise ConfigError("options 'tie_strength' and 'huber_delta' must be > 0")
        if self.top_k is not None and self.top_k < 1:
            raise ConfigError(f"option 'top_k' must be >= 1, got {self.top_k}")
        if self.num_epochs <= 0 or self.learning_rate <= 0 or self.freeze_layers < 0:
            raise ConfigError("options 'num_epochs' and 'learning_rate' must be > 0 and 'freeze_layers' >= 0")
