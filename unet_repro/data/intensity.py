"""The network's input scaling: how gray values become the numbers a network sees, for training and prediction
alike."""
from __future__ import annotations

import numpy as np


def normalize(image: np.ndarray) -> np.ndarray:
    """The network's input scaling, used for training and prediction alike: uint8 gray values -> float32 in [0, 1]."""
    if image.dtype == np.uint8:
        return image.astype(np.float32) / 255.0
    return image.astype(np.float32, copy=False)
