"""Per-class overlap of K-class segmentation masks: IoU and Dice of every class, their means, per image and pooled.

Inputs are class-index masks (H, W) of an integer (or bool) dtype with values 0..K-1, K >= 2; class 0 is the
background and is scored like any other class. A binary mask is K = 2 (class 1 = foreground). One (K, K) confusion
matrix per image, ``C[i, j]`` = pixels of true class i predicted as class j (one ``np.bincount``), gives for class c
``TP = C[c, c]``, ``FP = sum_i C[i, c] - TP``, ``FN = sum_j C[c, j] - TP`` and

.. math:: \\mathrm{IoU}_c = \\frac{TP}{TP + FP + FN}, \\qquad \\mathrm{Dice}_c = \\frac{2\\,TP}{2\\,TP + FP + FN}

Empty classes follow MONAI's ``compute_iou`` / ``DiceMetric`` ``ignore_empty`` switch
(``monai/metrics/meaniou.py``):

* ``ignore_empty=True`` (default, MONAI's default): a class absent from the truth scores NaN, whatever the prediction
  (false positives of such a class only count in the other classes' scores and in ``pooled``), and NaN is left out
  of every mean.
* ``ignore_empty=False``: a class absent from both truth and prediction scores 1, one present in only one of them 0.
  For K = 2 the foreground class then equals `unet_repro.metrics.segmentation.iou` / ``dice`` (the ISIC scorer's
  convention).

Means over classes, each ignoring NaN: ``mean_iou_foreground`` / ``mean_dice_foreground`` over classes 1..K-1, and
``mean_iou_all`` / ``mean_dice_all`` over classes 0..K-1 (with the background, which is usually large and easy, so
the higher of the two). A mean over nothing but NaN is NaN.

Aggregates over images (:func:`class_report`), as MONAI reduces: ``pooled`` sums the confusion matrices over the
images, then takes the ratios (the same empty rule, applied to the sums); ``image_mean`` is, per class, the mean
over the images where the class is not NaN (MONAI ``mean_batch``), and for the class means, the mean over images of
each image's class mean (MONAI ``mean``).
"""
from __future__ import annotations

import warnings
from collections.abc import Iterable

import numpy as np

from ..errors import DataError
from .segmentation import _images

__all__ = ["CLASS_MEANS", "check_class_mask", "class_confusion_matrix", "class_report", "class_scores"]

#: The means over classes that :func:`class_scores` reports besides the per-class ``iou`` and ``dice``.
CLASS_MEANS: tuple[str, ...] = ("mean_iou_foreground", "mean_iou_all", "mean_dice_foreground", "mean_dice_all")


def check_class_mask(mask: np.ndarray, n_classes: int, name: str = "mask") -> np.ndarray:
    """``mask`` as an array if it is a 2-D class-index mask with values in 0..n_classes-1 (integer or bool dtype);
    else `unet_repro.errors.DataError` naming ``name`` (pass the file name when the mask came from one)."""
    x = np.asarray(mask)
    if x.dtype != bool and not np.issubdtype(x.dtype, np.integer):
        raise DataError(f"{name}: a class mask must hold integer class indices 0..{n_classes - 1}, got dtype "
                        f"{x.dtype}; take the argmax of class probabilities first")
    if x.ndim != 2 or x.size == 0:
        raise DataError(f"{name}: expected one 2-D class mask (H, W) with pixels, got shape {x.shape}")
    low, high = int(x.min()), int(x.max())
    if low < 0 or high >= n_classes:
        hint = "; a 0/255 binary mask needs (mask > 0)" if n_classes == 2 and high == 255 else ""
        raise DataError(f"{name}: class indices must be in 0..{n_classes - 1} (n_classes = {n_classes}), found "
                        f"values {low}..{high}{hint}")
    return x


def _check_n_classes(n_classes: int) -> int:
    if int(n_classes) != n_classes or n_classes < 2:
        raise ValueError(f"n_classes must be an integer >= 2 (background included), got {n_classes!r}")
    return int(n_classes)


def class_confusion_matrix(truth: np.ndarray, pred: np.ndarray, n_classes: int) -> np.ndarray:
    """(K, K) int64 pixel counts, ``[i, j]`` = pixels of true class i predicted as class j, of two class masks
    (H, W) of one shape (see :func:`check_class_mask`)."""
    return _confusion(truth, pred, _check_n_classes(n_classes), "truth", "pred")


def _confusion(truth: np.ndarray, pred: np.ndarray, k: int, truth_name: str, pred_name: str) -> np.ndarray:
    truth, pred = check_class_mask(truth, k, truth_name), check_class_mask(pred, k, pred_name)
    if truth.shape != pred.shape:
        raise DataError(f"{truth_name} {truth.shape} and {pred_name} {pred.shape}: the class masks must have the "
                        f"same shape")
    codes = truth.ravel().astype(np.int64) * k + pred.ravel()
    return np.bincount(codes, minlength=k * k).reshape(k, k)


def _nanmean(x: np.ndarray) -> float:
    """Mean of the non-NaN values; NaN (without numpy's warning) when there are none."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(np.nanmean(x)) if np.any(~np.isnan(x)) else float("nan")


def class_scores(confusion: np.ndarray, ignore_empty: bool = True) -> dict[str, list[float] | float]:
    """``iou`` and ``dice`` of every class (lists of K floats) and the :data:`CLASS_MEANS` of a (K, K) confusion
    matrix (of one image, or summed over images); empty classes as the module docstring says."""
    c = np.asarray(confusion, dtype=np.int64)
    tp = np.diag(c)
    fp, fn = c.sum(axis=0) - tp, c.sum(axis=1) - tp
    in_truth, union = tp + fn, tp + fp + fn
    with np.errstate(divide="ignore", invalid="ignore"):
        iou, dice = tp / union, 2 * tp / (2 * tp + fp + fn)
    if ignore_empty:
        iou[in_truth == 0] = dice[in_truth == 0] = np.nan
    else:
        iou[union == 0] = dice[union == 0] = 1.0
    return {"iou": iou.tolist(), "dice": dice.tolist(),
            "mean_iou_foreground": _nanmean(iou[1:]), "mean_iou_all": _nanmean(iou),
            "mean_dice_foreground": _nanmean(dice[1:]), "mean_dice_all": _nanmean(dice)}


def class_report(truths: Iterable[np.ndarray] | np.ndarray, preds: Iterable[np.ndarray] | np.ndarray,
                 n_classes: int, ignore_empty: bool = True) -> dict:
    """Per-class IoU and Dice of N images: per image, pooled and the mean over images.

    ``truths``, ``preds``: N class masks (H, W) each (sequences, or stacks (N, H, W)), image i of one compared with
    image i of the other. Returns a JSON-ready dict (NaN where a class is empty, see the module docstring)::

        {"n_classes": K, "ignore_empty": bool,
         "per_image": [N x class_scores], "pooled": class_scores of the summed confusion matrices,
         "image_mean": {"iou": [K], "dice": [K], <CLASS_MEANS>: float}}
    """
    k = _check_n_classes(n_classes)
    truths, preds = _images(truths), _images(preds)
    if len(truths) != len(preds) or not truths:
        raise ValueError(f"need as many predictions as truths (at least one), got {len(preds)} and {len(truths)}")
    matrices = [_confusion(truth, pred, k, f"truth[{i}]", f"pred[{i}]")
                for i, (truth, pred) in enumerate(zip(truths, preds))]
    per_image = [class_scores(m, ignore_empty) for m in matrices]
    image_mean = {name: [_nanmean(np.array([s[name][c] for s in per_image])) for c in range(k)]
                  for name in ("iou", "dice")}
    image_mean.update({name: _nanmean(np.array([s[name] for s in per_image])) for name in CLASS_MEANS})
    return {"n_classes": k, "ignore_empty": bool(ignore_empty), "per_image": per_image,
            "pooled": class_scores(np.sum(matrices, axis=0), ignore_empty), "image_mean": image_mean}
