"""The Accelerate set-up of a run and the checks for sharding engines (FSDP, DeepSpeed) that would otherwise override
rewardlab's settings without saying so."""

from __future__ import annotations

import os
from typing import Any

import torch

from ..devices import resolve_precision
from ..errors import ConfigError

__all__ = ["check_deepspeed_options", "make_accelerator", "sharded"]


def make_accelerator(precision: str, grad_accum_steps: int, max_grad_norm: float) -> tuple[Any, str]:
    """``(accelerator, resolved precision)`` for this launch, refusing what Accelerate would quietly change.

    Several processes on a machine without CUDA (torchrun, ``accelerate launch --multi_gpu``) means CPU DDP over
    gloo, which Accelerate only picks when told the run is on CPU; FSDP or DeepSpeed without CUDA is refused (it
    would fall back to plain DDP).
    """
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState
    from accelerate.utils import DistributedType

    cpu_ddp = not torch.cuda.is_available() and int(os.environ.get("WORLD_SIZE", "1")) > 1
    engine = [name for name in ("FSDP", "DEEPSPEED") if os.environ.get(f"ACCELERATE_USE_{name}", "false").lower() == "true"]
    if engine and not torch.cuda.is_available():
        raise ConfigError(f"the launch asks for {engine[0].replace('DEEPSPEED', 'DeepSpeed')}, which Accelerate runs on GPUs only; "
                          "this machine has none, so it would silently run plain DDP: launch with "
                          "recipes/accelerate/ddp_cpu_2proc.yaml instead (docs/distributed.md)")
    # Accelerate keeps a per-process singleton; a second train() in one process (notebooks, tests) may ask for
    # another precision. The process group (PartialState) is kept.
    AcceleratorState._reset_state(reset_partial_state=False)
    resolved = resolve_precision(precision)
    accelerator = Accelerator(mixed_precision="bf16" if resolved == "bf16" else "no", cpu=cpu_ddp)
    if accelerator.distributed_type == DistributedType.DEEPSPEED:
        check_deepspeed_options(accelerator.state.deepspeed_plugin.deepspeed_config, grad_accum_steps, max_grad_norm)
    return accelerator, resolved


def sharded(accelerator: Any) -> bool:
    """True under FSDP / DeepSpeed, which shard weights and optimizer state over the processes: the final model is
    gathered with ``accelerator.get_state_dict`` and the optimizer is checkpointed by the engine itself."""
    from accelerate.utils import DistributedType

    return accelerator.distributed_type in (DistributedType.FSDP, DistributedType.DEEPSPEED)


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
