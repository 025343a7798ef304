"""TrainConfig: every option of a training run, frozen and validated when built; one small config per objective.

``TrainConfig.objective`` is one of the objective configs below, each owning its own options. The CLI
and YAML files still take the flat options (``--objective regression --heads a,b``):
:meth:`TrainConfig.from_options` maps them onto the chosen objective's config, and an option that
belongs to another objective is an error naming the objectives that use it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal, Union

from ..config import validate_fields
from ..errors import ConfigError

__all__ = [
    "BradleyTerryConfig", "DavidsonConfig", "HybridConfig", "OBJECTIVE_CONFIGS", "ObjectiveConfig", "PlackettLuceConfig",
    "ProcessConfig", "RegressionConfig", "TrainConfig", "objective_from_options", "objective_options",
]


def _check_heads(heads: str | None) -> None:
    if heads is not None and not [h for h in heads.split(",") if h.strip()]:
        raise ConfigError(f"option 'heads' must name at least one head, got {heads!r}")


def _check_ensemble(config: Any) -> None:
    if config.ensemble_kind != "heads" and config.ensemble == 1:
        raise ConfigError(f"option 'ensemble_kind' {config.ensemble_kind!r} needs 'ensemble' K > 1")
    if config.augment:
        from ..data.augment import AUGMENTATIONS

        unknown = sorted(set(config.augment) - set(AUGMENTATIONS))
        bad = {k: v for k, v in config.augment.items() if not 0 <= v <= 1}
        if unknown or bad:
            raise ConfigError(f"option 'augment': unknown {unknown} (known: {list(AUGMENTATIONS)}) or rates outside [0, 1]: {bad}")
    if config.ensemble < 1:
        raise ConfigError(f"option 'ensemble' must be >= 1, got {config.ensemble}")
    if config.ensemble > 1 and config.heads is not None:
        raise ConfigError("option 'ensemble' names its own heads (boot_0, ...): leave 'heads' unset")


def _check_positive(config: Any, *names: str) -> None:
    for name in names:
        if getattr(config, name) <= 0:
            raise ConfigError(f"option '{name}' must be > 0, got {getattr(config, name)}")


@dataclass(frozen=True)
class BradleyTerryConfig:
    """Bradley-Terry on preference pairs: -log sigmoid(r_c - r_r - m) (Ouyang et al. arXiv:2203.02155; margins as Llama 2)."""

    name: Literal["bradley_terry"] = "bradley_terry"
    """Objective name."""
    heads: str | None = None
    """Comma-separated names of the reward heads (multi-objective when more than one); a pair's 'attribute' picks its
    head, and for regression/hybrid they are also the score fields to read."""
    use_margins: bool = True
    """Subtract a pair's 'margin' field inside the Bradley-Terry loss when present."""
    center_rewards_coef: float = 0.0
    """Reward-centering penalty coefficient (0 disables)."""
    strength_margins: dict[str, float] | None = None
    """Margin per preference-strength label (a pair's 'strength' field), e.g. {"significantly better": 1.0}."""
    strength_weights: dict[str, float] | None = None
    """Loss weight per preference-strength label."""
    ensemble: int = 1
    """K > 1: train K reward heads on one trunk, each on its own bootstrap resample of the pairs (a cheap ensemble,
    scored as one with member spread; docs/control.md)."""
    ensemble_kind: Literal["heads", "seeds", "lora"] = "heads"
    """Ensembles: 'heads' (K bootstrap heads on one trunk, one model), 'seeds' (K full models trained with seeds
    seed..seed+K-1 into OUTPUT/member_k; K times the cost, members disagree more) or 'lora' (K LoRA adapters, one per
    seed, on the frozen backbone: scored with one base model in memory; lora_rank 8 unless set)."""
    augment: dict[str, float] | None = None
    """Training pairs get augmented copies whose rejected reply carries a pathology, at these rates, e.g.
    {"length": 0.3, "format": 0.2, "sycophancy": 0.2} (docs/control.md; training data only, tokenized in memory)."""
    length_balance: Literal["none", "drop", "reweight"] = "none"
    """Training pairs (after augmentation): 'drop' pairs of the side more often chosen-longer until both sides are
    as common, or 'reweight' them so chosen-longer and chosen-shorter pairs carry equal total weight (keeps every
    pair); the held-out split is left as it is (docs/training.md, recipe 'robust')."""

    def __post_init__(self) -> None:
        validate_fields(self)
        _check_heads(self.heads)
        _check_ensemble(self)


@dataclass(frozen=True)
class DavidsonConfig:
    """Davidson's tie model on pairs with ties (Davidson 1970): ties teach that equal rewards are likely."""

    name: Literal["davidson"] = "davidson"
    """Objective name."""
    heads: str | None = None
    """Comma-separated names of the reward heads."""
    use_margins: bool = True
    """Subtract a pair's 'margin' field when present."""
    center_rewards_coef: float = 0.0
    """Reward-centering penalty coefficient (0 disables)."""
    strength_margins: dict[str, float] | None = None
    """Margin per preference-strength label."""
    strength_weights: dict[str, float] | None = None
    """Loss weight per preference-strength label."""
    tie_strength: float = 1.0
    """Davidson tie parameter nu > 0 (larger: ties more likely at equal rewards)."""
    ensemble: int = 1
    """K > 1: K bootstrap heads on one trunk (see bradley_terry)."""
    ensemble_kind: Literal["heads", "seeds", "lora"] = "heads"
    """Ensembles: 'heads' (K bootstrap heads on one trunk, one model), 'seeds' (K full models trained with seeds
    seed..seed+K-1 into OUTPUT/member_k; K times the cost, members disagree more) or 'lora' (K LoRA adapters, one per
    seed, on the frozen backbone: scored with one base model in memory; lora_rank 8 unless set)."""
    augment: dict[str, float] | None = None
    """Augmented copies of training pairs (see bradley_terry)."""
    length_balance: Literal["none", "drop", "reweight"] = "none"
    """Length balancing of the training pairs (see bradley_terry)."""

    def __post_init__(self) -> None:
        validate_fields(self)
        _check_heads(self.heads)
        _check_positive(self, "tie_strength")
        _check_ensemble(self)


@dataclass(frozen=True)
class RegressionConfig:
    """Pointwise regression (MSE / Huber) to absolute scores, one head per score field."""

    name: Literal["regression"] = "regression"
    """Objective name."""
    heads: str | None = None
    """Comma-separated names of the reward heads, also the score fields to read."""
    regression_loss: Literal["mse", "huber"] = "mse"
    """Pointwise loss for regression and hybrid objectives."""
    huber_delta: float = 1.0
    """Huber threshold (in normalized target units)."""
    normalize_targets: Literal["none", "global", "annotator"] = "none"
    """z-normalize regression targets over the data set or per annotator; stats go into the checkpoint."""

    def __post_init__(self) -> None:
        validate_fields(self)
        _check_heads(self.heads)
        _check_positive(self, "huber_delta")


@dataclass(frozen=True)
class PlackettLuceConfig:
    """Plackett-Luce over ranked lists (Plackett 1975; Luce 1959), optionally top-k truncated."""

    name: Literal["plackett_luce"] = "plackett_luce"
    """Objective name."""
    heads: str | None = None
    """Comma-separated names of the reward heads."""
    top_k: int | None = None
    """Plackett-Luce: only the first k positions of each ranking count (None: all)."""

    def __post_init__(self) -> None:
        validate_fields(self)
        _check_heads(self.heads)
        if self.top_k is not None and self.top_k < 1:
            raise ConfigError(f"option 'top_k' must be >= 1, got {self.top_k}")


@dataclass(frozen=True)
class HybridConfig:
    """alpha * regression + (1 - alpha) * Bradley-Terry on pairs derived from scores within a prompt."""

    name: Literal["hybrid"] = "hybrid"
    """Objective name."""
    heads: str | None = None
    """The one reward head's name (and score field)."""
    hybrid_alpha: float = 0.5
    """Hybrid: weight of the regression term; 1 - alpha weighs the ranking term."""
    regression_loss: Literal["mse", "huber"] = "mse"
    """Pointwise loss."""
    huber_delta: float = 1.0
    """Huber threshold (in normalized target units)."""
    normalize_targets: Literal["none", "global", "annotator"] = "none"
    """z-normalize targets over the data set or per annotator."""
    pair_rule: Literal["all", "best_worst", "adjacent"] = "all"
    """Hybrid: how pairs are derived from scores within a prompt."""
    min_score_gap: float = 0.0
    """Hybrid: derive a pair only when the scores differ by more than this (normalized units)."""

    def __post_init__(self) -> None:
        validate_fields(self)
        _check_heads(self.heads)
        _check_positive(self, "huber_delta")
        if not 0 <= self.hybrid_alpha <= 1:
            raise ConfigError(f"option 'hybrid_alpha' must be in [0, 1], got {self.hybrid_alpha}")
        if self.heads is not None and len([h for h in self.heads.split(",") if h.strip()]) != 1:
            raise ConfigError("option 'heads': the hybrid objective trains one head")


@dataclass(frozen=True)
class ProcessConfig:
    """Process reward model: a score per step (Lightman et al. arXiv:2305.20050; Math-Shepherd arXiv:2312.08935).

    'prm' trains a binary head on hard or soft labels (BCE); 'prm_3class' a 3-class head on -1/0/+1 labels.
    """

    name: Literal["prm", "prm_3class"] = "prm"
    """Objective name: 'prm' (binary head) or 'prm_3class'."""
    step_separator: str = "\n"
    """PRM: the text joining steps in the reply; a step's score is read at its last token."""
    prm_neutral: Literal["positive", "negative", "ignore"] = "positive"
    """PRM (binary head): how a neutral (0) label of -1/0/+1 data counts."""

    def __post_init__(self) -> None:
        validate_fields(self)
        if not self.step_separator:
            raise ConfigError("option 'step_separator' must not be empty")


ObjectiveConfig = Union[BradleyTerryConfig, DavidsonConfig, RegressionConfig, PlackettLuceConfig, HybridConfig, ProcessConfig]
OBJECTIVE_CONFIGS: dict[str, type] = {
    "bradley_terry": BradleyTerryConfig, "davidson": DavidsonConfig, "regression": RegressionConfig,
    "plackett_luce": PlackettLuceConfig, "hybrid": HybridConfig, "prm": ProcessConfig, "prm_3class": ProcessConfig,
}
"""Objective name -> its config class (docs/objectives.md)."""


def objective_options() -> dict[str, list[str]]:
    """Every objective option (flat name) and the objectives that take it, e.g. ``{"top_k": ["plackett_luce"], ...}``."""
    owners: dict[str, list[str]] = {}
    for name, cls in OBJECTIVE_CONFIGS.items():
        for f in dataclasses.fields(cls):
            if f.name != "name":
                owners.setdefault(f.name, []).append(name)
    return owners


def objective_from_options(name: str, options: dict[str, Any]) -> Any:
    """The config of objective ``name`` with ``options`` (flat names); an option of another objective is a
    :class:`ConfigError` naming the objectives that take it.

    >>> objective_from_options("plackett_luce", {"top_k": 2})
    PlackettLuceConfig(name='plackett_luce', heads=None, top_k=2)
    >>> objective_from_options("regression", {"top_k": 2})
    Traceback (most recent call last):
    ...
    rewardlab.errors.ConfigError: option 'top_k' does not apply to the regression objective (it is an option of plackett_luce)
    """
    if name not in OBJECTIVE_CONFIGS:
        raise ConfigError(f"option 'objective' must be one of {list(OBJECTIVE_CONFIGS)}, got {name!r}")
    cls = OBJECTIVE_CONFIGS[name]
    own = {f.name for f in dataclasses.fields(cls)}
    owners = objective_options()
    for option in options:
        if option not in own:
            raise ConfigError(f"option '{option}' does not apply to the {name} objective (it is an option of {', '.join(owners[option])})")
    return cls(**{**options, "name": name})


@dataclass(frozen=True)
class TrainConfig:
    """A reward-model training run. The CLI's ``rewardlab train`` flags mirror these fields."""

    model: str
    """Backbone: a local folder, a Hub name, or ``builtin:minilm`` / ``builtin:smollm2``."""
    data: str
    """Training records: a .jsonl/.json/.parquet file (optionally .gz) or a ``datasets`` name."""
    output_dir: str
    """Where the final model, checkpoints, metrics.jsonl and the resolved config go."""
    objective: ObjectiveConfig = field(default_factory=BradleyTerryConfig)
    """Training objective and its options (docs/objectives.md): a config above, or a name ('regression') for its defaults."""
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
    lora_rank: int = 0
    """Train rank-r LoRA adapters on the attention projections (and the head) of a frozen backbone instead of every
    weight (0: full fine-tuning). The saved model has the adapters merged in (an ordinary HF folder); the adapter
    alone is saved beside it (adapter.safetensors). Needs peft (the 'lora' extra)."""
    lora_alpha: float = 16.0
    """LoRA scale alpha (the update is alpha / r * B A)."""
    anchor_l2: float = 0.0
    """Pre-training anchor: add coef * ||theta - theta0||^2 to the loss, theta0 the backbone's starting weights (0: off;
    keeps a copy of the trained weights in memory)."""
    freeze_layers: int = 0
    """Freeze the embeddings and the bottom k transformer blocks (cheap CPU runs)."""
    group_by_length: bool = True
    """Batch pairs of similar length together (less padding), in shuffled order."""
    eval_every: int = 100
    """Evaluate every N optimizer steps (and at the end)."""
    save_every: int = 100
    """Write a resumable checkpoint every N optimizer steps."""
    keep_checkpoints: int = 2
    """How many recent checkpoints to keep while training."""
    keep_final_checkpoint: bool = False
    """Keep the checkpoints (weights, optimizer, RNG) after a successful run, e.g. to continue it later with a larger
    max_steps; by default they are deleted once the final model is saved (a 4-step MiniLM run's checkpoint is 349 MB)."""
    log_every: int = 10
    """Write the running training loss to metrics.jsonl every N optimizer steps."""
    tie_policy: Literal["half", "zero", "exclude"] = "half"
    """How a tie (r_c == r_r) counts in accuracy: 0.5, 0, or excluded."""
    seed: int = 42
    """Seed for the split, batch order, head initialisation and dropout."""
    resume: bool = False
    """Continue from the latest checkpoint in output_dir (refused when that run had another model, data or objective)."""
    overwrite: bool = False
    """Replace a finished or unfinished run already in output_dir (its checkpoints, metrics and model files); without
    this or resume, a non-empty run folder is refused so that two runs never mix."""
    trust_remote_code: bool = False
    """Allow model code from the model's folder/Hub repo (only when you trust it)."""
    show_progress: bool = True
    """Show a progress bar."""

    def __post_init__(self) -> None:
        if isinstance(self.objective, str):  # a name: that objective with its defaults
            object.__setattr__(self, "objective", objective_from_options(self.objective, {}))
        elif isinstance(self.objective, dict):  # a nested mapping from a YAML/JSON file
            options = dict(self.objective)
            object.__setattr__(self, "objective", objective_from_options(options.pop("name", "bradley_terry"), options))
        if not isinstance(self.objective, tuple(OBJECTIVE_CONFIGS.values())):
            raise ConfigError(f"option 'objective' must be an objective config or name, got {self.objective!r}")
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
        if self.resume and self.overwrite:
            raise ConfigError("options 'resume' and 'overwrite' contradict each other: continue the run, or replace it")
        if self.lora_rank < 0 or self.lora_alpha <= 0:
            raise ConfigError(f"options 'lora_rank' must be >= 0 and 'lora_alpha' > 0, got {self.lora_rank}, {self.lora_alpha}")
        if self.anchor_l2 < 0:
            raise ConfigError(f"option 'anchor_l2' must be >= 0, got {self.anchor_l2}")
        if self.num_epochs <= 0 or self.learning_rate <= 0 or self.freeze_layers < 0:
            raise ConfigError("options 'num_epochs' and 'learning_rate' must be > 0 and 'freeze_layers' >= 0")

    @property
    def objective_name(self) -> str:
        """The objective's name, e.g. ``"bradley_terry"``."""
        return self.objective.name

    @classmethod
    def from_options(cls, **options: Any) -> TrainConfig:
        """Build from flat options, as the CLI and YAML files give them: ``objective`` is a name (or a config or
        nested mapping) and the chosen objective's options sit beside the run's; ``recipe`` names a preset of options
        (:mod:`rewardlab.training.recipes`) that explicit options override.

        >>> TrainConfig.from_options(model="m", data="d", output_dir="o", objective="regression", heads="a,b").objective
        RegressionConfig(name='regression', heads='a,b', regression_loss='mse', huber_delta=1.0, normalize_targets='none')
        """
        from .recipes import apply_recipe

        options = apply_recipe(options.pop("recipe", None), options)  # a named preset; explicit options win
        own = {f.name for f in dataclasses.fields(cls)}
        owners = objective_options()
        unknown = sorted(set(options) - own - set(owners))
        if unknown:
            raise ConfigError(f"unknown option(s) {unknown}; known options: {sorted(own | set(owners))}")
        flat = {k: v for k, v in options.items() if k in owners and k not in own}
        run = {k: v for k, v in options.items() if k in own}
        objective = run.pop("objective", "bradley_terry")
        if isinstance(objective, dict):
            flat = {**{k: v for k, v in objective.items() if k != "name"}, **flat}
            objective = objective.get("name", "bradley_terry")
        if not isinstance(objective, str):
            if flat:
                raise ConfigError(f"options {sorted(flat)} given beside an objective config: set them on the config")
            return cls(objective=objective, **run)
        return cls(objective=objective_from_options(objective, flat), **run)

    def with_options(self, **options: Any) -> TrainConfig:
        """This config with ``options`` (flat names, as :meth:`from_options`) changed; naming another objective
        starts that objective from its defaults (plus any of its options given here).

        >>> base = TrainConfig(model="m", data="d", output_dir="o", objective="davidson")
        >>> base.with_options(tie_strength=2.0, max_steps=5).objective.tie_strength
        2.0
        """
        run = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "objective"}
        name = options.pop("objective", self.objective.name)
        if not isinstance(name, str):
            return dataclasses.replace(self, objective=name, **options)
        kept = {f.name: getattr(self.objective, f.name) for f in dataclasses.fields(self.objective) if f.name != "name"}
        objective_fields = {f.name for f in dataclasses.fields(OBJECTIVE_CONFIGS[name])} if name in OBJECTIVE_CONFIGS else set()
        kept = {k: v for k, v in kept.items() if k in objective_fields} if name != self.objective.name else kept
        return TrainConfig.from_options(**{**run, "objective": name, **kept, **options})
