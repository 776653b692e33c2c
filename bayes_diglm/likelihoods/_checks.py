r"""Target checks shared by several families."""

from __future__ import annotations

import numpy as np

__all__ = ["check_counts"]


def check_counts(y: np.ndarray, family: str) -> np.ndarray:
    """Refuse targets that are not non-negative integer counts (``ValueError`` naming ``family``)."""
    if not np.all((y >= 0) & (y == np.round(y))):
        raise ValueError(f"y must hold non-negative integer counts for a {family} likelihood")
    return y
