"""Binary focal loss (Lin, Goyal, Girshick, He, Dollar 2017, "Focal Loss for Dense Object Detection", eq. 5)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class FocalLoss(nn.Module):
    """Cross-entropy scaled by ``(1 - p_t)^gamma``, so that well-classified pixels contribute little.

    .. math::
        p_t = \\begin{cases} \\sigma(z) & t = 1 \\\\ 1 - \\sigma(z) & t = 0 \\end{cases}, \\quad
        \\alpha_t = \\begin{cases} \\alpha & t = 1 \\\\ 1 - \\alpha & t = 0 \\end{cases}, \\quad
        L = \\frac{1}{|\\Omega|} \\sum_{x \\in \\Omega} -\\alpha_t (1 - p_t)^{\\gamma} \\log p_t

    averaged over all pixels of the batch (= the batch mean of per-image means). ``alpha=None`` means
    ``alpha_t = 1`` for both classes; then ``gamma = 0`` gives exactly the binary cross-entropy. Computed from the
    logits without forming ``sigma(z)``: ``log p_t = t logsigmoid(z) + (1 - t) logsigmoid(-z)`` and
    ``(1 - p_t)^gamma = exp(gamma [t logsigmoid(-z) + (1 - t) logsigmoid(z)])``, finite (and with finite gradients)
    for any logits, including +-1000 and ``gamma < 1``.

    Shapes: ``logits`` and ``target`` (B, 1, H, W) (or any one common shape), ``target`` binary (for a soft target the
    two expressions above interpolate between the two cases); returns a scalar.

    ``forward`` takes a ``weight`` argument only so that every loss of :mod:`unet_repro.losses` can be called the same
    way; it is ignored. Only :class:`~unet_repro.losses.WeightedBCEWithLogitsLoss` uses the paper's weight map.

    Args:
        gamma: focusing parameter ``gamma >= 0`` (the paper's default 2).
        alpha: weight of the positive class in [0, 1] (negatives get ``1 - alpha``; the paper uses 0.25 for
            detection), or ``None`` for no class weighting.
    """

    def __init__(self, gamma: float = 2.0, alpha: float | None = None) -> None:
        super().__init__()
        if gamma < 0:
            raise ValueError(f"gamma must be >= 0, got {gamma}")
        if alpha is not None and not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1] or None, got {alpha}")
        self.gamma = float(gamma)
        self.alpha = None if alpha is None else float(alpha)

    def forward(self, logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
        if logits.shape != target.shape:
            raise ValueError(f"logits {tuple(logits.shape)} and target {tuple(target.shape)} must have the same shape")
        t = target.to(logits.dtype)
        log_p = F.logsigmoid(logits)       # log sigma(z)
        log_not_p = F.logsigmoid(-logits)  # log (1 - sigma(z))
        log_pt = t * log_p + (1 - t) * log_not_p
        loss = -log_pt
        if self.gamma != 0:
            loss = loss * torch.exp(self.gamma * (t * log_not_p + (1 - t) * log_p))
        if self.alpha is not None:
            loss = loss * (self.alpha * t + (1 - self.alpha) * (1 - t))
        return loss.mean()

    def extra_repr(self) -> str:
        return f"gamma={self.gamma}, alpha={self.alpha}"
