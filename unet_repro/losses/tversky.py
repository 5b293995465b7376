"""Tversky loss (Salehi, Erdogmus, Gholipour 2017, "Tversky loss function for image segmentation using 3D fully
convolutional deep networks"), a Dice loss that weights false positives and false negatives separately."""
from __future__ import annotations

import torch
from torch import nn

from .soft_counts import soft_probabilities


class TverskyLoss(nn.Module):
    """One minus the soft Tversky index of ``p = sigmoid(z)`` and the target ``t``.

    .. math::
        TP = \\sum_x p t, \\quad FP = \\sum_x p (1 - t), \\quad FN = \\sum_x (1 - p) t, \\qquad
        L_b = 1 - \\frac{TP + s}{TP + \\alpha \\, FP + \\beta \\, FN + s}, \\qquad L = \\frac{1}{B} \\sum_b L_b

    ``alpha`` weights the false positives and ``beta`` the false negatives, as in Salehi et al. 2017 (they use
    ``alpha + beta = 1``; ``beta > alpha`` favours recall, e.g. ``alpha=0.3, beta=0.7`` for small lesions).
    ``alpha = beta = 0.5`` gives the Dice loss: ``TP + (FP + FN)/2 = (sum p + sum t)/2``, so the index equals
    ``(2 TP + 2s) / (sum p + sum t + 2s)``, i.e. ``TverskyLoss(0.5, 0.5, smooth=s) == DiceLoss(smooth=2 s)``, and
    exactly the same loss when ``s = 0``. ``alpha = beta = 1`` gives the soft Jaccard (IoU) loss.

    Counts per image (all dims but the batch dim), then the batch mean, with ``per_image=True`` (default); over the
    whole batch with ``per_image=False``. ``s`` keeps the loss defined (0) for an empty target and prediction.

    Shapes: ``logits`` and ``target`` (B, 1, H, W) (any common shape (B, ...)), ``target`` binary; returns a scalar.

    ``forward`` takes a ``weight`` argument only so that every loss of :mod:`unet_repro.losses` can be called the same
    way; it is ignored. Only :class:`~unet_repro.losses.WeightedBCEWithLogitsLoss` uses the paper's weight map.

    Args:
        alpha: weight of the false positives, >= 0.
        beta: weight of the false negatives, >= 0.
        smooth: ``s >= 0``, added to numerator and denominator.
        per_image: index per image then batch mean (True), or one index over the whole batch (False).
    """

    def __init__(self, alpha: float = 0.5, beta: float = 0.5, smooth: float = 1.0, per_image: bool = True) -> None:
        super().__init__()
        if alpha < 0 or beta < 0 or smooth < 0:
            raise ValueError(f"alpha, beta and smooth must be >= 0, got {alpha}, {beta}, {smooth}")
        self.alpha, self.beta, self.smooth = float(alpha), float(beta), float(smooth)
        self.per_image = bool(per_image)

    def forward(self, logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
        p, t, dims = soft_probabilities(logits, target, self.per_image)
        tp = (p * t).sum(dims)
        fp = (p * (1 - t)).sum(dims)
        fn = ((1 - p) * t).sum(dims)
        index = (tp + self.smooth) / (tp + self.alpha * fp + self.beta * fn + self.smooth)
        return (1 - index).mean()

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, beta={self.beta}, smooth={self.smooth}, per_image={self.per_image}"
