"""Segmentation losses, one per module, each taking logits.

Every loss is an ``nn.Module`` called as ``loss(logits, target, weight=None)`` with ``logits`` and ``target`` of shape
(B, 1, H, W) and returning a scalar. Only :class:`WeightedBCEWithLogitsLoss` (the paper's energy function) uses
``weight``, the paper's pixel weight map; the others accept and ignore it, so a training loop can call any of them
the same way. :func:`build_loss` builds one by name from :data:`LOSSES`.
"""
from __future__ import annotations

from torch import nn

from .bce import BCEWithLogitsLoss
from .combo import ComboLoss
from .dice import DiceLoss
from .focal import FocalLoss
from .tversky import TverskyLoss
from .weighted_bce import WeightedBCEWithLogitsLoss

LOSSES: dict[str, type[nn.Module]] = {
    "bce": BCEWithLogitsLoss,
    "dice": DiceLoss,
    "focal": FocalLoss,
    "tversky": TverskyLoss,
    "combo": ComboLoss,
    "weighted_bce": WeightedBCEWithLogitsLoss,
}


# The losses that use the paper's pixel weight map (the others ignore the weight argument).
WEIGHT_MAP_LOSSES = frozenset({"weighted_bce"})
# The losses with a K-class form (soft-max cross-entropy); the others are written for one foreground channel.
K_CLASS_LOSSES = frozenset({"weighted_bce", "bce"})


def uses_weight_map(name: str) -> bool:
    """Whether the loss registered under `name` uses the weight map (only then is it worth computing)."""
    return name.strip().lower() in WEIGHT_MAP_LOSSES


def build_loss(name: str, **options) -> nn.Module:
    """The loss registered under ``name`` in :data:`LOSSES` (case-insensitive), built with ``options``.

    Raises ``ValueError`` for an unknown name (listing the known ones); wrong options raise the loss's own
    ``TypeError``/``ValueError``.
    """
    key = name.strip().lower()
    if key not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; known losses: {', '.join(sorted(LOSSES))}")
    return LOSSES[key](**options)


__all__ = [
    "BCEWithLogitsLoss", "ComboLoss", "DiceLoss", "FocalLoss", "LOSSES", "TverskyLoss", "WeightedBCEWithLogitsLoss",
    "K_CLASS_LOSSES", "WEIGHT_MAP_LOSSES", "build_loss", "uses_weight_map",
]
