"""Validation: whole held-out images predicted with overlap-tile prediction, scored with the run's own loss and the
pooled overlap metrics. The same function scores the best checkpoint at the end of a run."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import nn

from ..data.targets import weight_maps
from ..geometry import Tile
from ..inference import predict_tiled
from ..losses import build_loss, uses_weight_map
from ..metrics.segmentation import pooled_scores
from ..progress import progress
from ..weightmap import PAPER_SIGMA, PAPER_W0


def evaluate(model: nn.Module, images: Sequence[np.ndarray], labels: Sequence[np.ndarray], loss: str = "weighted_bce",
             tile: Tile | int | None = None, device: torch.device | None = None, autocast: bool = False,
             tta: bool = False, w0: float = PAPER_W0, sigma: float = PAPER_SIGMA,
             show_progress: bool = False) -> tuple[dict[str, float], list[np.ndarray]]:
    """Validation metrics on whole images predicted with overlap-tile prediction.

    Returns ``loss`` (the run's loss `loss` on the whole images, with the border weight map of each label when the
    loss uses one), the pooled ``iou``, ``dice``, ``iou_background`` and ``pixel_error`` of
    `unet_repro.metrics.segmentation.pooled_scores` at threshold 0.5, and the probability maps. ``tile``: see
    `unet_repro.inference.predict_tiled`; ``autocast``: bf16 (the run's `unet_repro.training.Precision`
    ``eval_bf16``); ``tta`` averages each prediction over the 8 symmetries of the square.
    """
    loss_fn = build_loss(loss)
    weights = weight_maps(labels, w0, sigma) if uses_weight_map(loss) else [None] * len(labels)
    probs, total, pixels = [], 0.0, 0
    pairs = list(zip(images, labels, weights))
    for image, label, weight in progress(pairs, desc="validation", enabled=show_progress):
        p = predict_tiled(model, image, tile=tile, device=device, autocast=autocast, tta=tta)
        probs.append(p)
        logits = torch.logit(torch.from_numpy(p)[None, None], eps=1e-7).double()
        target = torch.from_numpy(label.astype(np.float64))[None, None]
        w = None if weight is None else torch.from_numpy(weight.astype(np.float64))[None, None]
        total += float(loss_fn(logits, target, w)) * label.size  # losses are pixel means: pool by pixels
        pixels += label.size
    return {"loss": total / pixels, **pooled_scores([p > 0.5 for p in probs], [lab > 0 for lab in labels])}, probs


def is_better(metrics: dict[str, float], best: float | None, monitor: str) -> bool:
    if best is None:
        return True
    return metrics[monitor] < best if monitor == "loss" else metrics[monitor] > best


__all__ = ["evaluate", "is_better"]
