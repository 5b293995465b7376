"""Weighted sum of the focal loss and the soft Dice loss (a distribution term plus a region term)."""
from __future__ import annotations

import torch
from torch import nn

from .dice import DiceLoss
from .focal import FocalLoss


class ComboLoss(nn.Module):
    """``L = focal_weight * Focal(z, t; gamma, alpha) + dice_weight * Dice(z, t; smooth)``.

    .. math::
        L = w_f \\, \\frac{1}{|\\Omega|} \\sum_x -\\alpha_t (1 - p_t)^{\\gamma} \\log p_t
            \\; + \\; w_d \\, \\frac{1}{B} \\sum_b
            \\left( 1 - \\frac{2 \\sum_x p t + s}{\\sum_x p + \\sum_x t + s} \\right)

    The pixel-wise focal term (:class:`~unet_repro.losses.FocalLoss`) keeps the gradients well behaved and
    concentrates on hard pixels, the region-wise Dice term (:class:`~unet_repro.losses.DiceLoss`, per image) counters
    foreground/background imbalance. With ``gamma = 0`` and ``alpha = None`` the focal term is the BCE, i.e. the
    common "BCE + Dice" loss. (Taghanaki et al. 2019's "Combo loss" is a weighted CE + Dice of the same shape.)

    Shapes: ``logits`` and ``target`` (B, 1, H, W), ``target`` binary; returns a scalar.

    ``forward`` takes a ``weight`` argument only so that every loss of :mod:`unet_repro.losses` can be called the same
    way; it is ignored. Only :class:`~unet_repro.losses.WeightedBCEWithLogitsLoss` uses the paper's weight map.

    Args:
        focal_weight: ``w_f >= 0``.
        dice_weight: ``w_d >= 0``.
        gamma, alpha: of the focal term (see :class:`~unet_repro.losses.FocalLoss`).
        smooth: of the Dice term (see :class:`~unet_repro.losses.DiceLoss`).
    """

    def __init__(self, focal_weight: float = 0.5, dice_weight: float = 0.5, gamma: float = 2.0,
                 alpha: float | None = None, smooth: float = 1.0) -> None:
        super().__init__()
        if focal_weight < 0 or dice_weight < 0:
            raise ValueError(f"focal_weight and dice_weight must be >= 0, got {focal_weight}, {dice_weight}")
        self.focal_weight, self.dice_weight = float(focal_weight), float(dice_weight)
        self.focal = FocalLoss(gamma=gamma, alpha=alpha)
        self.dice = DiceLoss(smooth=smooth, per_image=True)

    def forward(self, logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
        return self.focal_weight * self.focal(logits, target) + self.dice_weight * self.dice(logits, target)

    def extra_repr(self) -> str:
        return f"focal_weight={self.focal_weight}, dice_weight={self.dice_weight}"
