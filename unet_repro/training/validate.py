"""Validation: whole held-out images predicted with overlap-tile prediction, scored with the run's own loss and the
pooled overlap metrics. The same function scores the best checkpoint at the end of a run."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import nn

from ..data.targets import training_target, weight_maps
from ..geometry import Tile
from ..inference import predict_tiled
from ..losses import build_loss, uses_weight_map
from ..metrics.classes import class_confusion_matrix, class_scores
from ..metrics.segmentation import pooled_scores
from ..progress import progress
from ..weightmap import PAPER_SIGMA, PAPER_W0


def foreground(prob: np.ndarray) -> np.ndarray:
    """P(foreground) of a probability map: the map itself for one channel (H, W), else 1 - P(background) for
    (K, H, W) (for K = 2 that is P(class 1))."""
    return prob if prob.ndim == 2 else 1.0 - prob[0]


def predicted_classes(prob: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """The (H, W) class of every pixel: foreground above `threshold` for one channel, else the most probable."""
    return (prob > threshold).astype(np.uint8) if prob.ndim == 2 else prob.argmax(axis=0).astype(np.uint8)


def evaluate(model: nn.Module, images: Sequence[np.ndarray], labels: Sequence[np.ndarray], loss: str = "weighted_bce",
             tile: Tile | int | None = None, device: torch.device | None = None, autocast: bool = False,
             tta: bool = False, w0: float = PAPER_W0, sigma: float = PAPER_SIGMA, show_progress: bool = False,
             kind: str = "binary") -> tuple[dict[str, float | list[float]], list[np.ndarray]]:
    """Validation metrics on whole images predicted with overlap-tile prediction, and the probability maps.

    ``loss``: the run's loss on the whole images (with the weight map of each label, of its `kind`, when the loss
    uses one). Two classes (binary masks, instance labels; one logit or two): the pooled ``iou``, ``dice``,
    ``iou_background`` and ``pixel_error`` of `unet_repro.metrics.segmentation.pooled_scores` at P(foreground) >
    0.5. K classes: ``iou`` and ``dice`` are the means over the foreground classes, ``iou_background`` class 0's,
    ``pixel_error`` the fraction of wrong pixels, and ``iou_per_class`` / ``dice_per_class`` list every class
    (pooled over the images; a class absent from every label is NaN). ``tile``: see
    `unet_repro.inference.predict_tiled`; ``autocast``: bf16 (the run's `unet_repro.training.Precision`
    ``eval_bf16``); ``tta`` averages each prediction over the 8 symmetries of the square.
    """
    loss_fn = build_loss(loss)
    weights = weight_maps(labels, w0, sigma, kind) if uses_weight_map(loss) else [None] * len(labels)
    probs, total, pixels = [], 0.0, 0
    pairs = list(zip(images, labels, weights))
    for image, label, weight in progress(pairs, desc="validation", enabled=show_progress):
        p = predict_tiled(model, image, tile=tile, device=device, autocast=autocast, tta=tta)
        probs.append(p)
        target = training_target(label, kind)
        total += whole_image_loss(loss_fn, p, target, weight) * label.size  # losses are pixel means: by pixels
        pixels += label.size
    targets = [training_target(label, kind) for label in labels]
    if kind == "classes":
        metrics = class_metrics([predicted_classes(p) for p in probs], targets, probs[0].shape[0])
    else:
        metrics = pooled_scores([foreground(p) > 0.5 for p in probs], [t > 0 for t in targets])
    return {"loss": total / pixels, **metrics}, probs


def whole_image_loss(loss_fn: nn.Module, prob: np.ndarray, target: np.ndarray, weight: np.ndarray | None) -> float:
    """The loss of one whole image from its probabilities (logits recovered up to what the loss ignores: the logit
    of P(foreground), or the log of the soft-max probabilities)."""
    p = torch.from_numpy(prob)
    if prob.ndim == 2:
        logits = torch.logit(p[None, None], eps=1e-7).double()
    else:
        logits = torch.log(p.double().clamp_min(1e-7))[None]
    t = torch.from_numpy(target.astype(np.float64))[None, None]
    w = None if weight is None else torch.from_numpy(weight.astype(np.float64))[None, None]
    return float(loss_fn(logits, t, w))


def class_metrics(predictions: Sequence[np.ndarray], targets: Sequence[np.ndarray],
                  n_classes: int) -> dict[str, float | list[float]]:
    """Pooled per-class IoU and Dice of K-class predictions, their means over the foreground classes, class 0's IoU
    and the fraction of wrong pixels."""
    confusion = sum(class_confusion_matrix(t, p, n_classes) for p, t in zip(predictions, targets))
    scores = class_scores(confusion)
    return {"iou": float(scores["mean_iou_foreground"]), "dice": float(scores["mean_dice_foreground"]),
            "iou_background": float(scores["iou"][0]),
            "pixel_error": float(1.0 - np.trace(confusion) / confusion.sum()),
            "iou_per_class": [float(v) for v in scores["iou"]], "dice_per_class": [float(v) for v in scores["dice"]]}


def is_better(metrics: dict[str, float], best: float | None, monitor: str) -> bool:
    if best is None:
        return True
    return metrics[monitor] < best if monitor == "loss" else metrics[monitor] > best


__all__ = ["class_metrics", "evaluate", "foreground", "is_better", "predicted_classes", "whole_image_loss"]
