"""What the hardware offers: native bf16 arithmetic (leaf module: imports torch only)."""

from __future__ import annotations

from pathlib import Path

import torch

__all__ = ["native_bf16", "resolve_precision"]


def native_bf16() -> bool:
    """True on CUDA GPUs with bf16 support and on CPUs with AVX512-BF16 or AMX-BF16 instructions."""
    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    cpuinfo = Path("/proc/cpuinfo")
    flags = set(cpuinfo.read_text().split()) if cpuinfo.exists() else set()
    return bool(flags & {"avx512_bf16", "amx_bf16"})


def resolve_precision(precision: str) -> str:
    """``auto`` -> ``bf16`` where :func:`native_bf16`, else ``fp32``; other values pass through.

    >>> resolve_precision("fp32")
    'fp32'
    """
    if precision != "auto":
        return precision
    return "bf16" if native_bf16() else "fp32"
