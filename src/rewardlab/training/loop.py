"""The training loop on Accelerate (1 CPU to many GPUs): :func:`prepare`, :func:`run_steps`, :func:`finish`.

``train(config)`` is the three in a row. ``prepare`` builds a :class:`Run` (data, model, optimizer, where a resumed
run starts); ``run_steps`` is the loop, read top to bottom; ``finish`` saves the model. The output-folder policy is
in :mod:`.output`, the speed choices in :mod:`.speed`, the engine set-up in :mod:`.engines`, the data in
:mod:`.splits`.
"""

from __future__ import annotations

import json
import math
import shutil
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Sequence

import torch

from ..data.collate import collate_targets
from ..devices import CpuThreadGovernor, tune_cpu_memory
from ..errors import CheckpointError, ConfigError, TrainingDivergedError
from ..losses import l2_anchor_penalty
from ..models.io import RewardModelMetadata, check_max_length, save_pretrained, save_pretrained_atomically
from ..models.packing import pack_for
from ..models.reward_model import RewardModel, transformer_layers
from . import checkpoint as ckpt
from . import output, speed
from .batching import global_batches, shard, steps_for
from .config import TrainConfig
from .engines import make_accelerator, sharded
from .ensemble import is_member_ensemble, train_member_ensemble
from .objectives import Example, Objective, collate_examples, make_objective
from .splits import SMALL_EVAL, Examples, load_examples, load_train_eval_records
from ..metrics import TiePolicy

__all__ = ["BatchLayout", "Run", "TrainResult", "evaluate", "finish", "load_train_eval_records", "prepare", "run_steps",
           "train"]


@dataclass(frozen=True)
class TrainResult:
    """What a finished run produced."""

    output_dir: Path
    steps: int
    final_metrics: dict[str, float]
    drop_summary: str


@dataclass(frozen=True)
class BatchLayout:
    """How a group of examples becomes model inputs (the same in training and evaluation)."""

    layout: str
    """``packed`` (one padding-free row per batch) or ``padded``."""
    pooling: str | None
    """The model's pooling (packing needs it to find each segment's reward position)."""
    share_prefix: bool
    """Packed rows hold a shared prompt once (exact for causal backbones only)."""
    pad_token_id: int


@dataclass(frozen=True)
class Run:
    """One run, as :func:`prepare` built it: what :func:`run_steps` and :func:`finish` read."""

    config: TrainConfig
    accelerator: Any
    data: Examples
    model: torch.nn.Module
    """Wrapped by ``accelerator.prepare`` (DDP / FSDP / DeepSpeed); ``accelerator.unwrap_model`` gives the RewardModel."""
    optimizer: torch.optim.Optimizer
    params: list[torch.Tensor]
    anchors: list[torch.Tensor] | None
    """The trainable weights at the start (``anchor_l2``), else None."""
    batching: BatchLayout
    total_steps: int
    start_step: int
    metadata: RewardModelMetadata
    governor: CpuThreadGovernor | None
    entered: float
    """``time.perf_counter()`` when :func:`train` was called (the setup time is logged with the first step)."""

    @property
    def out(self) -> Path:
        return Path(self.config.output_dir)

    @property
    def checkpoints(self) -> Path:
        return self.out / "checkpoints"

    @property
    def metrics_path(self) -> Path:
        return self.out / "metrics.jsonl"


def _say(accelerator: Any, message: str) -> None:
    if accelerator.is_main_process:
        print(f"[rewardlab] {message}", file=sys.stderr, flush=True)


def train(config: TrainConfig | None = None, **options: Any) -> TrainResult:
    """Train a reward model; ``train(TrainConfig(...))`` or ``train(model=..., data=..., output_dir=...)``."""
    entered = time.perf_counter()
    config = config.with_options(**options) if config is not None else TrainConfig.from_options(**options)
    if is_member_ensemble(config):
        out, members, results = train_member_ensemble(config, train)
        metrics = {f"{name}/{key}": value for name, r in zip(members, results) for key, value in r.final_metrics.items()}
        return TrainResult(out, results[-1].steps, metrics, results[-1].drop_summary)
    run = prepare(config, entered)
    if isinstance(run, TrainResult):  # resuming a run that already finished
        return run
    return finish(run, run_steps(run))


def prepare(config: TrainConfig, entered: float | None = None) -> Run | TrainResult:
    """Set up a run: accelerator, output folder, data, model, optimizer, and the step a resumed run starts at.

    Returns the earlier result instead when ``resume`` finds the run already finished at its step count.
    """
    from accelerate.utils import set_seed

    accelerator, precision = make_accelerator(config.precision, config.grad_accum_steps, config.max_grad_norm)
    output.prepare_output_dir(config, remove=accelerator.is_main_process)  # every process refuses alike; one removes
    accelerator.wait_for_everyone()
    reuse_memory = tune_cpu_memory(accelerator.device)  # CPU: no page faults on every step's tensors, bounded kernel cache
    governor, threads_changed = speed.start_cpu_threads(accelerator)
    if threads_changed:
        _say(accelerator, threads_changed)
    set_seed(config.seed)
    data = load_examples(config, make_objective(config.objective), accelerator)
    _describe_data(accelerator, data)
    check_max_length(data.model.hf_model.config, config.max_length)  # before any forward pass: a BERT has 512 positions
    batching = _prepare_model(config, data, accelerator, precision, reuse_memory)

    params = [p for p in data.model.parameters() if p.requires_grad]
    # the backbone's starting weights, before any checkpoint is loaded: a resumed run anchors to the same point
    anchors = [p.detach().clone() for p in params] if config.anchor_l2 else None
    # The fused kernel updates all tensors in one pass (4x faster than foreach on this CPU; TRL's default too).
    optimizer = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=config.weight_decay, fused=True)
    global_batch = config.batch_size * accelerator.num_processes * config.grad_accum_steps
    total_steps = config.max_steps or steps_for(len(data.train), global_batch, config.num_epochs)
    started = _resume(config, accelerator, data, optimizer, total_steps)
    if isinstance(started, TrainResult):
        return started
    start_step, resumed_from = started
    if accelerator.is_main_process:
        output.write_run_config(Path(config.output_dir), config)
    metadata = RewardModelMetadata(
        pooling=data.model.pooling, max_length=config.max_length,
        template="chat_template" if getattr(data.tokenizer, "chat_template", None) else "plain", base_model=config.model,
        objective=config.objective_name, heads=list(data.objective.heads), **data.objective.metadata(),
    )
    model, optimizer = accelerator.prepare(data.model, optimizer)
    if sharded(accelerator) and resumed_from is not None:
        engine_dir = resumed_from / "engine"
        if not engine_dir.is_dir():
            raise CheckpointError(f"{resumed_from}: saved without FSDP/DeepSpeed (no engine/ folder); resume under the engine "
                                  "that saved it")
        accelerator.load_state(str(engine_dir))
    model.train()
    return Run(config, accelerator, data, model, optimizer, params, anchors, batching, total_steps, start_step, metadata,
               governor, time.perf_counter() if entered is None else entered)


def run_steps(run: Run) -> dict[str, float]:
    """The optimizer steps from ``run.start_step`` to ``run.total_steps``, logging, evaluating and checkpointing;
    returns the last held-out metrics (``{}`` if none were computed)."""
    from tqdm.auto import tqdm

    config, accelerator, optimizer = run.config, run.accelerator, run.optimizer
    warmup = int(config.warmup_ratio * run.total_steps)
    global_batch = config.batch_size * accelerator.num_processes * config.grad_accum_steps
    plan = global_batches(run.data.lengths, global_batch, run.total_steps, config.seed, config.group_by_length)
    progress = tqdm(total=run.total_steps, initial=run.start_step, desc="training",
                    disable=not (config.show_progress and accelerator.is_main_process))
    running: list[float] = []
    metrics: dict[str, float] = {}
    started = time.perf_counter()  # wall time of the steps (evaluation included), for throughput
    setup_seconds: float | None = round(started - run.entered, 3)  # written with the first metrics line
    for step, indices in enumerate(plan):
        if step < run.start_step:
            continue  # the plan is deterministic: skip what the checkpoint already saw
        for group in optimizer.param_groups:
            group["lr"] = config.learning_rate * lr_factor(step, run.total_steps, warmup, config.lr_schedule)
        step_loss = _forward_backward(run, indices, step)
        if config.max_grad_norm > 0:
            accelerator.clip_grad_norm_(run.params, config.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        running.append(step_loss)
        done = step + 1
        if run.governor is not None and (changed := run.governor.check()):
            _say(accelerator, f"step {done}: {changed}")
        progress.update(1)
        progress.set_postfix(loss=f"{running[-1]:.4f}")
        if accelerator.is_main_process and (done % config.log_every == 0 or done == run.total_steps):
            record = {"step": done, "loss": sum(running) / len(running), "lr": optimizer.param_groups[0]["lr"],
                      "train_seconds": round(time.perf_counter() - started, 3)}
            if setup_seconds is not None:  # loading, reading, tokenizing (or opening the token cache), building the model
                record["setup_seconds"], setup_seconds = setup_seconds, None
            output.write_metrics(run.metrics_path, record)
            running = []
        if run.data.held_out and (done % config.eval_every == 0 or done == run.total_steps):
            metrics = evaluate(run.model, run.data.objective, run.data.held_out, run.batching, accelerator,
                               config.batch_size, config.tie_policy, show_progress=config.show_progress)
            if accelerator.is_main_process:
                output.write_metrics(run.metrics_path, {"step": done, **metrics})
                progress.write(f"step {done}: " + ", ".join(f"{k}={v:.4f}" for k, v in metrics.items()))
        if done % config.save_every == 0 and done < run.total_steps:
            save_checkpoint(run, done)
    progress.close()
    return metrics


def finish(run: Run, metrics: dict[str, float]) -> TrainResult:
    """Save the trained model (temporary folder + renames, ``rewardlab.json`` last: a kill never leaves garbage) with
    the held-out reward statistics in its metadata, and drop the checkpoints unless ``keep_final_checkpoint``."""
    config, accelerator = run.config, run.accelerator
    metadata = _measured_metadata(run, metrics)
    accelerator.wait_for_everyone()
    if config.keep_final_checkpoint:
        save_checkpoint(run, run.total_steps)
    state = None if config.lora_rank else accelerator.get_state_dict(run.model)  # every process (a gather when sharded)
    if accelerator.is_main_process:
        final = accelerator.unwrap_model(run.model)
        if config.lora_rank:  # the adapter alone (for LoRA ensembles), then merged: an ordinary HF folder
            from ..models.lora import merge_lora, save_adapter

            save_adapter(final.hf_model, run.out, base_model=config.model)
            merge_lora(final.hf_model)
        save_pretrained_atomically(final, run.data.tokenizer, metadata, run.out, state)
        if not config.keep_final_checkpoint:  # the final model is saved: the checkpoints' optimizer state is dead weight
            shutil.rmtree(run.checkpoints, ignore_errors=True)
        (run.out / "trainer_state.json").write_text(json.dumps({"step": run.total_steps, "finished": True}))
    accelerator.wait_for_everyone()
    _say(accelerator, f"saved the reward model to {run.out}")
    return TrainResult(run.out, run.total_steps, metrics, run.data.report.summary(run.data.objective.record_kind))


def _forward_backward(run: Run, indices: Sequence[int], step: int) -> float:
    """One optimizer step's forward and backward passes over its micro-batches; the mean loss over processes.

    Raises :class:`TrainingDivergedError` on a non-finite loss (naming the last good checkpoint).
    """
    config, accelerator = run.config, run.accelerator
    micro_batches = shard(indices, config.grad_accum_steps, accelerator.num_processes, accelerator.process_index)
    step_loss = torch.zeros((), device=accelerator.device)
    for m, micro in enumerate(micro_batches):
        inputs, batch = model_inputs([run.data.train[i] for i in micro], run.batching, accelerator.device)
        with accelerator.autocast():
            rewards = run.model(**inputs).float()
        loss = run.data.objective.loss(rewards, batch).mean() / config.grad_accum_steps
        if run.anchors is not None:
            loss = loss + l2_anchor_penalty(run.params, run.anchors, config.anchor_l2) / config.grad_accum_steps
        if m < len(micro_batches) - 1:
            with accelerator.no_sync(run.model):
                accelerator.backward(loss)
        else:
            accelerator.backward(loss)
        step_loss += loss.detach()
    step_loss = accelerator.reduce(step_loss, "mean")
    if not torch.isfinite(step_loss):
        saved = ckpt.checkpoint_dirs(run.checkpoints)
        kept = f"the last good checkpoint is {saved[-1]} (--resume continues from it)" if saved else "no checkpoint was saved yet"
        raise TrainingDivergedError(f"loss is {step_loss.item()} at step {step + 1}; {kept}. Check the data for extreme "
                                    "targets or margins, or lower learning_rate, or use precision='fp32'")
    return float(step_loss.item())


def save_checkpoint(run: Run, step: int) -> None:
    """Write ``checkpoints/step-NNNNNN`` (weights, optimizer or engine state, every process's RNG) atomically."""
    accelerator, is_sharded = run.accelerator, sharded(run.accelerator)
    if accelerator.is_main_process:
        ckpt.temporary_checkpoint_dir(run.checkpoints, step)
    accelerator.wait_for_everyone()  # every process writes its RNG state into the same folder
    tmp = run.checkpoints / f".tmp-step-{step:06d}"
    ckpt.save_rng_state(tmp, accelerator.process_index)
    state = accelerator.get_state_dict(run.model)  # every process: a gather under FSDP / ZeRO-3
    if is_sharded:
        accelerator.save_state(str(tmp / "engine"))  # every process writes its shard of weights and optimizer
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        save_pretrained(accelerator.unwrap_model(run.model), run.data.tokenizer, run.metadata, tmp, state)
        if not is_sharded:
            ckpt.save_optimizer_state(run.optimizer, tmp)
        (tmp / "trainer_state.json").write_text(json.dumps({"step": step}))
        ckpt.finalize_checkpoint(tmp, step)
        ckpt.prune_checkpoints(run.checkpoints, run.config.keep_checkpoints)
    accelerator.wait_for_everyone()


def lr_factor(step: int, total: int, warmup: int, schedule: str) -> float:
    """The learning-rate multiplier at ``step``: linear warmup, then constant, cosine or linear decay.

    >>> lr_factor(0, 10, 2, "cosine"), lr_factor(2, 10, 2, "cosine"), lr_factor(6, 10, 2, "linear")
    (0.5, 1.0, 0.5)
    """
    if step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1 + math.cos(math.pi * progress)) if schedule == "cosine" else 1.0 - progress


def model_inputs(group: list[Example], batching: BatchLayout, device: torch.device) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """``(model keyword arguments, batch tensors for the objective)`` for a group of examples, on ``device``.

    ``packed``: one padding-free row and its layout (same rewards in the same row order as the padded
    batch); ``padded``: ids and attention mask. The batch holds ``targets`` and ``group_sizes``.
    """
    if batching.layout == "packed":
        ids, packed = pack_for(batching.pooling, group, batching.share_prefix)
        batch = {k: v.to(device) for k, v in collate_targets(group).items()}
        return {"input_ids": ids.to(device), "layout": packed.to(device)}, batch
    batch = {k: v.to(device) for k, v in collate_examples(group, batching.pad_token_id).items()}
    return {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}, batch


@torch.inference_mode()
def evaluate(model: torch.nn.Module, objective: Objective, examples: Sequence[Example], batching: BatchLayout,
             accelerator: Any, batch_size: int, tie_policy: TiePolicy = "half", show_progress: bool = False) -> dict[str, float]:
    """The objective's metrics over ``examples``, sharded across processes and gathered.

    A ``packed`` layout scores each batch as one padding-free row, as training does; the rewards are the padded
    pass's (``tests/models/test_packing.py``).
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
        inputs, batch = model_inputs([examples[i] for i in idx], batching, accelerator.device)
        rewards = model(**inputs).float().cpu()
        for i, part in zip(idx, torch.split(rewards, batch["group_sizes"].tolist())):
            rows.append((i, part.tolist()))
    rows = sorted(gather_object(rows))
    model.train()
    rewards = [torch.tensor(r) for _, r in rows]
    return {f"eval_{k}": v for k, v in objective.metrics(rewards, [examples[i] for i, _ in rows], tie_policy).items()}


def _describe_data(accelerator: Any, data: Examples) -> None:
    kind = data.objective.record_kind
    if data.cache is not None:
        _say(accelerator, f"token cache {'hit' if data.cache_hit else 'built'}: {data.cache}")
    _say(accelerator, f"data: {len(data.train)} training and {len(data.held_out)} held-out {kind}; "
         f"{data.report.summary(data.objective.read_kind)}")
    if 0 < len(data.held_out) < SMALL_EVAL:
        _say(accelerator, f"warning: only {len(data.held_out)} held-out {kind}: their accuracy can move by "
             f"{100 / len(data.held_out):.0f} points with one example; hold out more (eval_fraction or eval_data)")
    if (summary := data.objective.summary(data.train)) is not None:
        _say(accelerator, summary)


def _prepare_model(config: TrainConfig, data: Examples, accelerator: Any, precision: str, reuse_memory: bool) -> BatchLayout:
    """Freeze, add adapters, turn dropout off and checkpointing on as configured; log the speed choices."""
    model = data.model
    freeze_bottom(model, config.freeze_layers)
    if config.lora_rank:  # adapters on a frozen backbone; the head trains in full
        from ..models.lora import add_lora

        add_lora(model.hf_model, config.lora_rank, config.lora_alpha)
    if config.disable_dropout:
        disable_dropout(model)
    layout, reason = speed.layout_and_reason(config, model, accelerator.device.type)
    pooling = getattr(model, "pooling", None)
    share_prefix = config.share_prefix and pooling == "last_token"  # exact only for causal backbones
    checkpointing, checkpointing_reason = speed.checkpointing_and_reason(config, model, accelerator.device.type)
    _say(accelerator, f"speed: precision {precision}, {layout} batches"
         + (f" ({reason})" if layout == "padded" and config.layout == "auto" and reason else "")
         + (" with shared prompts" if layout == "packed" and share_prefix else "")
         + (", dropout off" if config.disable_dropout else ", dropout on")
         + (f", gradient checkpointing ({checkpointing_reason or 'asked for'})" if checkpointing else "")
         + (", freed CPU memory kept for reuse" if reuse_memory else ""))
    if checkpointing:
        speed.enable_checkpointing(model.hf_model)
    return BatchLayout(layout, pooling, share_prefix, data.tokenizer.pad_token_id)


def _resume(config: TrainConfig, accelerator: Any, data: Examples, optimizer: torch.optim.Optimizer,
            total_steps: int) -> tuple[int, Path | None] | TrainResult:
    """``(start step, checkpoint resumed from or None)``, loading the latest checkpoint when resuming; the earlier
    result when the run already finished at ``total_steps``. A fresh run starts an empty ``metrics.jsonl``."""
    out = Path(config.output_dir)
    root, metrics_path = out / "checkpoints", out / "metrics.jsonl"
    finished, checkpoints = output.finished_state(out), ckpt.checkpoint_dirs(root)
    if config.resume and not checkpoints and finished.get("step") == total_steps:
        _say(accelerator, f"{out} already finished at step {total_steps}; nothing to resume (its model is kept as it is)")
        return TrainResult(out, total_steps, output.last_eval(metrics_path), data.report.summary(data.objective.record_kind))
    if config.resume and not checkpoints and finished:
        # A finished run keeps no checkpoint: "resuming" it would start at step 0 and replace the model it saved.
        raise ConfigError(
            f"{out} holds a run that finished at step {finished.get('step')} and keeps no checkpoint (the optimizer state "
            f"is gone), so --resume cannot extend it to {total_steps} steps. Train on from its weights in a new folder "
            f"(--model {out} --output-dir NEW: a fresh optimizer and schedule), or replace it (--overwrite)")
    if config.resume and checkpoints:
        latest = checkpoints[-1]
        start_step = ckpt.restore_checkpoint(latest, data.model, optimizer, accelerator.process_index, config.model,
                                             load_optimizer=not sharded(accelerator))
        _say(accelerator, f"resumed from {latest} at step {start_step}")
        if accelerator.is_main_process:
            output.trim_metrics(metrics_path, start_step)
        return start_step, latest
    if config.resume:
        _say(accelerator, f"no checkpoint in {root}; starting from step 0")
    if accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        metrics_path.write_text("")
    return 0, None


def _measured_metadata(run: Run, metrics: dict[str, float]) -> RewardModelMetadata:
    """The run's metadata with the held-out reward mean/std (overall and per head) this run measured."""
    metadata = run.metadata
    if "eval_reward_mean" not in metrics and run.start_step >= run.total_steps and (run.out / "rewardlab.json").is_file():
        # resuming a finished run: nothing was trained or evaluated; keep what the run measured
        earlier = RewardModelMetadata.from_file(run.out / "rewardlab.json")
        metadata = replace(metadata, reward_mean=earlier.reward_mean, reward_std=earlier.reward_std,
                           head_reward_stats=earlier.head_reward_stats, temperature=earlier.temperature)
    if "eval_reward_mean" in metrics:
        metadata = replace(metadata, reward_mean=metrics["eval_reward_mean"], reward_std=metrics["eval_reward_std"])
    head_stats = {h: [metrics[f"eval_reward_mean_{h}"], metrics[f"eval_reward_std_{h}"]] for h in metadata.heads
                  if f"eval_reward_mean_{h}" in metrics}
    return replace(metadata, head_reward_stats=head_stats) if head_stats else metadata


def freeze_bottom(model: RewardModel, k: int) -> None:
    """Freeze the embeddings and the lowest ``k`` transformer layers (``freeze_layers``); nothing when 0."""
    if k == 0:
        return
    trunk = model.hf_model.base_model
    for module in [getattr(trunk, "embeddings", None) or model.hf_model.get_input_embeddings()] + list(
        transformer_layers(model.hf_model)[:k]
    ):
        for param in module.parameters():
            param.requires_grad_(False)


def disable_dropout(model: torch.nn.Module) -> None:
    """Dropout p = 0 everywhere, including attention dropout kept as a float (Llama's ``attention_dropout``)."""
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
        if isinstance(getattr(module, "attention_dropout", None), float):
            setattr(module, "attention_dropout", 0.0)
