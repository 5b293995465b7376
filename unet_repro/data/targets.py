"""What a network is trained against, per label image: the label itself and, for a loss that uses it, the paper's
border weight map (`unet_repro.weightmap.border_weight_map`), computed once per label image and weight-map
parameters in a process, however many times a run asks for it (training tiles, validation every epoch, final
scoring, every fold of a cross-validation that holds the image)."""
from __future__ import annotations

import hashlib
from collections import OrderedDict
from typing import Sequence

import numpy as np

from ..weightmap import PAPER_SIGMA, PAPER_W0, border_weight_map

# Weight maps kept in memory, by label content: a whole ISBI stack (30 maps of 1 MiB) and a few folds of own data.
_CACHE_SIZE = 256
_cache: OrderedDict[tuple, np.ndarray] = OrderedDict()


def _key(label: np.ndarray, w0: float, sigma: float) -> tuple:
    label = np.ascontiguousarray(label)
    digest = hashlib.blake2b(label.view(np.uint8).reshape(-1), digest_size=16).hexdigest()
    return digest, label.shape, label.dtype.str, float(w0), float(sigma)


def weight_map(label: np.ndarray, w0: float = PAPER_W0, sigma: float = PAPER_SIGMA) -> np.ndarray:
    """The border weight map of one (H, W) label, from the cache when this label was seen with these parameters.
    The returned array is shared: read-only."""
    key = _key(label, w0, sigma)
    if key in _cache:
        _cache.move_to_end(key)
        return _cache[key]
    weights = border_weight_map(label, w0=w0, sigma=sigma)
    weights.flags.writeable = False
    _cache[key] = weights
    if len(_cache) > _CACHE_SIZE:
        _cache.popitem(last=False)
    return weights


def weight_maps(labels: Sequence[np.ndarray], w0: float = PAPER_W0, sigma: float = PAPER_SIGMA) -> list[np.ndarray]:
    """`weight_map` of every label of a set."""
    return [weight_map(label, w0, sigma) for label in labels]


__all__ = ["weight_map", "weight_maps"]
