"""Reading label masks the same way for every dataset."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import DataError


def binarize_mask(a: np.ndarray, path: Path | str) -> np.ndarray:
    """A label or mask image (or a stack of them) as {0, 1} uint8, foreground = 1.

    0/1 masks are taken as they are and any other gray-value mask (0/255, or a lossy one) is thresholded at 127: so
    0/1 labels are never read as all background, whatever tool wrote them. Shape unchanged.
    """
    a = np.asarray(a)
    if a.dtype == bool:
        return a.astype(np.uint8)
    if not np.issubdtype(a.dtype, np.integer):
        raise DataError(f"{path}: a mask must hold integers (0/1 or 0/255), got {a.dtype}; save it as 8-bit PNG/TIFF")
    top = int(a.max()) if a.size else 0
    return (a > 0).astype(np.uint8) if top <= 1 else (a > 127).astype(np.uint8)
