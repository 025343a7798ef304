"""How a run is made fast on its device: CPU threads, batch layout, gradient checkpointing (each choice measured).

Every ``auto`` here names its measurement (docs/benchmarks.md) and the training log says what was chosen and why.
"""

from __future__ import annotations

from typing import Any

import torch

from ..devices import CpuThreadGovernor, choose_cpu_threads
from ..models.packing import choose_layout
from ..models.reward_model import RewardModel
from .config import TrainConfig

__all__ = ["AUTO_CHECKPOINTING_REASON", "GPU_TRAINING_REASON", "checkpointing_and_reason", "enable_checkpointing",
           "layout_and_reason", "start_cpu_threads"]

GPU_TRAINING_REASON = ("on a GPU, training is faster padded: the per-segment attention loop launches many "
                       "small kernels (docs/benchmarks.md, GPU run); layout='packed' still packs")

AUTO_CHECKPOINTING_REASON = ("auto: a decoder on CPU, where checkpointing measured ~10% slower and ~35% smaller "
                             "(docs/benchmarks.md); --no-gradient-checkpointing keeps the activations")


def start_cpu_threads(accelerator: Any) -> tuple[CpuThreadGovernor | None, str | None]:
    """Set torch's threads for a CPU run (the busy rule of :func:`choose_cpu_threads`); returns the governor that
    re-checks them during a single-process run (contention that starts or ends mid-run; None on GPUs and under DDP)
    and what to log about the change (None when the threads were kept)."""
    if accelerator.device.type != "cpu":
        return None, None
    threads, why = choose_cpu_threads()
    message = None
    if threads is not None and threads != torch.get_num_threads():
        torch.set_num_threads(threads)
        message = f"CPU threads: {threads} ({why})"
    if accelerator.num_processes != 1:
        return None, message
    # lowered by the busy rule: back up to the cores when the load leaves; else at most what torch had
    return CpuThreadGovernor(most=None if threads is not None else torch.get_num_threads()), message


def layout_and_reason(config: TrainConfig, model: torch.nn.Module, device_type: str = "cpu") -> tuple[str, str | None]:
    """``(layout, why packing is unavailable or not chosen, or None)`` for this run's model, objective and device.

    ``auto`` packs on CPUs (measured faster there) and pads on GPUs, where the per-segment loop of
    packed attention measured 52 pairs/s for MiniLM against TRL's padded 190 (H200, bf16).
    """
    reason = model.packing_unsupported_reason() if isinstance(model, RewardModel) else (
        f"the {config.objective_name} objective reads per-token scores from padded batches")
    if reason is None and config.layout == "auto" and device_type == "cuda":
        return "padded", GPU_TRAINING_REASON
    return choose_layout(config.layout, reason), reason


def checkpointing_and_reason(config: TrainConfig, model: torch.nn.Module, device_type: str = "cpu") -> tuple[bool, str | None]:
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


def enable_checkpointing(hf_model: Any) -> None:
    """Non-reentrant activation checkpointing on a transformers model (the name changed in transformers 5)."""
    if hasattr(hf_model, "activation_checkpointing_enable"):
        hf_model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    else:
        hf_model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
