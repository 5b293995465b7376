"""Binary cross-entropy computed from logits (the unweighted counterpart of :mod:`.weighted_bce`)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .weighted_bce import cross_entropy


class BCEWithLogitsLoss(nn.Module):
    """Mean over pixels of the binary cross-entropy of ``sigmoid(z)`` against ``t``, optionally up-weighting positives.

    .. math::
        L = \\frac{1}{|\\Omega|} \\sum_{x \\in \\Omega} -\\left[ w_+ \\, t \\log \\sigma(z)
            + (1 - t) \\log(1 - \\sigma(z)) \\right]

    with ``w_+ = pos_weight`` (1 when ``None``). It is evaluated from the logits in the numerically stable form

    .. math::
        \\ell(z, t) = (1 - t) z + \\left(1 + (w_+ - 1) t\\right) \\left( \\log(1 + e^{-|z|}) + \\max(-z, 0) \\right)

    (``log(1 + e^{-|z|}) + max(-z, 0) = -log sigma(z)`` never overflows), which is what
    :func:`torch.nn.functional.binary_cross_entropy_with_logits` computes; this module wraps it. With
    ``pos_weight=None`` the value equals ``torch.nn.BCEWithLogitsLoss()``; with ``pos_weight = n_neg / n_pos`` the two
    classes contribute equally.

    Shapes: ``logits`` and ``target`` (B, 1, H, W) (or any one common shape), ``target`` in [0, 1] (binary for
    segmentation); for K >= 2 logits (B, K, H, W) and a (B, 1, H, W) class-index target, the soft-max
    cross-entropy (`unet_repro.losses.weighted_bce.cross_entropy` without weights); returns a scalar, the mean over all pixels of the batch (= the batch mean of per-image means, the
    images being the same size).

    ``forward`` takes a ``weight`` argument only so that every loss of :mod:`unet_repro.losses` can be called the same
    way; it is ignored. Only :class:`~unet_repro.losses.WeightedBCEWithLogitsLoss` uses the paper's weight map.

    Args:
        pos_weight: weight ``w_+ > 0`` of the positive (foreground) term; a float or a tensor broadcastable to the
            input (e.g. shape (1,) or (1, 1, 1)). ``None``: 1.
    """

    pos_weight: torch.Tensor | None
    k_classes = True

    def __init__(self, pos_weight: float | torch.Tensor | None = None) -> None:
        super().__init__()
        if pos_weight is not None:
            pos_weight = torch.as_tensor(pos_weight, dtype=torch.float32)
            if torch.any(pos_weight <= 0):
                raise ValueError(f"pos_weight must be positive, got {pos_weight}")
        self.register_buffer("pos_weight", pos_weight)

    def forward(self, logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
        if logits.shape[1] > 1 and self.pos_weight is None:  # K classes: the soft-max cross-entropy, unweighted
            return cross_entropy(logits, target)
        if logits.shape != target.shape:
            raise ValueError(f"logits {tuple(logits.shape)} and target {tuple(target.shape)} must have the same shape")
        pos_weight = None if self.pos_weight is None else self.pos_weight.to(logits.dtype)
        return F.binary_cross_entropy_with_logits(logits, target.to(logits.dtype), pos_weight=pos_weight,
                                                  reduction="mean")
