"""Seeded random splits of named images into train / validation / test."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ..errors import DataError


def seeded_split(names: Sequence[str], seed: int, sizes: tuple[int, int, int]) -> dict[str, list[str]]:
    """A seeded random split of `names` into train / val / test of `sizes` (names sorted within each part)."""
    if sum(sizes) > len(names):
        raise DataError(f"the split needs {sum(sizes)} images ({sizes[0]} / {sizes[1]} / {sizes[2]}) but only "
                        f"{len(names)} are available")
    order = np.random.default_rng(seed).permutation(len(names))
    a, b, c = sizes
    parts = [sorted(names[i] for i in order[lo:hi]) for lo, hi in ((0, a), (a, a + b), (a + b, a + b + c))]
    return {"train": parts[0], "val": parts[1], "test": parts[2]}
