"""Soft pixel counts of a probability map against a binary target: what the overlap losses (Dice, Tversky) share."""
from __future__ import annotations

import torch


def soft_probabilities(logits: torch.Tensor, target: torch.Tensor,
                       per_image: bool) -> tuple[torch.Tensor, torch.Tensor, tuple[int, ...]]:
    """``p = sigmoid(logits)``, the target in ``p``'s dtype, and the dims to sum a soft count over.

    Shapes: ``logits`` and ``target`` (B, ...), the same; the dims are all but the batch dim with ``per_image``
    (one count per image), else all of them (one count for the batch). Raises ValueError for mismatched shapes or a
    tensor without a batch dim.
    """
    if logits.shape != target.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and target {tuple(target.shape)} must have the same shape")
    if logits.ndim < 2:
        raise ValueError(f"expected a batch (B, 1, H, W), got shape {tuple(logits.shape)}")
    p = torch.sigmoid(logits)
    dims = tuple(range(1, p.ndim)) if per_image else tuple(range(p.ndim))
    return p, target.to(p.dtype), dims
