"""ProcessRewardModel: per-token scores from a token-classification head; steps gathered separately.

Saved as an ``AutoModelForTokenClassification`` folder (``num_labels`` 1 for hard/soft labels,
3 for -1/0/+1) plus ``rewardlab.json`` naming the step separator: a step's score is the head's
output at the last token of the step's text, steps joined by the separator in the reply.
Use decoder-only backbones: with a bidirectional encoder a step's score would see later steps.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from .hf import HFModel

__all__ = ["ProcessRewardModel", "build_process_reward_model", "gather_step_scores"]


class ProcessRewardModel(nn.Module):
    """``(input_ids, attention_mask) -> (B, T)`` step logits, or ``(B, T, 3)`` for 3-class labels."""

    pooling = "per_token"

    def __init__(self, hf_model: HFModel):
        super().__init__()
        self.hf_model = hf_model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
        try:
            logits = self.hf_model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids).logits
        except TypeError:  # encoders without position_ids in their signature
            logits = self.hf_model(input_ids=input_ids, attention_mask=attention_mask).logits
        return logits.squeeze(-1) if logits.shape[-1] == 1 else logits


def gather_step_scores(logits: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """Logits at step positions: ``(B, T[, C])`` and ``(B, S)`` (-1 = no step) -> ``(B, S[, C])``.

    >>> gather_step_scores(torch.arange(6.0).view(1, 6), torch.tensor([[1, 4, -1]])).tolist()
    [[1.0, 4.0, 0.0]]
    """
    index = positions.clamp(min=0).to(logits.device)
    if logits.dim() == 3:
        out = logits.gather(1, index[..., None].expand(-1, -1, logits.shape[-1]))
        return out * (positions >= 0)[..., None].to(out.device)
    return logits.gather(1, index) * (positions >= 0).to(logits.device)


def build_process_reward_model(name_or_path: str, num_labels: int = 1, trust_remote_code: bool = False) -> tuple[ProcessRewardModel, Any]:
    """A fresh PRM (pretrained backbone + new token head) and its tokenizer."""
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    from .io import release_gguf, resolve_model_source

    path, extra = resolve_model_source(name_or_path)
    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code, **extra)
    hf_model = release_gguf(AutoModelForTokenClassification.from_pretrained(
        path, num_labels=num_labels, trust_remote_code=trust_remote_code, **extra))
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    hf_model.config.pad_token_id = tokenizer.pad_token_id
    return ProcessRewardModel(hf_model), tokenizer
