"""Pixel-weighted cross-entropy, the paper's energy function (eq. 1): binary for one logit, soft-max for K."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _check(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None) -> None:
    spatial = (logits.shape[0], 1, *logits.shape[2:])
    if target.shape != spatial or (weight is not None and weight.shape != spatial):
        raise ValueError(f"logits {tuple(logits.shape)}, target {tuple(target.shape)} and weight "
                         f"{None if weight is None else tuple(weight.shape)} must have the same shape (one target "
                         f"and weight channel)")


def cross_entropy(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Mean over pixels of ``w(x) * CE`` for logits (B, K, H, W): the binary cross-entropy of ``sigmoid(z)`` for
    K = 1 (target in {0, 1}), the soft-max cross-entropy ``-log p_{t(x)}(x)`` for K >= 2 (target the class index);
    `weight` None means all ones. Target and weight are (B, 1, H, W)."""
    _check(logits, target, weight)
    if logits.shape[1] == 1:
        return F.binary_cross_entropy_with_logits(logits, target.to(logits.dtype), weight=weight, reduction="mean")
    per_pixel = F.cross_entropy(logits, target[:, 0].long(), reduction="none")
    if weight is not None:
        per_pixel = per_pixel * weight[:, 0]
    return per_pixel.mean()


class WeightedBCEWithLogitsLoss(nn.Module):
    """The paper's pixel-weighted cross-entropy (eq. 1): mean over pixels of ``w(x) * CE``.

    One logit (B, 1, H, W), binary target: the binary cross-entropy of ``sigmoid(z)``,

    .. math::
        L = \\frac{1}{|\\Omega|} \\sum_{x \\in \\Omega} -w(x) \\left[ t(x) \\log \\sigma(z(x))
            + (1 - t(x)) \\log (1 - \\sigma(z(x))) \\right]

    computed from logits in the numerically stable form ``max(z, 0) - z t + log(1 + exp(-|z|))``; same value as
    ``torch.nn.BCEWithLogitsLoss(weight=weight)``. K logits (B, K, H, W), K >= 2, class-index target: the paper's
    pixel-wise soft-max with cross-entropy, ``L = mean_x -w(x) log p_{t(x)}(x)``. For K = 2 the two are the same
    function of the logit difference ``z_1 - z_0`` (soft-max of two logits is the sigmoid of their difference), with
    the same gradients with respect to it.

    Shapes: ``logits`` (B, K, H, W); ``target`` and ``weight`` (B, 1, H, W); returns a scalar. ``weight=None`` means
    all ones (plain cross-entropy).
    """

    uses_weight_map = True
    k_classes = True

    def forward(self, logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
        return cross_entropy(logits, target, weight)
