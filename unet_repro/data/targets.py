"""What a network is trained against, per label image, decided by the kind of the labels (`MASK_KINDS`):

* binary masks ({0, 1}): the mask itself; the paper's weight map of its 4-connected cells;
* instance labels (each nonzero value one object, separation borders drawn: `unet_repro.instances`): the target
  is foreground = nonzero, as the paper's HeLa and U373 ground truth; the weight map's d1 and d2 are distances to
  the nearest and second-nearest *object* (``border_weight_map(..., instances=True)``), so the border between two
  touching cells gets about w0 + w_c;
* class masks (0..K-1): the class index; w_c balances the K classes and the border term separates the connected
  objects of the foreground classes.

The weight map of a label image is computed once per label, parameters and kind in a process, however many times a
run asks for it (training tiles, validation every epoch, final scoring, every fold of a cross-validation that holds
the image), and only for losses that use it.
"""
from __future__ import annotations

import hashlib
from collections import OrderedDict
from typing import Sequence

import numpy as np

from ..weightmap import PAPER_SIGMA, PAPER_W0, border_weight_map
from .masks import KINDS as MASK_KINDS

# Weight maps kept in memory, by label content: a whole ISBI stack (30 maps of 1 MiB) and a few folds of own data.
_CACHE_SIZE = 256
_cache: OrderedDict[tuple, np.ndarray] = OrderedDict()


def training_target(label: np.ndarray, kind: str = "binary") -> np.ndarray:
    """The (H, W) uint8 target of a label image: {0, 1} (binary, instances) or class indices (classes)."""
    if kind not in MASK_KINDS:
        raise ValueError(f"kind must be one of {', '.join(MASK_KINDS)}, got {kind!r}")
    if kind == "instances":
        return (np.asarray(label) != 0).astype(np.uint8)
    return np.asarray(label).astype(np.uint8, copy=False)


def training_targets(labels: Sequence[np.ndarray], kind: str = "binary") -> list[np.ndarray]:
    return [training_target(label, kind) for label in labels]


def _key(label: np.ndarray, w0: float, sigma: float, kind: str) -> tuple:
    label = np.ascontiguousarray(label)
    digest = hashlib.blake2b(label.view(np.uint8).reshape(-1), digest_size=16).hexdigest()
    return digest, label.shape, label.dtype.str, float(w0), float(sigma), kind


def _compute(label: np.ndarray, w0: float, sigma: float, kind: str) -> np.ndarray:
    if kind == "instances":
        return border_weight_map(label, w0=w0, sigma=sigma, instances=True)
    if kind == "classes":
        return border_weight_map(label != 0, w0=w0, sigma=sigma, classes=label)
    return border_weight_map(label, w0=w0, sigma=sigma)


def weight_map(label: np.ndarray, w0: float = PAPER_W0, sigma: float = PAPER_SIGMA,
               kind: str = "binary") -> np.ndarray:
    """The paper's weight map of one (H, W) label image of `kind`, from the cache when this label was seen with
    these parameters. The returned array is shared: read-only."""
    key = _key(label, w0, sigma, kind)
    if key in _cache:
        _cache.move_to_end(key)
        return _cache[key]
    weights = _compute(np.asarray(label), w0, sigma, kind)
    weights.flags.writeable = False
    _cache[key] = weights
    if len(_cache) > _CACHE_SIZE:
        _cache.popitem(last=False)
    return weights


def weight_maps(labels: Sequence[np.ndarray], w0: float = PAPER_W0, sigma: float = PAPER_SIGMA,
                kind: str = "binary") -> list[np.ndarray]:
    """`weight_map` of every label of a set."""
    return [weight_map(label, w0, sigma, kind) for label in labels]


__all__ = ["MASK_KINDS", "training_target", "training_targets", "weight_map", "weight_maps"]
