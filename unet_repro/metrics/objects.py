"""Object-level scores of an instance segmentation: which predicted object is which true object, and how many were
found, missed or invented, as Cellpose and StarDist report them.

Inputs are instance label images (H, W) of any integer dtype: 0 = background, every other value one object (the
values need not be consecutive: {3, 17, 65535} is three objects). Truth and prediction are labelled independently.

Overlap. For true object ``i`` and predicted object ``j``

.. math:: \\mathrm{IoU}_{ij} = \\frac{|T_i \\cap P_j|}{|T_i| + |P_j| - |T_i \\cap P_j|}

All intersections come from one joint histogram of the (true label, predicted label) pairs of the pixels
(``np.bincount``), and only the overlapping pairs are kept (:class:`ObjectOverlap`; :meth:`ObjectOverlap.iou_matrix`
gives the dense matrix), so thousands of objects per image cost little.

Matching at an IoU threshold ``t`` (0 < t <= 1): a one-to-one assignment of true to predicted objects using only
pairs with IoU >= t, with the most pairs and, among those, the largest summed IoU (StarDist's
``stardist.matching.matching``, whose cost ``-[IoU >= t] - IoU / (2 n)`` Cellpose's ``metrics._true_positive``
copies). For t > 0.5 the candidate pairs are already one-to-one (IoU > 0.5 means the pair shares more than half
of each of its objects, which two disjoint objects cannot both do with a third); at t <= 0.5 they need not be (a
true object split into two halves overlaps each at IoU 0.5), and ``scipy.optimize.linear_sum_assignment`` solves each connected group of candidate pairs. One difference from
StarDist: its tie-break also counts the IoU of assigned pairs *below* t (they are assigned, then discarded); here
only the matched pairs' IoU counts, so the matching is the one the sentence above defines. The number of matches is
the same either way.

Counts and scores, per image and threshold: ``tp`` = matched pairs, ``fp = n_pred - tp`` (predicted objects left
unmatched), ``fn = n_true - tp`` (true objects left unmatched), and

* ``precision = tp / (tp + fp)``, ``recall = tp / (tp + fn)``, ``f1 = 2 tp / (2 tp + fp + fn)``;
* ``average_precision = tp / (tp + fp + fn)``: what the Cellpose (Stringer et al. 2021, Nat. Methods 18:100) and
  StarDist (Schmidt et al. 2018, MICCAI) papers call "average precision" (AP), after the Kaggle Data Science Bowl 2018
  metric (StarDist's code names it ``accuracy``). It is *not* COCO's AP (Lin et al. 2014), which is the area under
  the precision-recall curve of detections ranked by a confidence score: label images carry no scores, so there is
  no curve, only this one point. The DSB 2018 score is its mean over the thresholds 0.50:0.05:0.95 per image, then
  over images (``object_report(...)["image_mean"]["mean_over_thresholds"]["average_precision"]``);
* ``mean_matched_iou``: the mean IoU of the matched pairs (StarDist ``mean_matched_score``).

Empty conventions (StarDist's, ``stardist/matching.py``: every ratio is 0 when ``tp = 0``): an image with no true
and no predicted objects scores precision = recall = F1 = AP = mean_matched_iou = 0, as does any image with no
match. Cellpose's ``average_precision`` returns NaN (0 / 0) for the empty-empty image instead. An empty-empty image
adds nothing to the summed counts, so it does not move the pooled scores; it pulls the per-image means down.

Aggregates over images (:func:`object_report`): ``pooled`` sums tp, fp, fn, n_true, n_pred and the matched IoU
over the images, then takes the ratios (StarDist ``matching_dataset(by_image=False)``, the figure its papers
report); ``image_mean`` is the mean over images of each image's ratios (StarDist ``by_image=True``, the DSB 2018
way). Each is given at every threshold, at one threshold (0.5 by default) and as the mean over the thresholds
(the COCO thresholds 0.50, 0.55, ..., 0.95 of `unet_repro.metrics.segmentation` by default).
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from ..errors import DataError
from .segmentation import COCO_IOU_THRESHOLDS, _images

__all__ = [
    "OBJECT_RATIOS",
    "ObjectCounts",
    "ObjectMatching",
    "ObjectOverlap",
    "check_label_image",
    "match_objects",
    "match_overlap",
    "object_overlap",
    "object_report",
    "object_scores",
]

#: The ratios :func:`object_scores` derives from the counts (every one in [0, 1], higher is better).
OBJECT_RATIOS: tuple[str, ...] = ("precision", "recall", "f1", "average_precision", "mean_matched_iou")


def check_label_image(labels: np.ndarray, name: str = "labels") -> np.ndarray:
    """``labels`` as an array if it is an instance label image: 2-D, at least one pixel, integer dtype, no negative
    values; else `unet_repro.errors.DataError` naming ``name`` (pass the file name when the image came from one).

    A boolean mask is refused: it cannot tell touching objects apart. Label it first (e.g.
    `unet_repro.cells.label_cells`, or ``scipy.ndimage.label``)."""
    x = np.asarray(labels)
    if x.dtype == bool or not np.issubdtype(x.dtype, np.integer):
        raise DataError(f"{name}: an instance label image must hold integers (0 = background, one value per object), "
                        f"got dtype {x.dtype}; label a binary mask first (unet_repro.cells.label_cells)")
    if x.ndim != 2 or x.size == 0:
        raise DataError(f"{name}: expected one 2-D label image (H, W) with pixels, got shape {x.shape}")
    if np.issubdtype(x.dtype, np.signedinteger) and x.min() < 0:
        raise DataError(f"{name}: labels must be >= 0 (0 = background), found {x.min()}")
    return x


def _check_threshold(threshold: float) -> float:
    t = float(threshold)
    if not 0.0 < t <= 1.0:
        raise ValueError(f"an IoU threshold must be in (0, 1], got {threshold!r}")
    return t


# ------------------------------------------------------------------------------------------------ overlap

@dataclass(frozen=True)
class ObjectOverlap:
    """The overlapping (true, predicted) object pairs of one image.

    ``true_labels`` (n_true,), ``pred_labels`` (n_pred,): the objects' label values, ascending; ``true_areas``,
    ``pred_areas``: their sizes in pixels. ``true_index``, ``pred_index``, ``intersection``, ``iou`` (m,): one entry
    per pair that shares at least one pixel (rows into ``true_labels``, columns into ``pred_labels``)."""

    true_labels: np.ndarray
    pred_labels: np.ndarray
    true_areas: np.ndarray
    pred_areas: np.ndarray
    true_index: np.ndarray
    pred_index: np.ndarray
    intersection: np.ndarray
    iou: np.ndarray

    @property
    def n_true(self) -> int:
        return len(self.true_labels)

    @property
    def n_pred(self) -> int:
        return len(self.pred_labels)

    def iou_matrix(self) -> np.ndarray:
        """Dense IoU of every true (rows) and predicted (columns) object, shape (n_true, n_pred); 0 where disjoint."""
        dense = np.zeros((self.n_true, self.n_pred))
        dense[self.true_index, self.pred_index] = self.iou
        return dense


def object_overlap(truth: np.ndarray, pred: np.ndarray) -> ObjectOverlap:
    """Areas, intersections and IoU of the overlapping objects of two instance label images (H, W) (see
    :func:`check_label_image`): one joint histogram of the pixels' (true, predicted) label pairs, no per-object
    masks. Time and memory grow with the number of pixels, not of objects."""
    return _overlap(truth, pred, "truth", "pred")


def _overlap(truth: np.ndarray, pred: np.ndarray, truth_name: str, pred_name: str) -> ObjectOverlap:
    truth, pred = check_label_image(truth, truth_name), check_label_image(pred, pred_name)
    if truth.shape != pred.shape:
        raise DataError(f"{truth_name} {truth.shape} and {pred_name} {pred.shape}: the label images must have the "
                        f"same shape")
    t_values, t_index, t_areas = _dense_labels(truth.ravel())
    p_values, p_index, p_areas = _dense_labels(pred.ravel())
    # Index 0 is the background when the image has any; objects are the values after it.
    t_skip, p_skip = int(t_values[0] == 0), int(p_values[0] == 0)
    pairs, intersection = _joint_histogram(t_index.astype(np.int64) * len(p_values) + p_index,
                                           len(t_values) * len(p_values))
    rows, cols = pairs // len(p_values) - t_skip, pairs % len(p_values) - p_skip
    objects = (rows >= 0) & (cols >= 0)  # drop the pairs that involve a background pixel
    rows, cols, intersection = rows[objects], cols[objects], intersection[objects]
    t_areas, p_areas = t_areas[t_skip:], p_areas[p_skip:]
    return ObjectOverlap(true_labels=t_values[t_skip:], pred_labels=p_values[p_skip:], true_areas=t_areas,
                         pred_areas=p_areas, true_index=rows, pred_index=cols, intersection=intersection,
                         iou=intersection / (t_areas[rows] + p_areas[cols] - intersection))


def _dense_labels(flat: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The distinct values of ``flat`` (ascending), each pixel's index into them, and each value's pixel count.

    A lookup table indexed by label value is one pass (``np.bincount``); it is used while it has no more entries than
    the image has pixels (or 2^16, so any uint8 / uint16 image). Larger label values (uint32 labels near 2^32, say)
    are sorted instead (``np.unique``): slower, but no table."""
    top = int(flat.max())
    if top >= max(flat.size, 2**16):
        values, index, counts = np.unique(flat, return_inverse=True, return_counts=True)
        return values, index.ravel(), counts
    counts = np.bincount(flat.astype(np.intp), minlength=top + 1)
    values = np.flatnonzero(counts)
    lookup = np.zeros(top + 1, np.intp)
    lookup[values] = np.arange(len(values))
    return values.astype(flat.dtype), lookup[flat], counts[values]


def _joint_histogram(codes: np.ndarray, n_codes: int) -> tuple[np.ndarray, np.ndarray]:
    """The codes that occur (ascending) and how often each does: a dense ``np.bincount`` while it has no more bins
    than there are pixels, else a sort (thousands of objects in both images)."""
    if n_codes <= codes.size:
        histogram = np.bincount(codes, minlength=n_codes)
        present = np.flatnonzero(histogram)
        return present, histogram[present]
    return np.unique(codes, return_counts=True)


# ----------------------------------------------------------------------------------------------- matching

@dataclass(frozen=True)
class ObjectMatching:
    """The one-to-one matching of one image at IoU ``threshold``.

    ``true_labels``, ``pred_labels``, ``ious`` (tp,): the label values and IoU of each matched pair, in ascending
    order of the true label; ``n_true``, ``n_pred``: the objects in each image."""

    threshold: float
    n_true: int
    n_pred: int
    true_labels: np.ndarray
    pred_labels: np.ndarray
    ious: np.ndarray

    def counts(self) -> ObjectCounts:
        return ObjectCounts(n_true=self.n_true, n_pred=self.n_pred, tp=len(self.ious),
                            sum_iou=float(np.sum(self.ious)))


def _assign(rows: np.ndarray, cols: np.ndarray, ious: np.ndarray) -> np.ndarray:
    """Indices of the candidate pairs (rows[k], cols[k]) kept by the most-pairs-then-most-IoU one-to-one matching.

    A weight of ``1 + IoU / (2 n)`` per pair (n = most pairs possible) makes one more pair always worth more than
    any change of summed IoU (at most n / (2 n) = 1/2). Candidate pairs that share no object with another candidate
    pair cannot conflict, so the assignment is solved separately in each connected group of candidate pairs."""
    n_rows, n_cols = int(rows.max()) + 1, int(cols.max()) + 1
    graph = coo_matrix((np.ones(len(rows)), (rows, n_rows + cols)), shape=(n_rows + n_cols,) * 2)
    _, group_of_node = connected_components(graph, directed=False)
    group = group_of_node[rows]
    order = np.argsort(group, kind="stable")
    starts = np.flatnonzero(np.diff(group[order], prepend=-1))
    kept = []
    for members in np.split(order, starts[1:]):
        if len(members) == 1:
            kept.append(members)
            continue
        r_values, r = np.unique(rows[members], return_inverse=True)
        c_values, c = np.unique(cols[members], return_inverse=True)
        n = min(len(r_values), len(c_values))
        weight = np.zeros((len(r_values), len(c_values)))
        pair = np.full(weight.shape, -1)
        weight[r, c] = 1.0 + ious[members] / (2 * n)
        pair[r, c] = members
        chosen_r, chosen_c = linear_sum_assignment(weight, maximize=True)
        chosen = pair[chosen_r, chosen_c]
        kept.append(chosen[chosen >= 0])  # an assigned non-candidate (weight 0) is no match
    return np.sort(np.concatenate(kept))


def match_overlap(overlap: ObjectOverlap, threshold: float = 0.5) -> ObjectMatching:
    """The one-to-one matching at IoU ``threshold`` (0 < t <= 1) of the objects of ``overlap`` (see the module
    docstring: most pairs with IoU >= t, then the largest summed IoU)."""
    t = _check_threshold(threshold)
    ok = np.flatnonzero(overlap.iou >= t)
    rows, cols, ious = overlap.true_index[ok], overlap.pred_index[ok], overlap.iou[ok]
    one_to_one = len(np.unique(rows)) == len(rows) and len(np.unique(cols)) == len(cols)
    if len(ok) and not one_to_one:
        keep = _assign(rows, cols, ious)
        rows, cols, ious = rows[keep], cols[keep], ious[keep]
    return ObjectMatching(threshold=t, n_true=overlap.n_true, n_pred=overlap.n_pred,
                          true_labels=overlap.true_labels[rows], pred_labels=overlap.pred_labels[cols], ious=ious)


def match_objects(truth: np.ndarray, pred: np.ndarray, threshold: float = 0.5) -> ObjectMatching:
    """The one-to-one matching at IoU ``threshold`` of two instance label images (H, W) (0 = background).

    For several thresholds compute :func:`object_overlap` once and call :func:`match_overlap` for each."""
    return match_overlap(object_overlap(truth, pred), threshold)


# --------------------------------------------------------------------------------------------------- scores

class ObjectCounts(NamedTuple):
    """Counts of one image at one threshold, or their sums over images: objects in truth and prediction, matched
    pairs and the sum of their IoU. Add them up field by field to pool images."""

    n_true: int
    n_pred: int
    tp: int
    sum_iou: float

    @property
    def fp(self) -> int:
        return self.n_pred - self.tp

    @property
    def fn(self) -> int:
        return self.n_true - self.tp


def object_scores(c: ObjectCounts) -> dict[str, int | float]:
    """``tp``, ``fp``, ``fn`` and the :data:`OBJECT_RATIOS` of counts ``c``; every ratio is 0 when ``tp = 0``
    (StarDist's convention, also for an image with no objects at all; see the module docstring)."""
    tp, fp, fn = c.tp, c.fp, c.fn
    if tp == 0:
        ratios = dict.fromkeys(OBJECT_RATIOS, 0.0)
    else:
        ratios = {"precision": tp / (tp + fp), "recall": tp / (tp + fn), "f1": 2 * tp / (2 * tp + fp + fn),
                  "average_precision": tp / (tp + fp + fn), "mean_matched_iou": c.sum_iou / tp}
    return {"tp": tp, "fp": fp, "fn": fn, **ratios}


# --------------------------------------------------------------------------------------------------- report

def _summary(by_threshold: dict[str, list[float]], at: int) -> dict:
    return {"by_threshold": by_threshold,
            "at_threshold": {name: values[at] for name, values in by_threshold.items()},
            "mean_over_thresholds": {name: float(np.mean(by_threshold[name])) for name in OBJECT_RATIOS}}


def _scores_block(counts: Sequence[ObjectCounts], at: int) -> dict:
    """Scores at each threshold of one image (or of pooled counts): n_true, n_pred and :func:`_summary`."""
    scores = [object_scores(c) for c in counts]
    by_threshold = {name: [s[name] for s in scores] for name in scores[0]}
    return {"n_true": counts[0].n_true, "n_pred": counts[0].n_pred, **_summary(by_threshold, at)}


def object_report(truths: Iterable[np.ndarray] | np.ndarray, preds: Iterable[np.ndarray] | np.ndarray,
                  thresholds: Sequence[float] | np.ndarray = COCO_IOU_THRESHOLDS, threshold: float = 0.5) -> dict:
    """Object scores of N images, per image and over all of them, at each IoU threshold.

    ``truths``, ``preds``: N instance label images (H, W) each (sequences, or stacks (N, H, W)), image i of one
    compared with image i of the other. ``thresholds``: the IoU thresholds, each in (0, 1]; ``threshold``: the one
    reported on its own (must be one of ``thresholds``). Returns a JSON-ready dict::

        {"thresholds": [K floats], "threshold": 0.5,
         "per_image":  [N blocks], "pooled": block, "image_mean": block without counts}

    where a block is ``{"n_true": int, "n_pred": int, "by_threshold": {name: [K values]},
    "at_threshold": {name: value at `threshold`}, "mean_over_thresholds": {ratio: mean over the K thresholds}}``
    with names ``tp``, ``fp``, ``fn`` and :data:`OBJECT_RATIOS`. ``pooled``: counts summed over the images, then the
    ratios; ``image_mean``: the mean over images of the per-image ratios (no counts, no n_true / n_pred).
    """
    truths, preds = _images(truths), _images(preds)
    if len(truths) != len(preds) or not truths:
        raise ValueError(f"need as many predictions as truths (at least one), got {len(preds)} and {len(truths)}")
    taus = [_check_threshold(t) for t in np.atleast_1d(np.asarray(thresholds, dtype=np.float64))]
    matches = np.flatnonzero(np.isclose(taus, float(threshold), rtol=0.0, atol=1e-9))
    if not len(matches):
        raise ValueError(f"threshold {threshold} must be one of the thresholds {taus}")
    at = int(matches[0])

    counts = []  # counts[i][k]: image i at threshold k
    for i, (truth, pred) in enumerate(zip(truths, preds)):
        overlap = _overlap(truth, pred, f"truth[{i}]", f"pred[{i}]")
        counts.append([match_overlap(overlap, t).counts() for t in taus])
    per_image = [_scores_block(c, at) for c in counts]
    pooled = [ObjectCounts(*map(sum, zip(*(c[k] for c in counts)))) for k in range(len(taus))]
    image_mean = {name: [float(np.mean([block["by_threshold"][name][k] for block in per_image]))
                         for k in range(len(taus))] for name in OBJECT_RATIOS}
    return {"thresholds": taus, "threshold": taus[at], "per_image": per_image,
            "pooled": _scores_block(pooled, at), "image_mean": _summary(image_mean, at)}
