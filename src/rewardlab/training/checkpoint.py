"""Resumable checkpoints, written atomically: a temporary folder renamed into place.

Layout of ``OUTPUT/checkpoints/step-000100/``: the reward-model folder (safetensors, full weights) plus
``optimizer.safetensors`` + ``optimizer.json`` (AdamW moments and param groups; under FSDP / DeepSpeed instead
``engine/``, the engine's own sharded state from ``accelerator.save_state``),
``rng-RANK.safetensors`` (each process's torch RNG) and ``trainer_state.json`` (the step).
No pickle anywhere. A folder only ever carries a ``step-*`` name once complete, so a run killed
mid-write (even by SIGKILL) leaves the previous checkpoint intact and loadable.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from ..errors import CheckpointError

__all__ = [
    "checkpoint_dirs",
    "finalize_checkpoint",
    "latest_checkpoint",
    "load_optimizer_state",
    "load_rng_state",
    "prune_checkpoints",
    "restore_checkpoint",
    "save_optimizer_state",
    "save_rng_state",
    "temporary_checkpoint_dir",
]

_NAME = re.compile(r"^step-(\d+)$")


def temporary_checkpoint_dir(root: Path, step: int) -> Path:
    """A fresh, empty folder to write step ``step`` into (stale ones from a crash are removed)."""
    tmp = root / f".tmp-step-{step:06d}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    return tmp


def finalize_checkpoint(tmp: Path, step: int) -> Path:
    """Atomically publish ``tmp`` as ``step-NNNNNN`` (``os.rename`` within one folder)."""
    final = tmp.parent / f"step-{step:06d}"
    if final.exists():
        shutil.rmtree(final)
    tmp.rename(final)
    return final


def checkpoint_dirs(root: Path) -> list[Path]:
    """Complete checkpoints under ``root``, oldest first."""
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if (m := _NAME.match(p.name)) and p.is_dir()]
    return [p for _, p in sorted(found)]


def latest_checkpoint(root: Path) -> Path:
    dirs = checkpoint_dirs(root)
    if not dirs:
        raise CheckpointError(f"{root}: no checkpoint to resume from (expected step-* folders)")
    return dirs[-1]


def prune_checkpoints(root: Path, keep: int) -> None:
    for old in checkpoint_dirs(root)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    for stale in root.glob(".tmp-step-*"):
        shutil.rmtree(stale, ignore_errors=True)


def save_optimizer_state(optimizer: torch.optim.Optimizer, directory: Path) -> None:
    """AdamW state as safetensors (tensors) + JSON (param groups and scalar state)."""
    state = optimizer.state_dict()
    tensors, scalars = {}, {}
    for index, entry in state["state"].items():
        for key, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{index}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars[f"{index}.{key}"] = value
    save_file(tensors, str(directory / "optimizer.safetensors"))
    (directory / "optimizer.json").write_text(json.dumps({"param_groups": state["param_groups"], "scalars": scalars}))


def load_optimizer_state(optimizer: torch.optim.Optimizer, directory: Path) -> None:
    try:
        tensors = load_file(str(directory / "optimizer.safetensors"))
        meta = json.loads((directory / "optimizer.json").read_text())
    except Exception as err:  # noqa: BLE001 - OSError, JSON errors, safetensors' own errors
        raise CheckpointError(f"{directory}: cannot read optimizer state ({type(err).__name__}: {str(err)[:120]})") from None
    entries: dict[int, dict[str, Any]] = {}
    for flat, value in list(tensors.items()) + list(meta["scalars"].items()):
        index, key = flat.split(".", 1)
        entries.setdefault(int(index), {})[key] = value
    optimizer.load_state_dict({"state": entries, "param_groups": meta["param_groups"]})


def restore_checkpoint(directory: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, rank: int,
                       model_name: str, load_optimizer: bool = True) -> int:
    """Load weights, optimizer, RNG and step from ``directory`` (a ``step-*`` folder); returns the step.

    ``load_optimizer=False`` under FSDP / DeepSpeed, whose sharded optimizer state is in ``engine/`` (written by
    ``accelerator.save_state`` and read back with ``accelerator.load_state`` after ``prepare``).

    Any unreadable part (a truncated safetensors file, garbage JSON, a missing key) is one
    :class:`CheckpointError` naming the file and, when there is one, the previous checkpoint to fall back to.
    """
    def broken(part: str, err: Exception) -> CheckpointError:
        earlier = [d for d in checkpoint_dirs(directory.parent) if d != directory]
        hint = (f"; delete {directory} to resume from {earlier[-1].name}" if earlier else "; no earlier checkpoint: start over "
                "with --overwrite")
        return CheckpointError(f"{directory / part}: unreadable ({type(err).__name__}: {str(err)[:120]}){hint}")

    try:
        weights = load_file(str(directory / "model.safetensors"))
    except Exception as err:  # noqa: BLE001 - safetensors raises its own error types
        raise broken("model.safetensors", err) from None
    hf_model: Any = model.hf_model  # a transformers model (see models/hf.py)
    missing, unexpected = hf_model.load_state_dict(weights, strict=False)
    if missing or unexpected:
        raise CheckpointError(f"{directory}: weights do not match --model {model_name} "
                              f"(missing {missing[:3]}, unexpected {unexpected[:3]}); resume with the same model")
    if load_optimizer and (directory / "engine").is_dir() and not (directory / "optimizer.safetensors").is_file():
        raise CheckpointError(f"{directory}: saved under FSDP/DeepSpeed (its optimizer state is in engine/); resume under "
                              "the same engine and process count")
    try:
        if load_optimizer:
            load_optimizer_state(optimizer, directory)
    except Exception as err:  # noqa: BLE001
        raise broken("optimizer.safetensors / optimizer.json", err) from None
    try:
        step = int(json.loads((directory / "trainer_state.json").read_text())["step"])
    except Exception as err:  # noqa: BLE001
        raise broken("trainer_state.json", err) from None
    try:
        load_rng_state(directory, rank)
    except Exception as err:  # noqa: BLE001
        raise broken(f"rng-{rank}.safetensors", err) from None
    return step


def save_rng_state(directory: Path, rank: int) -> None:
    tensors = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        tensors["cuda"] = torch.cuda.get_rng_state()
    save_file(tensors, str(directory / f"rng-{rank}.safetensors"))


def load_rng_state(directory: Path, rank: int) -> None:
    path = directory / f"rng-{rank}.safetensors"
    if not path.is_file():
        raise CheckpointError(f"{path}: missing (was the run saved with a different number of processes?)")
    tensors = load_file(str(path))
    torch.set_rng_state(tensors["cpu"])
    if "cuda" in tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state(tensors["cuda"])
