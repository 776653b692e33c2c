"""The one way a figure is written: the folder made, the PNG saved, the figure closed (no leaked figures)."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib.pyplot as plt


def save_figure(fig, path: str | os.PathLike, *, dpi: int = 110, tight_bbox: bool = False) -> Path:
    """Save ``fig`` to ``path`` (parents created) at ``dpi``, close it and return the path.

    ``tight_bbox`` crops to the drawn artists (``bbox_inches="tight"``), which keeps a legend placed outside
    the axes in the image.
    """
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=dpi, **({"bbox_inches": "tight"} if tight_bbox else {}))
    plt.close(fig)
    return out
