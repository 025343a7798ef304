"""RewardModel: a Hugging Face sequence-classification network whose reward is read at one token."""

from __future__ import annotations

import inspect
from typing import Literal

import torch
from torch import nn

from ..data.collate import PackedLayout
from .packing import packing_unsupported_reason, run_packed
from .pooling import gather_last_token
from .hf import HFModel

__all__ = ["Pooling", "RewardModel", "choose_pooling", "transformer_layers"]

Pooling = Literal["last_token", "native"]
"""``last_token``: the head reads the last real token (decoder-only backbones, whose
``*ForSequenceClassification`` has a per-token ``score`` head). ``native``: the backbone's own
classification head (encoders such as BERT/MiniLM read the ``[CLS]`` pooler), which is exactly
what ``transformers`` computes, so scores agree with plain ``from_pretrained`` loads."""


def choose_pooling(hf_model: HFModel) -> Pooling:
    """``last_token`` when the model has a per-token linear ``score`` head, else ``native``."""
    return "last_token" if isinstance(getattr(hf_model, "score", None), nn.Linear) else "native"


class RewardModel(nn.Module):
    """Map tokens to rewards: ``(input_ids, attention_mask) -> (B,)``, or ``(B, K)`` for K objectives.

    Wraps an ``AutoModelForSequenceClassification`` network (kept as ``hf_model`` so it saves
    in the format TRL, reward-bench, OpenRLHF and vLLM load). For ``last_token`` pooling the
    index comes from the attention mask, and position ids are derived from it too, so left and
    right padding and any batch composition give the same reward for the same text.
    """

    def __init__(self, hf_model: HFModel, pooling: Pooling | None = None):
        super().__init__()
        self.hf_model = hf_model
        self.pooling: Pooling = pooling or choose_pooling(hf_model)
        if self.pooling == "last_token":
            trunk_params = inspect.signature(hf_model.base_model.forward).parameters
            self._pass_position_ids = "position_ids" in trunk_params

    def packing_unsupported_reason(self) -> str | None:
        """``None`` when this backbone can run packed batches, else why not."""
        return packing_unsupported_reason(self.hf_model, self.pooling)

    @property
    def num_labels(self) -> int:
        return int(self.hf_model.config.num_labels)

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, layout: PackedLayout | None = None
    ) -> torch.Tensor:
        """Shapes: ``(B, T)``, ``(B, T)`` -> ``(B,)`` (one label) or ``(B, K)``.

        Packed input (``data.collate.pack_examples``): ``input_ids`` ``(1, T)`` and its
        ``layout`` instead of a mask -> ``(N,)`` or ``(N, K)``, one reward per packed sequence.
        """
        if layout is not None:
            logits = run_packed(self.hf_model, self.pooling, input_ids, layout)
        elif attention_mask is None:
            raise ValueError("pass an attention_mask (padded batch) or a layout (packed batch)")
        elif self.pooling == "native":
            logits = self.hf_model(input_ids=input_ids, attention_mask=attention_mask).logits
        else:
            kwargs = {}
            if self._pass_position_ids:
                kwargs["position_ids"] = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
            out = self.hf_model.base_model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False, **kwargs)
            logits = self.hf_model.score(gather_last_token(out.last_hidden_state, attention_mask))
        return logits.squeeze(-1) if logits.shape[-1] == 1 else logits


def transformer_layers(hf_model: HFModel) -> nn.ModuleList:
    """The stack of transformer blocks, bottom first (Llama ``layers``, BERT ``encoder.layer``, GPT-2 ``h``)."""
    trunk = hf_model.base_model
    for path in ("layers", "encoder.layer", "h", "decoder.layers", "transformer.layer", "blocks"):
        node = trunk
        for name in path.split("."):
            node = getattr(node, name, None)
        if isinstance(node, nn.ModuleList):
            return node
    raise ValueError(f"cannot find the transformer blocks of {type(hf_model).__name__}")
