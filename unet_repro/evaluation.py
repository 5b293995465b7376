"""Scoring a set of predictions against ground truth of any mask kind: pixels per class, objects, and the ISBI-2012
challenge metrics for binary EM, per image and over all images (what ``evaluate`` reports).

Each image is compared as two pairs, both (H, W):

* pixels: the true class mask (binary masks 0/1, instance labels as foreground 0/1, class masks 0..K-1) against
  the predicted mask (`unet_repro.prediction.segment`): IoU and Dice of every class, per image, pooled (summed
  confusion matrices) and as the mean over images (`unet_repro.metrics.classes.class_report`; a class absent from
  an image's truth scores NaN there and is left out of means). ``iou`` and ``dice`` are the means over the
  foreground classes 1..K-1 (for binary masks: the foreground's).
* objects: the true objects (:func:`truth_objects`: instance labels as given; a binary mask's 4-connected cells,
  `unet_repro.cells.label_cells`; a class mask's objects of every foreground class,
  `unet_repro.prediction.class_objects`) against the predicted labels, matched one-to-one at IoU >= t
  (`unet_repro.metrics.objects.object_report`): precision, recall, F1 and average precision TP / (TP + FP + FN)
  at t = 0.5, and the average precision's mean over t = 0.50, 0.55, ..., 0.95 (the DSB 2018 / Cellpose score).
  Objects are matched whatever their class: the class is scored by the pixels.
* ISBI (binary truth only, on request): pixel, Rand and warping error, V_Rand and V_Info of the predicted mask
  (`unet_repro.metrics.isbi.threshold_sweep` at the mask itself, one threshold: no sweep), per image and pooled
  over all images as the challenge pools a stack; needs images of one size. A prediction all cell or all membrane
  is flagged ``degenerate``.

Per image, the images are ranked worst first (:meth:`Evaluation.worst`) by their foreground IoU; an image whose
truth has no foreground counts as 0 if something was predicted there, else as 1.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from .cells import label_cells
from .errors import DataError
from .metrics.classes import class_report
from .metrics.isbi import threshold_sweep
from .metrics.objects import object_report
from .prediction import class_objects

__all__ = ["ISBI_METRICS", "Evaluation", "evaluate", "plain", "truth_classes", "truth_objects"]

#: The ISBI challenge metrics reported (`unet_repro.metrics.isbi`), lower is better except V_Rand and V_Info.
ISBI_METRICS: tuple[str, ...] = ("pixel_error", "rand_error", "warping_error", "v_rand", "v_info")
IOU_THRESHOLD = 0.5


def truth_classes(mask: np.ndarray, kind: str) -> np.ndarray:
    """The class mask of a canonical truth mask (`unet_repro.data.masks`): instance labels as foreground 0/1."""
    return (mask != 0).astype(np.uint8) if kind == "instances" else mask


def truth_objects(mask: np.ndarray, kind: str) -> np.ndarray:
    """The objects of a canonical truth mask: instance labels as they are, a binary mask's cells, a class mask's
    objects of every foreground class."""
    if kind == "instances":
        return mask
    return label_cells(mask) if kind == "binary" else class_objects(mask)


@dataclass
class Evaluation:
    """The reports of `evaluate`: ``pixels`` (`class_report`), ``objects`` (`object_report`) and ``isbi``
    (`threshold_sweep` at the mask, or None), for the images ``names``."""

    names: list[str]
    n_classes: int
    pixels: dict[str, Any]
    objects: dict[str, Any]
    isbi: dict[str, Any] | None
    predicted_foreground: list[bool]

    def rows(self) -> list[dict[str, Any]]:
        """One row per image: foreground IoU and Dice, each class's, the object counts and scores at IoU 0.5, the
        average precision over 0.5:0.95 and (with ISBI) the challenge metrics."""
        rows = []
        for i, name in enumerate(self.names):
            px, ob = self.pixels["per_image"][i], self.objects["per_image"][i]
            row: dict[str, Any] = {"image": name, "iou": px["mean_iou_foreground"], "dice": px["mean_dice_foreground"]}
            row.update({f"iou_class{c}": v for c, v in enumerate(px["iou"])})
            row.update({f"dice_class{c}": v for c, v in enumerate(px["dice"])})
            row.update(_object_columns(ob))
            if self.isbi is not None:
                row.update({m: float(self.isbi[m]["per_slice"][i]) for m in ISBI_METRICS})
            rows.append(row)
        return rows

    def summary(self) -> dict[str, Any]:
        """Everything over all images, JSON-ready (NaN as None)."""
        drop = ("per_image",)
        pixels = {k: v for k, v in self.pixels.items() if k not in drop}
        objects = {k: v for k, v in self.objects.items() if k not in drop}
        out: dict[str, Any] = {"images": len(self.names), "n_classes": self.n_classes, "pixels": pixels,
                               "objects": objects}
        if self.isbi is not None:
            out["isbi"] = {m: {"value": self.isbi[m]["value"], "degenerate": self.isbi[m]["degenerate"]}
                           for m in ISBI_METRICS}
        return plain(out)

    def worst(self, n: int) -> list[int]:
        """The indices of the `n` images of lowest foreground IoU, worst first (see the module docstring)."""
        def key(i: int) -> tuple[float, int]:
            value = self.pixels["per_image"][i]["mean_iou_foreground"]
            if math.isnan(value):
                value = 0.0 if self.predicted_foreground[i] else 1.0
            return value, i
        return sorted(range(len(self.names)), key=key)[:n]


def _object_columns(block: dict[str, Any]) -> dict[str, Any]:
    at, mean = block["at_threshold"], block["mean_over_thresholds"]
    return {"n_true": block["n_true"], "n_pred": block["n_pred"], "tp": at["tp"], "fp": at["fp"], "fn": at["fn"],
            "precision": at["precision"], "recall": at["recall"], "f1": at["f1"], "ap_50": at["average_precision"],
            "ap_50_95": mean["average_precision"], "mean_matched_iou": at["mean_matched_iou"]}


def evaluate(truth_masks: Sequence[np.ndarray], pred_masks: Sequence[np.ndarray], truth_labels: Sequence[np.ndarray],
             pred_labels: Sequence[np.ndarray], n_classes: int, names: Sequence[str], isbi: bool = False
             ) -> Evaluation:
    """Score N images (see the module docstring): class masks `truth_masks`, `pred_masks` (0..n_classes-1),
    instance labels `truth_labels`, `pred_labels`, each (H, W), image i of one against image i of the other.
    `DataError` naming the image for shapes that differ and, with `isbi`, for images of different sizes."""
    for name, a, b, c, d in zip(names, truth_masks, pred_masks, truth_labels, pred_labels):
        if not a.shape == b.shape == c.shape == d.shape:
            raise DataError(f"{name}: the prediction is {b.shape[1]}x{b.shape[0]} but the truth is "
                            f"{a.shape[1]}x{a.shape[0]}; compare each image with its own truth")
    pixels = class_report(truth_masks, pred_masks, n_classes)
    objects = object_report(truth_labels, pred_labels, threshold=IOU_THRESHOLD)
    sweep = _isbi(truth_masks, pred_masks, names) if isbi else None
    return Evaluation(list(names), n_classes, pixels, objects, sweep, [bool(p.any()) for p in pred_masks])


def _isbi(truth_masks: Sequence[np.ndarray], pred_masks: Sequence[np.ndarray], names: Sequence[str]) -> dict:
    shapes = {m.shape for m in truth_masks}
    if len(shapes) > 1:
        a, b = sorted(shapes)[:2]
        raise DataError(f"the ISBI metrics pool a stack of one image size, but the images are {a[1]}x{a[0]} "
                        f"({names[[m.shape for m in truth_masks].index(a)]}) and {b[1]}x{b[0]} "
                        f"({names[[m.shape for m in truth_masks].index(b)]}); leave out --isbi")
    prob = np.stack(pred_masks).astype(np.float32)  # the mask as 0/1 "probabilities", thresholded at 0.5
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a degenerate mask is flagged in the result instead
        return threshold_sweep(prob, np.stack(truth_masks), thresholds=[0.5], metrics=ISBI_METRICS)


def plain(value: Any) -> Any:
    """`value` with NaN as None and numpy numbers and arrays as Python ones (strict JSON)."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return plain(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value
