"""Where a sequence's reward is read: the last real token, located from the attention mask."""

from __future__ import annotations

import torch

__all__ = ["gather_last_token", "last_token_index"]


def last_token_index(attention_mask: torch.Tensor) -> torch.Tensor:
    """Index of the last attended position per row; works for left and right padding.

    Shapes: ``attention_mask`` ``(B, T)`` -> ``(B,)`` long.

    >>> last_token_index(torch.tensor([[1, 1, 0], [0, 1, 1], [1, 1, 1]])).tolist()
    [1, 2, 2]
    """
    positions = torch.arange(attention_mask.shape[-1], device=attention_mask.device)
    return (positions * attention_mask.to(positions.dtype)).argmax(dim=-1)


def gather_last_token(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Hidden state at the last real token. Shapes: ``(B, T, H)``, ``(B, T)`` -> ``(B, H)``."""
    index = last_token_index(attention_mask)
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), index]
