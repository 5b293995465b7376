"""Segmentation losses, one per module, each taking logits.

Every loss is an ``nn.Module`` called as ``loss(logits, target, weight=None)`` with ``logits`` and ``target`` of shape
(B, 1, H, W) and returning a scalar. Only :class:`WeightedBCEWithLogitsLoss` (the paper's energy function) uses
``weight``, the paper's pixel weight map; the others accept and ignore it, so a training loop can call any of them
the same way. :func:`build_loss` builds one by name from :data:`LOSSES`.

A loss class says what it can do with two class attributes (a new loss is one entry in `LOSSES`):
``uses_weight_map`` (True: the training loop computes the paper's weight map and passes it; default False) and
``k_classes`` (True: it takes K logits (B, K, H, W) and a class-index target, so ``--classes K`` may use it; default
False).
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


def uses_weight_map(name: str) -> bool:
    """Whether the loss registered under `name` uses the weight map (only then is it worth computing)."""
    return bool(getattr(LOSSES[name.strip().lower()], "uses_weight_map", False))


def k_class_losses() -> list[str]:
    """The names of the losses with a K-class form (``k_classes``), sorted."""
    return sorted(name for name, loss in LOSSES.items() if getattr(loss, "k_classes", False))


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
    "build_loss", "k_class_losses", "uses_weight_map",
]
