"""Plots are an extra (``pip install 'rewardlab[plots]'``): one place that imports matplotlib, lazily, on the file-only
Agg backend, and saves figures. Leaf module: imports nothing from rewardlab."""

from __future__ import annotations

import os
from typing import Any

__all__ = ["pyplot", "save_figure"]


def pyplot() -> Any | None:
    """``matplotlib.pyplot`` on the Agg backend, or None when matplotlib is not installed (callers then skip the plot
    and say so; the numbers are in their JSON anyway)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def save_figure(fig: Any, path: str | os.PathLike, dpi: int = 120) -> None:
    """Lay out, write and close ``fig`` (closing frees it: reports draw many)."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
