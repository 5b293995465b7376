"""Soft Dice loss on sigmoid probabilities (Milletari et al. 2016, "V-Net", with an additive smoothing term)."""
from __future__ import annotations

import torch
from torch import nn

from .soft_counts import soft_probabilities


class DiceLoss(nn.Module):
    """One minus the soft Dice coefficient of ``p = sigmoid(z)`` and the target ``t``.

    .. math::
        L_b = 1 - \\frac{2 \\sum_x p(x) t(x) + s}{\\sum_x p(x) + \\sum_x t(x) + s}, \\qquad
        L = \\frac{1}{B} \\sum_{b=1}^{B} L_b

    With ``per_image=True`` (default) the sums run over the pixels of each image separately (all dims but the batch
    dim) and the B per-image losses are averaged, so every image counts the same whatever its foreground size. With
    ``per_image=False`` the sums run over the whole batch and one Dice is computed for it (larger foregrounds then
    dominate). The smoothing ``s`` keeps the loss defined for an empty target and an empty prediction (then
    ``L_b = 1 - s/s = 0``) and softens the gradient for small objects; ``s = 0`` gives the plain soft Dice (undefined,
    NaN, when ``p`` and ``t`` are both zero everywhere). The loss lies in [0, 1] and is ~0 for a perfect confident
    prediction.

    Shapes: ``logits`` and ``target`` (B, 1, H, W) (any common shape (B, ...)), ``target`` binary; returns a scalar.

    ``forward`` takes a ``weight`` argument only so that every loss of :mod:`unet_repro.losses` can be called the same
    way; it is ignored. Only :class:`~unet_repro.losses.WeightedBCEWithLogitsLoss` uses the paper's weight map.

    Args:
        smooth: ``s >= 0``, added to numerator and denominator.
        per_image: Dice per image then batch mean (True), or one Dice over the whole batch (False).
    """

    def __init__(self, smooth: float = 1.0, per_image: bool = True) -> None:
        super().__init__()
        if smooth < 0:
            raise ValueError(f"smooth must be >= 0, got {smooth}")
        self.smooth = float(smooth)
        self.per_image = bool(per_image)

    def forward(self, logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
        p, t, dims = soft_probabilities(logits, target, self.per_image)
        intersection = (p * t).sum(dims)
        denominator = p.sum(dims) + t.sum(dims)
        dice = (2 * intersection + self.smooth) / (denominator + self.smooth)
        return (1 - dice).mean()

    def extra_repr(self) -> str:
        return f"smooth={self.smooth}, per_image={self.per_image}"
