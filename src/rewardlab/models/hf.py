"""The type of a wrapped ``transformers`` network."""

from __future__ import annotations

from typing import Any

__all__ = ["HFModel"]

HFModel = Any
"""A ``transformers`` ``PreTrainedModel`` (e.g. ``LlamaForSequenceClassification``). Typed ``Any`` on purpose:
``torch.nn.Module.__getattr__`` types every attribute as ``Tensor | Module``, so ``hf_model.config`` or
``hf_model.base_model.forward`` would not type-check, and transformers' own classes are not precise either."""
