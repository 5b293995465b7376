"""Overlap metrics for binary segmentation masks, per image: confusion counts, IoU (Jaccard), Dice, pixel accuracy,
sensitivity, specificity, the ISIC 2018 thresholded Jaccard and a COCO-style IoU-threshold sweep, and a per-image
report with mean and standard deviation (as skin-lesion papers on PH2 / ISIC report them).

Inputs are binary masks as numpy arrays of one common shape: bool, or numbers where nonzero = foreground (so 0/1 and
0/255 masks both work); float arrays with values strictly between 0 and 1 are rejected as unthresholded
probabilities. Each call scores one image (all its pixels, whatever the shape); outputs are Python floats.

Empty-mask conventions (the same as the ISIC challenge scorer, ``isic_challenge_scoring/metrics.py`` of
github.com/ImageMarkup/isic-challenge-scoring, which scored ISIC 2016-2018 Task 1):

* IoU = Dice = 1 when prediction and truth are both empty (``TP + FP + FN = 0``: nothing to find, nothing found);
  an empty prediction of a non-empty truth, or the reverse, scores 0.
* sensitivity = 1 when the truth has no foreground (``TP + FN = 0``), even if the prediction has false positives
  (those are penalised by specificity, IoU and Dice); specificity = 1 when the truth has no background
  (``TN + FP = 0``).
* pixel accuracy is always defined (an image has at least one pixel).

Thresholded IoU: two different quantities go by this name, both here, under distinct names.

* :func:`thresholded_jaccard` -- the ISIC 2018 Task 1 ranking metric (Codella et al. 2019, "Skin Lesion Analysis
  Toward Melanoma Detection 2018", arXiv:1902.03368; challenge.isic-archive.com/landing/2018/45): per image the IoU
  if it is >= 0.65, else 0 (a segmentation failure), then the mean over images. 0.65 was chosen from the
  inter-observer agreement of the dermatologists' own masks.
* :func:`iou_threshold_sweep` -- COCO style (Lin et al. 2014; pycocotools ``iouThrs = 0.5:0.05:0.95``): for each
  threshold ``tau`` in 0.50, 0.55, ..., 0.95 the fraction of images whose IoU is >= ``tau`` (a "hit" at ``tau``),
  and the mean of those fractions over the ten thresholds. Equivalently, the mean over images of the fraction of
  thresholds each image passes (which, for one object per image, is the Kaggle Data Science Bowl 2018 score).
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import NamedTuple

import numpy as np

ISIC_JACCARD_THRESHOLD = 0.65
#: 0.50, 0.55, ..., 0.95, rounded to 2 decimals so that an IoU of exactly 0.7 passes the 0.7 threshold
#: (``np.arange(0.5, 1.0, 0.05)`` holds 0.7000000000000002, ``np.linspace(0.5, 0.95, 10)`` 0.8999999999999999).
COCO_IOU_THRESHOLDS = np.round(np.linspace(0.5, 0.95, 10), 2)
COCO_IOU_THRESHOLDS.setflags(write=False)


class Confusion(NamedTuple):
    """Pixel counts of one image: true positives, false positives, false negatives, true negatives."""
    tp: int
    fp: int
    fn: int
    tn: int


def _as_mask(x: np.ndarray, name: str) -> np.ndarray:
    x = np.asarray(x)
    if x.dtype == bool:
        return x
    if np.issubdtype(x.dtype, np.floating) and np.any((x > 0) & (x < 1)):
        raise ValueError(f"{name} must be a binary mask (foreground = nonzero); threshold the probabilities first")
    return x != 0


def confusion(pred: np.ndarray, truth: np.ndarray) -> Confusion:
    """``(tp, fp, fn, tn)``: pixels with pred=1,truth=1 / pred=1,truth=0 / pred=0,truth=1 / pred=0,truth=0.

    ``pred`` and ``truth``: binary masks of one common shape (e.g. (H, W)), counted over all their pixels.
    """
    pred, truth = _as_mask(pred, "pred"), _as_mask(truth, "truth")
    if pred.shape != truth.shape:
        raise ValueError(f"pred {pred.shape} and truth {truth.shape} must have the same shape")
    if pred.size == 0:
        raise ValueError("empty image (no pixels)")
    tp = int(np.count_nonzero(pred & truth))
    n_pred, n_truth = int(np.count_nonzero(pred)), int(np.count_nonzero(truth))
    fp, fn = n_pred - tp, n_truth - tp
    return Confusion(tp, fp, fn, pred.size - tp - fp - fn)


def _iou(c: Confusion) -> float:
    denominator = c.tp + c.fp + c.fn
    return 1.0 if denominator == 0 else c.tp / denominator


def _dice(c: Confusion) -> float:
    denominator = 2 * c.tp + c.fp + c.fn
    return 1.0 if denominator == 0 else 2 * c.tp / denominator


def _pixel_accuracy(c: Confusion) -> float:
    return (c.tp + c.tn) / (c.tp + c.fp + c.fn + c.tn)


def _sensitivity(c: Confusion) -> float:
    return 1.0 if c.tp + c.fn == 0 else c.tp / (c.tp + c.fn)


def _specificity(c: Confusion) -> float:
    return 1.0 if c.tn + c.fp == 0 else c.tn / (c.tn + c.fp)


def iou(pred: np.ndarray, truth: np.ndarray) -> float:
    """Intersection over union (Jaccard index) ``|P & T| / |P | T| = TP / (TP + FP + FN)``; 1 if both are empty."""
    return _iou(confusion(pred, truth))


def dice(pred: np.ndarray, truth: np.ndarray) -> float:
    """Dice coefficient (F1) ``2 |P & T| / (|P| + |T|) = 2 TP / (2 TP + FP + FN)``; 1 if both are empty.

    Per image, ``dice = 2 iou / (1 + iou)`` (monotone, so both rank images alike; their means over images differ).
    """
    return _dice(confusion(pred, truth))


def pixel_accuracy(pred: np.ndarray, truth: np.ndarray) -> float:
    """Fraction of correctly classified pixels ``(TP + TN) / (TP + FP + FN + TN)``."""
    return _pixel_accuracy(confusion(pred, truth))


def sensitivity(pred: np.ndarray, truth: np.ndarray) -> float:
    """Sensitivity (recall, true positive rate) ``TP / (TP + FN)``; 1 if the truth has no foreground."""
    return _sensitivity(confusion(pred, truth))


def specificity(pred: np.ndarray, truth: np.ndarray) -> float:
    """Specificity (true negative rate) ``TN / (TN + FP)``; 1 if the truth has no background."""
    return _specificity(confusion(pred, truth))


def thresholded_jaccard(iou: float | Sequence[float] | np.ndarray,
                        threshold: float = ISIC_JACCARD_THRESHOLD) -> float:
    """ISIC 2018 Task 1 "thresholded Jaccard": mean over images of ``J_i if J_i >= threshold else 0``.

    .. math:: TJ = \\frac{1}{N} \\sum_{i=1}^{N} J_i \\, [J_i \\ge \\tau], \\quad \\tau = 0.65

    ``iou``: the per-image IoU values (a float for one image). An image below the threshold counts as a failure and
    contributes 0, so the score penalises failures more than the plain mean IoU. Not to be confused with
    :func:`iou_threshold_sweep` (COCO style). For the per-image values use :func:`thresholded_jaccard_per_image`.
    """
    return float(np.mean(thresholded_jaccard_per_image(iou, threshold)))


def thresholded_jaccard_per_image(iou: float | Sequence[float] | np.ndarray,
                                  threshold: float = ISIC_JACCARD_THRESHOLD) -> np.ndarray:
    """Per-image ISIC 2018 thresholded Jaccard ``J_i [J_i >= threshold]`` (array of shape (N,))."""
    j = np.atleast_1d(np.asarray(iou, dtype=np.float64))
    if j.ndim != 1 or j.size == 0:
        raise ValueError(f"expected a non-empty 1-D sequence of per-image IoUs, got shape {j.shape}")
    return np.where(j >= threshold, j, 0.0)


class IoUSweep(NamedTuple):
    """Result of :func:`iou_threshold_sweep`.

    ``thresholds`` (K,); ``fraction`` (K,): fraction of images with IoU >= each threshold; ``mean``: the mean of
    ``fraction`` over the thresholds; ``per_image`` (N,): the fraction of thresholds each image passes (its mean over
    images is ``mean`` too).
    """
    thresholds: np.ndarray
    fraction: np.ndarray
    mean: float
    per_image: np.ndarray


def iou_threshold_sweep(ious: float | Sequence[float] | np.ndarray,
                        thresholds: Sequence[float] | np.ndarray = COCO_IOU_THRESHOLDS) -> IoUSweep:
    """COCO-style IoU-threshold sweep over images (not the ISIC thresholded Jaccard, see :func:`thresholded_jaccard`).

    .. math::
        f(\\tau) = \\frac{1}{N} \\sum_{i=1}^{N} [J_i \\ge \\tau], \\qquad
        \\overline{f} = \\frac{1}{K} \\sum_{k=1}^{K} f(\\tau_k), \\quad \\tau \\in \\{0.50, 0.55, \\dots, 0.95\\}

    A per-image IoU ``J_i`` counts as a hit at ``tau`` when ``J_i >= tau`` (the comparison pycocotools uses to match).
    ``ious``: per-image IoU values, shape (N,). Returns an :class:`IoUSweep`.
    """
    j = np.atleast_1d(np.asarray(ious, dtype=np.float64))
    taus = np.atleast_1d(np.asarray(thresholds, dtype=np.float64))
    if j.ndim != 1 or j.size == 0:
        raise ValueError(f"expected a non-empty 1-D sequence of per-image IoUs, got shape {j.shape}")
    if taus.ndim != 1 or taus.size == 0:
        raise ValueError(f"expected a non-empty 1-D sequence of thresholds, got shape {taus.shape}")
    hits = j[:, None] >= taus[None, :]  # (N, K)
    fraction = hits.mean(axis=0)
    return IoUSweep(thresholds=taus, fraction=fraction, mean=float(fraction.mean()), per_image=hits.mean(axis=1))


#: The per-image metrics of :func:`segmentation_report`, as functions of the confusion counts.
SEGMENTATION_METRICS: dict[str, Callable[[Confusion], float]] = {
    "iou": _iou,
    "dice": _dice,
    "pixel_accuracy": _pixel_accuracy,
    "sensitivity": _sensitivity,
    "specificity": _specificity,
}


def pooled_scores(preds: Iterable[np.ndarray] | np.ndarray,
                  truths: Iterable[np.ndarray] | np.ndarray) -> dict[str, float]:
    """Scores of all pixels of N images pooled (micro average: confusion counts summed over the images first), as
    training reports its validation each epoch: ``iou`` and ``dice`` of the foreground, ``iou_background`` (of the
    background class: the membranes of the EM data), and ``pixel_error`` = 1 - pixel accuracy (the fraction of wrong
    pixels). Shapes as :func:`segmentation_report`."""
    preds, truths = _images(preds), _images(truths)
    if len(preds) != len(truths) or not preds:
        raise ValueError(f"need as many predictions as truths (at least one), got {len(preds)} and {len(truths)}")
    c = Confusion(*np.sum([confusion(p, t) for p, t in zip(preds, truths)], axis=0).tolist())
    background = Confusion(tp=c.tn, fp=c.fn, fn=c.fp, tn=c.tp)
    return {"iou": _iou(c), "dice": _dice(c), "iou_background": _iou(background),
            "pixel_error": 1.0 - _pixel_accuracy(c)}


def _images(masks: Iterable[np.ndarray] | np.ndarray) -> list[np.ndarray]:
    if isinstance(masks, np.ndarray):
        if masks.ndim < 3:
            raise ValueError(f"a stack of masks must be (N, H, W), got shape {masks.shape}; wrap one image in a list")
        return list(masks)
    return [np.asarray(m) for m in masks]


def segmentation_report(preds: Iterable[np.ndarray] | np.ndarray, truths: Iterable[np.ndarray] | np.ndarray,
                        ddof: int = 0) -> dict[str, dict[str, float | list[float]]]:
    """Per-image metrics of N images and their mean and standard deviation over the images.

    ``preds``, ``truths``: N binary masks each (a sequence, or stacks of shape (N, H, W) / (N, 1, H, W)), image i of
    one compared with image i of the other. Returns ``{metric: {"mean": float, "std": float, "per_image": [N floats]}}``
    for ``iou``, ``dice``, ``pixel_accuracy``, ``sensitivity``, ``specificity`` (see their functions for the
    empty-mask conventions), ``thresholded_jaccard`` (ISIC 2018: per image IoU if >= 0.65 else 0) and ``iou_sweep``
    (per image the fraction of the COCO IoU thresholds 0.50..0.95 it passes; its mean is
    ``iou_threshold_sweep(ious).mean``). ``mean``/``std`` are over images (macro averages, as the ISIC scorer does),
    ``std`` with ``ddof`` degrees of freedom (0: population standard deviation, numpy's default; 1: sample).
    """
    preds, truths = _images(preds), _images(truths)
    if len(preds) != len(truths):
        raise ValueError(f"{len(preds)} predictions but {len(truths)} ground truths")
    if not preds:
        raise ValueError("no images")
    counts = [confusion(p, t) for p, t in zip(preds, truths)]
    per_image = {name: np.array([f(c) for c in counts]) for name, f in SEGMENTATION_METRICS.items()}
    per_image["thresholded_jaccard"] = thresholded_jaccard_per_image(per_image["iou"])
    per_image["iou_sweep"] = iou_threshold_sweep(per_image["iou"]).per_image
    return {name: {"mean": float(np.mean(v)), "std": float(np.std(v, ddof=ddof)) if v.size > ddof else float("nan"),
                   "per_image": [float(x) for x in v]}
            for name, v in per_image.items()}
