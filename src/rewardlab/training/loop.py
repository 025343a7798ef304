"""The training loop: one function, read top to bottom, on Accelerate (1 CPU to many GPUs)."""

from __future__ import annotations

import json
import math
import os
import random
import sys
import time

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..config import to_dict
from ..data.collate import collate_targets
from ..data.readers import DropReport
from ..data.token_store import (ExampleView, TokenStore, build_token_store, default_cache_dir, source_fingerprint,
                                store_key, tokenizer_fingerprint)
from ..devices import CpuThreadGovernor, choose_cpu_threads, resolve_precision, tune_cpu_memory
from ..errors import CheckpointError, ConfigError, TrainingDivergedError
from ..losses import l2_anchor_penalty
from ..models.io import RewardModelMetadata, check_max_length, save_pretrained, save_pretrained_atomically
from ..models.packing import choose_layout, pack_for
from ..models.reward_model import RewardModel, transformer_layers
from . import checkpoint as ckpt
from .batching import global_batches, shard, steps_for
from .config import TrainConfig
from .config import BradleyTerryConfig, DavidsonConfig
from .objectives import Example, Objective, collate_examples, make_objective

__all__ = ["TrainResult", "evaluate", "load_tokenized", "load_train_eval_records", "train"]


@dataclass(frozen=True)
class TrainResult:
    """What a finished run produced."""

    output_dir: Path
    steps: int
    final_metrics: dict[str, float]
    drop_summary: str


def _say(accelerator: Any, message: str) -> None:
    if accelerator.is_main_process:
        print(f"[rewardlab] {message}", file=sys.stderr, flush=True)


def load_train_eval_records(config: TrainConfig, objective: Objective) -> tuple[list[Any], list[Any], DropReport]:
    """Read ``data`` (and ``eval_data``) as the objective's records, holding out ``eval_fraction``
    of ``data`` when no eval file is given."""
    records, report = objective.read(config.data, config.data_split, config.max_pairs)
    if config.eval_data:
        eval_records, eval_report = objective.read(config.eval_data, config.data_split, None)
        report.merge(eval_report)
        return records, eval_records, report
    held = set(_held_out(len(records), config.eval_fraction, config.seed))
    return [r for i, r in enumerate(records) if i not in held], [records[i] for i in sorted(held)], report


RUN_FILES = ("checkpoints", "metrics.jsonl", "run_config.json", "trainer_state.json", "rewardlab.json", "config.json",
             "model.safetensors",
             "model.safetensors.index.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
             "chat_template.jinja", "vocab.txt", "vocab.json", "merges.txt", "tokenizer.model", "added_tokens.json",
             "adapter.safetensors", "adapter.json", "ensemble.json")
"""What a training run writes into its output folder (``overwrite`` removes exactly these, never other files)."""


def prepare_output_dir(config: TrainConfig, remove: bool = True) -> None:
    """Keep runs apart: a folder holding another run is refused unless ``resume`` (same model, data and objective,
    checked against its ``run_config.json``) or ``overwrite`` (its run files are removed first)."""
    import shutil

    out = Path(config.output_dir)
    present = [name for name in RUN_FILES if (out / name).exists()] + [p.name for p in out.glob("model-*.safetensors")]
    if not present:
        return
    if config.overwrite:
        for name in present if remove else ():  # one process removes; the others only check
            target = out / name
            shutil.rmtree(target) if target.is_dir() else target.unlink()
        return
    if not config.resume:
        raise ConfigError(f"{out} already holds a training run ({', '.join(present[:4])}{', ...' if len(present) > 4 else ''}): "
                          "pass --resume to continue it or --overwrite to replace it")
    earlier_path = out / "run_config.json"
    if earlier_path.is_file():
        earlier = json.loads(earlier_path.read_text())
        now = json.loads(json.dumps(to_dict(config), default=str))
        from ..data.token_store import source_fingerprint

        changed = [k for k in ("model", "data") if earlier.get(k) != now.get(k)]
        before, after = earlier.get("objective"), now.get("objective")
        if isinstance(before, dict) and isinstance(after, dict):  # options added by a newer rewardlab are not a change
            if any(before[k] != after[k] for k in set(before) & set(after)):
                changed.append("objective")
        elif before != after:
            changed.append("objective")
        if earlier.get("data_fingerprint") not in (None, source_fingerprint(config.data, config.data_split)):
            changed.append("data (the file changed since)")
        if changed:
            first = changed[0].split(" ")[0]
            raise ConfigError(f"cannot resume {out}: its run differs in {', '.join(changed)} ({first} was {earlier.get(first)!r}, "
                              f"now {now.get(first)!r}); use another output folder, or --overwrite")


ENSEMBLE_FILE = "ensemble.json"
"""A seeds ensemble's folder lists its members here; ``build_scorer`` scores the folder as their ensemble."""


def train_seed_ensemble(config: TrainConfig) -> TrainResult:
    """``ensemble_kind='seeds'`` or ``'lora'``: K runs with seeds ``seed..seed+K-1`` into ``OUTPUT/member_k`` (each resumable
    and refused or overwritten like any run; LoRA members train adapters on the frozen backbone), then
    ``OUTPUT/ensemble.json`` naming them."""
    k = config.objective.ensemble  # type: ignore[union-attr]
    out = Path(config.output_dir)
    members, results = [], []
    kind = config.objective.ensemble_kind  # type: ignore[union-attr]
    lora = {"lora_rank": config.lora_rank or 8} if kind == "lora" else {}
    for i in range(k):
        member = config.with_options(output_dir=str(out / f"member_{i}"), seed=config.seed + i, ensemble=1, ensemble_kind="heads",
                                     **lora)
        results.append(train(member))
        members.append(f"member_{i}")
    listing = {"kind": kind, "members": members, "seeds": [config.seed + i for i in range(k)]}
    if kind == "lora":
        listing["base_model"] = config.model
    (out / ENSEMBLE_FILE).write_text(json.dumps(listing, indent=2))
    metrics = {f"{name}/{key}": value for name, r in zip(members, results) for key, value in r.final_metrics.items()}
    return TrainResult(out, results[-1].steps, metrics, results[-1].drop_summary)


def _finished_state(out: Path) -> dict[str, Any]:
    """``trainer_state.json`` of a run that finished in ``out`` (``{}`` if none)."""
    path = out / "trainer_state.json"
    try:
        state = json.loads(path.read_text()) if path.is_file() else {}
    except json.JSONDecodeError:
        return {}
    return state if state.get("finished") else {}


def _last_eval(metrics_path: Path) -> dict[str, float]:
    """The last evaluation line of ``metrics.jsonl`` (without its step), ``{}`` if none."""
    last: dict[str, float] = {}
    if metrics_path.is_file():
        for line in metrics_path.read_text().splitlines():
            row = json.loads(line)
            if any(k.startswith("eval_") for k in row):
                last = {k: v for k, v in row.items() if k != "step"}
    return last


SMALL_EVAL = 30
"""Fewer held-out examples than this and the training log warns that their accuracy means little."""


def _held_out(num_records: int, fraction: float, seed: int) -> list[int]:
    """The record indices held out for evaluation: the first ``fraction`` of a seeded shuffle."""
    order = list(range(num_records))
    random.Random(seed).shuffle(order)
    return order[: int(round(fraction * num_records))]


def load_tokenized(config: TrainConfig, objective: Objective, tokenizer: Any) -> tuple[ExampleView, ExampleView, DropReport, bool]:
    """Tokenized train and held-out examples from the token cache, building it (streaming) on a miss.

    The split is the one :func:`load_train_eval_records` makes (same seed, same record indices), so
    cached and in-memory runs train on the same pairs. Returns ``(train, eval, report, cache_hit)``.
    """
    root = default_cache_dir() if config.token_cache == "auto" else Path(config.token_cache)

    def store_for(source: str, limit: int | None) -> tuple[TokenStore, bool]:
        material = {"source": source_fingerprint(source, config.data_split), "limit": limit,
                    "tokenizer": tokenizer_fingerprint(tokenizer), "max_length": config.max_length, "objective": repr(objective)}
        folder = root / store_key(material)
        if (folder / "meta.json").exists():
            return TokenStore(folder), True
        report, seen = DropReport(), [0]

        def stream() -> Any:
            for index, record in enumerate(objective.iter_read(source, config.data_split, limit, report)):
                seen[0] = index + 1
                for example in objective.tokenize([record], tokenizer, config.max_length, report):
                    yield index, example

        return build_token_store(folder, stream(), report, lambda: seen[0], material), False

    store, hit = store_for(config.data, config.max_pairs)
    report = DropReport()
    report.merge(store.report)
    if config.eval_data:
        held_store, held_hit = store_for(config.eval_data, None)
        report.merge(held_store.report)
        return (ExampleView(store, np.arange(len(store))), ExampleView(held_store, np.arange(len(held_store))),
                report, hit and held_hit)
    held = np.isin(store.record_index, _held_out(store.num_records, config.eval_fraction, config.seed))
    return ExampleView(store, np.flatnonzero(~held)), ExampleView(store, np.flatnonzero(held)), report, hit


def _lr_factor(step: int, total: int, warmup: int, schedule: str) -> float:
    if step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1 + math.cos(math.pi * progress)) if schedule == "cosine" else 1.0 - progress


def model_inputs(group: list[Example], layout: str, pooling: str | None, share_prefix: bool, pad_token_id: int,
                 device: torch.device) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """``(model keyword arguments, batch tensors for the objective)`` for a group of examples, on ``device``.

    ``packed``: one padding-free row and its layout (same rewards in the same row order as the padded
    batch); ``padded``: ids and attention mask. The batch holds ``targets`` and ``group_sizes``.
    """
    if layout == "packed":
        ids, packed = pack_for(pooling, group, share_prefix)
        batch = {k: v.to(device) for k, v in collate_targets(group).items()}
        return {"input_ids": ids.to(device), "layout": packed.to(device)}, batch
    batch = {k: v.to(device) for k, v in collate_examples(group, pad_token_id).items()}
    return {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}, batch


@torch.inference_mode()
def evaluate(
    model: torch.nn.Module, objective: Objective, examples: list[Example], pad_token_id: int, accelerator: Any,
    batch_size: int, tie_policy: str = "half", layout: str = "padded", pooling: str | None = None, share_prefix: bool = False,
    show_progress: bool = False,
) -> dict[str, float]:
    """The objective's metrics over ``examples``, sharded across processes and gathered.

    ``layout="packed"`` (with the model's ``pooling``) scores each batch as one padding-free row,
    as training does; the rewards are the padded pass's (``tests/models/test_packing.py``).
    """
    from accelerate.utils import gather_object
    from tqdm.auto import tqdm

    model.eval()
    rank, world = accelerator.process_index, accelerator.num_processes
    mine = sorted(range(rank, len(examples), world), key=lambda i: examples[i].length)
    rows = []
    starts = range(0, len(mine), batch_size)
    for start in tqdm(starts, desc="evaluating", unit="batch", leave=False, disable=not (show_progress and accelerator.is_main_process)):
        idx = mine[start : start + batch_size]
        inputs, batch = model_inputs([examples[i] for i in idx], layout, pooling, share_prefix, pad_token_id, accelerator.device)
        rewards = model(**inputs).float().cpu()
        for i, part in zip(idx, torch.split(rewards, batch["group_sizes"].tolist())):
            rows.append((i, part.tolist()))
    rows = sorted(gather_object(rows))
    model.train()
    rewards = [torch.tensor(r) for _, r in rows]
    return {f"eval_{k}": v for k, v in objective.metrics(rewards, [examples[i] for i, _ in rows], tie_policy).items()}


def _freeze_bottom(model: RewardModel, k: int) -> None:
    if k == 0:
        return
    trunk = model.hf_model.base_model
    for module in [getattr(trunk, "embeddings", None) or model.hf_model.get_input_embeddings()] + list(
        transformer_layers(model.hf_model)[:k]
    ):
        for param in module.parameters():
            param.requires_grad_(False)


def _disable_dropout(model: torch.nn.Module) -> None:
    """Dropout p = 0 everywhere, including attention dropout kept as a float (Llama's ``attention_dropout``)."""
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
        if isinstance(getattr(module, "attention_dropout", None), float):
            module.attention_dropout = 0.0


GPU_TRAINING_REASON = ("on a GPU, training is faster padded: the per-segment attention loop launches many "
                       "small kernels (docs/benchmarks.md, GPU run); layout='packed' still packs")


def _layout_and_reason(config: TrainConfig, model: torch.nn.Module, device_type: str = "cpu") -> tuple[str, str | None]:
    """``(layout, why packing is unavailable or not chosen, or None)`` for this run's model, objective and device.

    ``auto`` packs on CPUs (measured faster there) and pads on GPUs, where the per-segment loop of
    packed attention measured 52 pairs/s for MiniLM against TRL's padded 190 (H200, bf16).
    """
    reason = model.packing_unsupported_reason() if isinstance(model, RewardModel) else (
        f"the {config.objective_name} objective reads per-token scores from padded batches")
    if reason is None and config.layout == "auto" and device_type == "cuda":
        return "padded", GPU_TRAINING_REASON
    return choose_layout(config.layout, reason), reason


AUTO_CHECKPOINTING_REASON = ("auto: a decoder on CPU, where checkpointing measured ~10% slower and ~35% smaller "
                             "(docs/benchmarks.md); --no-gradient-checkpointing keeps the activations")


def _checkpointing_and_reason(config: TrainConfig, model: torch.nn.Module, device_type: str = "cpu") -> tuple[bool, str | None]:
    """``(gradient checkpointing on?, why 'auto' turned it on, or None)``.

    ``auto`` checkpoints decoder (last-token) backbones on CPUs, as TRL's default does: SmolLM2-135M
    (packed bf16 steps, shared prompts, 10 steps, two runs each) trained at 0.92 instead of 1.02
    pairs/s and peaked at 4.3-4.4 instead of 6.65 GB. MiniLM (an encoder) was 25% slower with it for
    ~0.4 GB, and on GPUs it is not measured, so both keep their activations.
    """
    if config.gradient_checkpointing != "auto":
        return bool(config.gradient_checkpointing), None
    hf_model = getattr(model, "hf_model", None)
    decoder = getattr(model, "pooling", None) == "last_token"
    if decoder and device_type == "cpu" and getattr(hf_model, "supports_gradient_checkpointing", False):
        return True, AUTO_CHECKPOINTING_REASON
    return False, None


def _write_metrics(path: Path, record: dict[str, Any]) -> None:
    with path.open("a") as handle:
        handle.write(json.dumps(record) + "\n")


def check_deepspeed_options(ds_config: dict[str, Any], grad_accum_steps: int, max_grad_norm: float) -> None:
    """Refuse settings DeepSpeed would silently override: under Accelerate, every ``backward`` steps the DeepSpeed
    engine, which accumulates and clips by its own configuration, so rewardlab's micro-batch accumulation and its
    ``max_grad_norm`` must agree with the recipe's.

    >>> check_deepspeed_options({"gradient_clipping": 1.0, "gradient_accumulation_steps": 1}, 1, 1.0)
    >>> check_deepspeed_options({"gradient_clipping": 1.0}, 4, 1.0)
    Traceback (most recent call last):
    ...
    rewardlab.errors.ConfigError: grad_accum_steps=4 under DeepSpeed: the engine steps at every backward; use grad_accum_steps=1 and set the global batch with batch_size
    """
    if grad_accum_steps != 1:
        raise ConfigError(f"grad_accum_steps={grad_accum_steps} under DeepSpeed: the engine steps at every backward; use "
                          "grad_accum_steps=1 and set the global batch with batch_size")
    recipe_gas = ds_config.get("gradient_accumulation_steps", 1)
    if recipe_gas not in (1, "auto"):
        raise ConfigError(f"the DeepSpeed recipe sets gradient_accumulation_steps={recipe_gas}; rewardlab's loop needs 1")
    clip = ds_config.get("gradient_clipping", "auto")
    if clip != "auto" and float(clip) != float(max_grad_norm):
        raise ConfigError(f"max_grad_norm={max_grad_norm} but the DeepSpeed recipe clips at gradient_clipping={clip}; "
                          "DeepSpeed applies its own: make them equal")


def train(config: TrainConfig | None = None, **options: Any) -> TrainResult:
    """Train a reward model; ``train(TrainConfig(...))`` or ``train(model=..., data=..., output_dir=...)``."""
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from tqdm.auto import tqdm

    entered = time.perf_counter()
    config = config.with_options(**options) if config is not None else TrainConfig.from_options(**options)
    if isinstance(config.objective, (BradleyTerryConfig, DavidsonConfig)) and config.objective.ensemble > 1 \
            and config.objective.ensemble_kind in ("seeds", "lora"):
        return train_seed_ensemble(config)
    # Several processes on a machine without CUDA (torchrun, `accelerate launch --multi_gpu`) means
    # CPU DDP over gloo; Accelerate only picks it when told the run is on CPU.
    cpu_ddp = not torch.cuda.is_available() and int(os.environ.get("WORLD_SIZE", "1")) > 1
    engine = [name for name in ("FSDP", "DEEPSPEED") if os.environ.get(f"ACCELERATE_USE_{name}", "false").lower() == "true"]
    if engine and not torch.cuda.is_available():  # Accelerate would fall back to plain DDP without saying so
        raise ConfigError(f"the launch asks for {engine[0].replace('DEEPSPEED', 'DeepSpeed')}, which Accelerate runs on GPUs only; "
                          "this machine has none, so it would silently run plain DDP: launch with "
                          "recipes/accelerate/ddp_cpu_2proc.yaml instead (docs/distributed.md)")
    # Accelerate keeps a per-process singleton; a second train() in one process (notebooks, tests)
    # may ask for another precision. The process group (PartialState) is kept.
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=False)
    precision = resolve_precision(config.precision)
    accelerator = Accelerator(mixed_precision="bf16" if precision == "bf16" else "no", cpu=cpu_ddp)
    prepare_output_dir(config, remove=accelerator.is_main_process)  # every process refuses alike; one removes
    accelerator.wait_for_everyone()
    reuse_memory = tune_cpu_memory(accelerator.device)  # CPU: no page faults on every step's tensors, bounded kernel cache
    governor = None
    if accelerator.device.type == "cpu":
        threads, why = choose_cpu_threads()
        if threads is not None and threads != torch.get_num_threads():
            torch.set_num_threads(threads)
            _say(accelerator, f"CPU threads: {threads} ({why})")
        if accelerator.num_processes == 1:  # re-checked during the run: contention that starts (or ends) mid-run
            # lowered by the busy rule: back up to the cores when the load leaves; else at most what torch had
            governor = CpuThreadGovernor(most=None if threads is not None else torch.get_num_threads())
    out = Path(config.output_dir)
    ckpt_root = out / "checkpoints"
    metrics_path = out / "metrics.jsonl"
    set_seed(config.seed)

    # Data: read, split, tokenize; every drop is counted and reported.
    objective = make_objective(config.objective)
    cached = config.token_cache != "off" and objective.streams  # streamed + memory-mapped (pairwise, listwise)
    if not cached:
        train_raw, eval_raw, report = load_train_eval_records(config, objective)  # before the model: bad data fails fast
        train_raw = objective.augment_training(train_raw)  # e.g. length-padded rejected replies; never the held-out split
        objective = objective.fit(train_raw)  # e.g. target normalization statistics, from training data only
    model, tokenizer = objective.build_model(config.model, config.trust_remote_code)  # scalar/multi-head, or per-token (PRM)
    if cached:
        with accelerator.main_process_first():  # one process builds the store, the others open it
            train_examples, eval_examples, report, hit = load_tokenized(config, objective, tokenizer)
        _say(accelerator, f"token cache {'hit' if hit else 'built'}: {train_examples.store.root}")
    else:
        train_examples = objective.tokenize(train_raw, tokenizer, config.max_length, report)
        eval_examples = objective.tokenize(eval_raw, tokenizer, config.max_length, report)
    kind = objective.record_kind
    check_max_length(model.hf_model.config, config.max_length)  # before any forward pass: a BERT has 512 positions
    _say(accelerator, f"data: {len(train_examples)} training and {len(eval_examples)} held-out {kind}; "
         f"{report.summary(objective.read_kind)}")
    if 0 < len(eval_examples) < SMALL_EVAL:
        _say(accelerator, f"warning: only {len(eval_examples)} held-out {kind}: their accuracy can move by "
             f"{100 / len(eval_examples):.0f} points with one example; hold out more (eval_fraction or eval_data)")
    if (summary := objective.summary(train_examples)) is not None:
        _say(accelerator, summary)
    pad_id = tokenizer.pad_token_id

    # Model and optimizer.
    _freeze_bottom(model, config.freeze_layers)
    if config.lora_rank:  # adapters on a frozen backbone; the head trains in full
        from ..models.lora import add_lora

        add_lora(model.hf_model, config.lora_rank, config.lora_alpha)
    if config.disable_dropout:
        _disable_dropout(model)
    layout, reason = _layout_and_reason(config, model, accelerator.device.type)
    pooling = getattr(model, "pooling", None)
    share_prefix = config.share_prefix and pooling == "last_token"  # exact only for causal backbones
    checkpointing, checkpointing_reason = _checkpointing_and_reason(config, model, accelerator.device.type)
    _say(accelerator, f"speed: precision {precision}, {layout} batches"
         + (f" ({reason})" if layout == "padded" and config.layout == "auto" and reason else "")
         + (" with shared prompts" if layout == "packed" and share_prefix else "")
         + (", dropout off" if config.disable_dropout else ", dropout on")
         + (f", gradient checkpointing ({checkpointing_reason or 'asked for'})" if checkpointing else "")
         + (", freed CPU memory kept for reuse" if reuse_memory else ""))
    if checkpointing:
        if hasattr(model.hf_model, "activation_checkpointing_enable"):  # transformers >= 5 name
            model.hf_model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            model.hf_model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    params = [p for p in model.parameters() if p.requires_grad]
    # the backbone's starting weights, before any checkpoint is loaded: a resumed run anchors to the same point
    anchors = [p.detach().clone() for p in params] if config.anchor_l2 else None
    # The fused kernel updates all tensors in one pass (4x faster than foreach on this CPU; TRL's default too).
    optimizer = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=config.weight_decay, fused=True)
    global_batch = config.batch_size * accelerator.num_processes * config.grad_accum_steps
    total_steps = config.max_steps or steps_for(len(train_examples), global_batch, config.num_epochs)
    warmup = int(config.warmup_ratio * total_steps)

    start_step = 0
    finished = _finished_state(out)
    if config.resume and not ckpt.checkpoint_dirs(ckpt_root) and finished.get("step") == total_steps:
        _say(accelerator, f"{out} already finished at step {total_steps}; nothing to resume (its model is kept as it is)")
        return TrainResult(out, total_steps, _last_eval(metrics_path), report.summary(kind))
    if config.resume and not ckpt.checkpoint_dirs(ckpt_root) and finished:
        # A finished run keeps no checkpoint: "resuming" it would start at step 0 and replace the model it saved.
        raise ConfigError(
            f"{out} holds a run that finished at step {finished.get('step')} and keeps no checkpoint (the optimizer state "
            f"is gone), so --resume cannot extend it to {total_steps} steps. Train on from its weights in a new folder "
            f"(--model {out} --output-dir NEW: a fresh optimizer and schedule), or replace it (--overwrite)")
    from accelerate.utils import DistributedType

    # FSDP / DeepSpeed shard weights and optimizer state over the processes: the final model is gathered with
    # accelerator.get_state_dict, the optimizer is checkpointed by the engine itself (accelerator.save_state)
    sharded = accelerator.distributed_type in (DistributedType.FSDP, DistributedType.DEEPSPEED)
    if accelerator.distributed_type == DistributedType.DEEPSPEED:
        check_deepspeed_options(accelerator.state.deepspeed_plugin.deepspeed_config, config.grad_accum_steps, config.max_grad_norm)
    resumed_from: Path | None = None
    if config.resume and ckpt.checkpoint_dirs(ckpt_root):
        latest = resumed_from = ckpt.latest_checkpoint(ckpt_root)
        start_step = ckpt.restore_checkpoint(latest, model, optimizer, accelerator.process_index, config.model,
                                             load_optimizer=not sharded)
        _say(accelerator, f"resumed from {latest} at step {start_step}")
        if accelerator.is_main_process and metrics_path.exists():
            kept = [ln for ln in metrics_path.read_text().splitlines() if json.loads(ln)["step"] <= start_step]
            metrics_path.write_text("".join(ln + "\n" for ln in kept))
    else:
        if config.resume:
            _say(accelerator, f"no checkpoint in {ckpt_root}; starting from step 0")
        if accelerator.is_main_process:
            out.mkdir(parents=True, exist_ok=True)
            metrics_path.write_text("")
    if accelerator.is_main_process:
        from ..data.token_store import source_fingerprint

        (out / "run_config.json").write_text(json.dumps(
            {**to_dict(config), "data_fingerprint": source_fingerprint(config.data, config.data_split)}, indent=2, sort_keys=True,
            default=str))
    metadata = RewardModelMetadata(
        pooling=model.pooling, max_length=config.max_length,
        template="chat_template" if getattr(tokenizer, "chat_template", None) else "plain", base_model=config.model,
        objective=config.objective_name, heads=list(objective.heads), **objective.metadata(),
    )
    model, optimizer = accelerator.prepare(model, optimizer)
    if sharded and resumed_from is not None:
        engine_dir = resumed_from / "engine"
        if not engine_dir.is_dir():
            raise CheckpointError(f"{resumed_from}: saved without FSDP/DeepSpeed (no engine/ folder); resume under the engine "
                                  "that saved it")
        accelerator.load_state(str(engine_dir))
    model.train()

    def save(step: int) -> None:
        if accelerator.is_main_process:
            ckpt.temporary_checkpoint_dir(ckpt_root, step)
        accelerator.wait_for_everyone()  # every process writes its RNG state into the same folder
        tmp = ckpt_root / f".tmp-step-{step:06d}"
        ckpt.save_rng_state(tmp, accelerator.process_index)
        state = accelerator.get_state_dict(model)  # every process: a gather under FSDP / ZeRO-3
        if sharded:
            accelerator.save_state(str(tmp / "engine"))  # every process writes its shard of weights and optimizer
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            save_pretrained(accelerator.unwrap_model(model), tokenizer, metadata, tmp, state)
            if not sharded:
                ckpt.save_optimizer_state(optimizer, tmp)
            (tmp / "trainer_state.json").write_text(json.dumps({"step": step}))
            ckpt.finalize_checkpoint(tmp, step)
            ckpt.prune_checkpoints(ckpt_root, config.keep_checkpoints)
        accelerator.wait_for_everyone()

    lengths = train_examples.lengths.tolist() if cached else [e.length for e in train_examples]
    plan = global_batches(lengths, global_batch, total_steps, config.seed, config.group_by_length)
    progress = tqdm(total=total_steps, initial=start_step, desc="training", disable=not (config.show_progress and accelerator.is_main_process))
    running: list[float] = []
    metrics: dict[str, float] = {}
    started = time.perf_counter()  # wall time of the steps (evaluation included), for throughput
    setup_seconds: float | None = round(started - entered, 3)  # written with the first metrics line
    for step, indices in enumerate(plan):
        if step < start_step:
            continue  # the plan is deterministic: skip what the checkpoint already saw
        for group in optimizer.param_groups:
            group["lr"] = config.learning_rate * _lr_factor(step, total_steps, warmup, config.lr_schedule)
        micro_batches = shard(indices, config.grad_accum_steps, accelerator.num_processes, accelerator.process_index)
        step_loss = torch.zeros((), device=accelerator.device)
        for m, micro in enumerate(micro_batches):
            inputs, batch = model_inputs([train_examples[i] for i in micro], layout, pooling, share_prefix, pad_id,
                                         accelerator.device)
            with accelerator.autocast():
                rewards = model(**inputs).float()
            loss = objective.loss(rewards, batch).mean() / config.grad_accum_steps
            if anchors is not None:
                loss = loss + l2_anchor_penalty(params, anchors, config.anchor_l2) / config.grad_accum_steps
            if m < len(micro_batches) - 1:
                with accelerator.no_sync(model):
                    accelerator.backward(loss)
            else:
                accelerator.backward(loss)
            step_loss += loss.detach()
        step_loss = accelerator.reduce(step_loss, "mean")
        if not torch.isfinite(step_loss):
            saved = ckpt.checkpoint_dirs(ckpt_root)
            kept = (f"the last good checkpoint is {saved[-1]} (--resume continues from it)" if saved
                    else "no checkpoint was saved yet")
            raise TrainingDivergedError(
                f"loss is {step_loss.item()} at step {step + 1}; {kept}. Check the data for extreme targets or margins, "
                "or lower learning_rate, or use precision='fp32'"
            )
        if config.max_grad_norm > 0:
            accelerator.clip_grad_norm_(params, config.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        running.append(step_loss.item())
        done = step + 1
        if governor is not None and (changed := governor.check()):
            _say(accelerator, f"step {done}: {changed}")
        progress.update(1)
        progress.set_postfix(loss=f"{running[-1]:.4f}")
        if accelerator.is_main_process and (done % config.log_every == 0 or done == total_steps):
            record = {"step": done, "loss": sum(running) / len(running), "lr": optimizer.param_groups[0]["lr"],
                      "train_seconds": round(time.perf_counter() - started, 3)}
            if setup_seconds is not None:  # loading, reading, tokenizing (or opening the token cache), building the model
                record["setup_seconds"], setup_seconds = setup_seconds, None
            _write_metrics(metrics_path, record)
            running = []
        if eval_examples and (done % config.eval_every == 0 or done == total_steps):
            metrics = evaluate(model, objective, eval_examples, pad_id, accelerator, config.batch_size, config.tie_policy,
                               layout, pooling, share_prefix, show_progress=config.show_progress)
            if accelerator.is_main_process:
                _write_metrics(metrics_path, {"step": done, **metrics})
                progress.write(f"step {done}: " + ", ".join(f"{k}={v:.4f}" for k, v in metrics.items()))
        if done % config.save_every == 0 and done < total_steps:
            save(done)
    progress.close()

    if "eval_reward_mean" not in metrics and start_step >= total_steps and (out / "rewardlab.json").is_file():
        # resuming a finished run: nothing was trained or evaluated; keep what the run measured
        earlier = RewardModelMetadata.from_file(out / "rewardlab.json")
        metadata = replace(metadata, reward_mean=earlier.reward_mean, reward_std=earlier.reward_std,
                           head_reward_stats=earlier.head_reward_stats, temperature=earlier.temperature)
    if "eval_reward_mean" in metrics:
        metadata = replace(metadata, reward_mean=metrics["eval_reward_mean"], reward_std=metrics["eval_reward_std"])
    head_stats = {h: [metrics[f"eval_reward_mean_{h}"], metrics[f"eval_reward_std_{h}"]] for h in metadata.heads
                  if f"eval_reward_mean_{h}" in metrics}
    if head_stats:
        metadata = replace(metadata, head_reward_stats=head_stats)
    accelerator.wait_for_everyone()
    if config.keep_final_checkpoint:
        save(total_steps)
    state = None if config.lora_rank else accelerator.get_state_dict(model)  # every process (a gather when sharded)
    if accelerator.is_main_process:  # temporary folder + renames, rewardlab.json last: a kill never leaves garbage
        final = accelerator.unwrap_model(model)
        if config.lora_rank:  # the adapter alone (for LoRA ensembles), then merged: an ordinary HF folder
            from ..models.lora import merge_lora, save_adapter

            save_adapter(final.hf_model, out, base_model=config.model)
            merge_lora(final.hf_model)
        save_pretrained_atomically(final, tokenizer, metadata, out, state)
    if not config.keep_final_checkpoint and accelerator.is_main_process:
        import shutil  # the final model is saved: the checkpoints' optimizer state is dead weight on disk

        shutil.rmtree(ckpt_root, ignore_errors=True)
    if accelerator.is_main_process:
        (out / "trainer_state.json").write_text(json.dumps({"step": total_steps, "finished": True}))
    accelerator.wait_for_everyone()
    _say(accelerator, f"saved the reward model to {out}")
    return TrainResult(out, total_steps, metrics, report.summary(kind))


