"""LoRA adapters on a frozen backbone (through ``peft``'s in-place injection, so the model keeps its class and the
reward model's forward is unchanged): train them, save them apart, merge them for a plain HF folder, and switch
between several on one base (a LoRA ensemble). ``peft`` is imported here only (the ``lora`` extra).

LoRA (Hu et al., arXiv:2106.09685): ``W x + (alpha / r) B A x`` with ``A (r, d_in)``, ``B (d_out, r)``, ``B = 0`` at
start, so an adapted model begins exactly where its base is.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ..errors import CheckpointError, ConfigError
from ..extras import require
from .hf import HFModel

__all__ = ["ADAPTER_CONFIG", "ADAPTER_WEIGHTS", "add_lora", "head_names", "load_adapter", "merge_lora", "save_adapter", "set_adapter"]

ADAPTER_WEIGHTS = "adapter.safetensors"
ADAPTER_CONFIG = "adapter.json"
_TARGETS = {"bert": ["query", "value"], "roberta": ["query", "value"], "deberta-v2": ["query_proj", "value_proj"],
            "distilbert": ["q_lin", "v_lin"]}
"""Attention projections adapted per architecture (``model_type``); decoders (Llama, Qwen, Mistral, SmolLM, ...) use
``q_proj``/``v_proj``."""


def head_names(hf_model: HFModel) -> list[str]:
    """Parameter names of the reward head (trained in full next to the adapters): ``score`` or ``classifier``."""
    return [n for n, _ in hf_model.named_parameters() if n.split(".")[0] in ("score", "classifier")]


def add_lora(hf_model: HFModel, rank: int, alpha: float, name: str = "default") -> None:
    """Inject a LoRA adapter ``name`` into the attention projections and freeze everything but adapters and head."""
    require("peft", "lora", "LoRA (--lora-rank)")
    from peft import LoraConfig, inject_adapter_in_model
    if rank < 1:
        raise ConfigError(f"option 'lora_rank' must be >= 1, got {rank}")
    targets = _TARGETS.get(getattr(hf_model.config, "model_type", ""), ["q_proj", "v_proj"])
    # peft types lora_alpha as int; a float alpha (scaling alpha / r) works and is what users pass
    config = LoraConfig(r=rank, lora_alpha=alpha,  # type: ignore[arg-type]
                        target_modules=targets, lora_dropout=0.0)
    inject_adapter_in_model(config, hf_model, adapter_name=name)
    heads = set(head_names(hf_model))
    for pname, param in hf_model.named_parameters():
        param.requires_grad = "lora_" in pname or pname in heads
    hf_model._rewardlab_lora = {"rank": rank, "alpha": alpha, "targets": targets}


def set_adapter(hf_model: HFModel, name: str) -> None:
    """Make adapter ``name`` the active one in every LoRA layer."""
    from peft.tuners.lora import LoraLayer

    for module in hf_model.modules():
        if isinstance(module, LoraLayer):
            module.set_adapter(name)


def save_adapter(hf_model: HFModel, directory: Path, base_model: str, name: str = "default") -> None:
    """``adapter.safetensors`` (adapter ``name``'s LoRA weights and the head) and ``adapter.json`` in ``directory``."""
    from safetensors.torch import save_file

    heads = set(head_names(hf_model))
    marker = f".{name}."
    tensors = {pname.replace(marker, "."): p.detach().cpu().contiguous() for pname, p in hf_model.named_parameters()
               if ("lora_" in pname and marker in pname) or pname in heads}
    save_file(tensors, str(directory / ADAPTER_WEIGHTS))
    (directory / ADAPTER_CONFIG).write_text(json.dumps({**hf_model._rewardlab_lora, "base_model": base_model}, indent=2))


def load_adapter(hf_model: HFModel, directory: Path, name: str) -> dict[str, torch.Tensor]:
    """Inject adapter ``name`` from ``directory`` into ``hf_model`` (a fresh base) and load its LoRA weights;
    returns the adapter's head weights (each member has its own head: swap them in with the adapter)."""
    from safetensors.torch import load_file

    try:
        config = json.loads((directory / ADAPTER_CONFIG).read_text())
        tensors = load_file(str(directory / ADAPTER_WEIGHTS))
    except Exception as err:  # noqa: BLE001 - OSError, JSON, safetensors errors
        raise CheckpointError(f"{directory}: cannot read the LoRA adapter ({type(err).__name__}: {err})") from None
    add_lora(hf_model, config["rank"], config["alpha"], name)
    state = dict(hf_model.named_parameters())
    heads = {}
    for key, value in tensors.items():
        if "lora_" in key:
            target = key.replace(".lora_A.", f".lora_A.{name}.").replace(".lora_B.", f".lora_B.{name}.")
            if target not in state:
                raise CheckpointError(f"{directory}: adapter weight {key} does not fit the base model")
            with torch.no_grad():
                state[target].copy_(value)
        else:
            heads[key] = value
    return heads


def merge_lora(hf_model: HFModel) -> None:
    """Fold every adapter into its base weights and remove the LoRA layers: a plain model again, which
    ``save_pretrained`` writes as an ordinary HF folder (same rewards, nothing for loaders to know)."""
    from peft.tuners.lora import LoraLayer

    for name, module in list(hf_model.named_modules()):
        if isinstance(module, LoraLayer):
            module.merge()
            parent = hf_model.get_submodule(name.rsplit(".", 1)[0]) if "." in name else hf_model
            setattr(parent, name.rsplit(".", 1)[-1], module.get_base_layer())
    for param in hf_model.parameters():
        param.requires_grad = True
    if hasattr(hf_model, "_rewardlab_lora"):
        del hf_model._rewardlab_lora
