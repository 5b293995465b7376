"""Pixel-weighted binary cross-entropy, the paper's energy function (eq. 1) for one output channel."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class WeightedBCEWithLogitsLoss(nn.Module):
    """Mean over pixels of ``w(x) * BCE(sigmoid(z(x)), t(x))``.

    .. math::
        L = \\frac{1}{|\\Omega|} \\sum_{x \\in \\Omega} -w(x) \\left[ t(x) \\log \\sigma(z(x))
            + (1 - t(x)) \\log (1 - \\sigma(z(x))) \\right]

    computed from logits in the numerically stable form ``max(z, 0) - z t + log(1 + exp(-|z|))``; with a sigmoid
    output it equals the paper's pixel-wise soft-max cross-entropy with a weight map for two classes. Same value as
    ``torch.nn.BCEWithLogitsLoss(weight=weight)``.

    Shapes: ``logits``, ``target`` and ``weight`` all (B, 1, H, W) (or any one common shape); returns a scalar.
    ``weight=None`` means all ones (plain BCE).
    """

    def forward(self, logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
        if logits.shape != target.shape or (weight is not None and weight.shape != logits.shape):
            raise ValueError(f"logits {tuple(logits.shape)}, target {tuple(target.shape)} and weight "
                             f"{None if weight is None else tuple(weight.shape)} must have the same shape")
        return F.binary_cross_entropy_with_logits(logits, target.to(logits.dtype), weight=weight, reduction="mean")
