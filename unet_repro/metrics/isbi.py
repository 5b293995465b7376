"""ISBI-2012 EM segmentation challenge metrics, computed the way the challenge's Fiji evaluation computed them.

The paper's Table 1 (Ronneberger et al. 2015) reports the challenge's three original ("2012") metrics: warping
error, Rand error and pixel error. The challenge later ranked by V_Rand and V_Info after border thinning
(Arganda-Carreras et al. 2015). All are computed here on binary cell masks (cell = True/1 = foreground, membrane =
False/0 = boundary), one 2-D slice at a time, with pooled statistics for stacks, and swept over thresholds of the
network's P(cell) map as the challenge did (:func:`threshold_sweep`). A cell is a connected component of the cell
mask as defined once for the package in `unet_repro.cells` (4-connected, as in the challenge; the weight map uses
the same definition).

Two warping errors are reported. :func:`warping_error` is the challenge's (splits + mergers only; the number in
Table 1). :func:`topological_error` is Jain et al.'s full count (every pixel where the warped truth still differs
from the prediction: also hole and object additions / deletions). They differ most on degenerate predictions: an
all-membrane prediction scores 0 warping error (each true cell shrinks to one pixel, an uncounted object deletion)
but (number of cells) / (H W) topological error. :func:`threshold_sweep` never picks a degenerate threshold (a slice
all cell or all membrane) while another is available, and flags the choice when none is.

Sources (and what was taken from each)
--------------------------------------
[AC15] Arganda-Carreras I, Turaga SC, Berger DR, et al. (2015) "Crowdsourcing the creation of image segmentation
       algorithms for connectomics", Front. Neuroanat. 9:142, doi:10.3389/fnana.2015.00142 -- the foreground-restricted
       Rand and information-theoretic scores V_Rand, V_Info (eqs. for p_ij, s_i, t_j) and border thinning.
[J10]  Jain V, Bollmann B, Richardson M, et al. (2010) "Boundary learning by optimization with topological
       constraints", CVPR 2010, doi:10.1109/CVPR.2010.5539950 -- the warping error: warp the ground truth by flipping
       simple points only, so that it best matches the prediction; what cannot be matched is a topological error.
[EVAL] http://brainiac2.mit.edu/isbi_challenge/evaluation -- "Pixel error: 1 - the maximal F-score of pixel
       similarity"; "Foreground-restricted Rand error: 1 - the maximal F-score of the foreground-restricted Rand
       index ... we exclude the zero component of the original labels"; "Minimum Splits and Mergers Warping error";
       the later ranking by V_Rand(thinned), V_Info(thinned).
[FIJI] The challenge's evaluation code, Fiji ``Trainable_Segmentation``, package ``trainableSegmentation.metrics``
       (github.com/fiji/Trainable_Segmentation: ``PixelError``, ``RandError``, ``VariationOfInformation``,
       ``WarpingError``) and the ImageJ wiki scripts "Segmentation evaluation metrics" / "... after border thinning".
       Details taken from it: segments are the 4-connected components of the binary masks; thresholds
       ``prob > t`` for t = 0.0, 0.1, ...; F-scores pooled over slices from summed counts; proposal boundary pixels
       that fall inside a ground-truth cell count as singleton segments ("N^2 normalisation", as in the SNEMI3D
       script); simple points use 4-connectivity for cells and 8-connectivity for membranes; the warping loop
       visits the mismatches and flips every simple one until nothing changes; remaining mismatches are classified
       as split / merge / hole / object errors and only splits + mergers count in the challenge's
       ``getMinimumSplitsAndMergersErrorValue`` (``flags = MERGE + SPLIT``), while the "classic"
       ``getMetricValue(threshold)`` counts all mismatches ([J10]); the ISBI script swept only the thresholds
       ``floor(10 min) / 10 .. floor(10 (max - 0.1)) / 10`` of each probability map; for V_Rand / V_Info only the
       proposal's boundaries are thinned (a 4-connected classic watershed from its cells), the ground truth is used
       as is.

Choices and known differences from [FIJI]
-----------------------------------------
* Pixel error = 1 - F1 of the cell class ([EVAL], ``PixelError.getPixelErrorMaximalFScore``), not the fraction of
  misclassified pixels; that fraction ([FIJI] ``PixelError.getMetricValue``) is :func:`pixel_mismatch`.
* ``skimage.metrics.adapted_rand_error`` is *not* the challenge's Rand error: it excludes self-pairs (n(n-1) instead
  of n^2) and treats every proposal pixel labelled 0 as one big segment, whereas the challenge treats each as its
  own singleton. The second difference matters for predictions with thick membranes (a thick predicted membrane
  would "merge" every cell it touches). :func:`rand_f_score` implements the challenge's form on a scikit-image
  contingency table; the tests check it against scikit-image exactly where the two coincide.
* Warping: [FIJI] visits mismatches in decreasing ``|prob - t|``; here they are visited in four interleaved parity
  classes (pixels of one class are >= 2 apart, so flipping them together is the same as flipping them one by one),
  repeated until no flip happens. Any such order gives a valid topology-preserving warp; the residual errors can
  differ by a few pixels from the confidence-ordered one.
* V_Info of two single-segment images (both entropies 0) is 1 here (identical partitions); [FIJI] returns 0.
* Stacks: pixel error, Rand error, V_Rand and warping error are pooled (summed counts over slices, no cross-slice
  pairs); V_Info is the mean of per-slice scores, as in [FIJI] ``getForegroundRestrictedScoreAfterThinning``.
"""
from __future__ import annotations

import functools
import warnings
from collections.abc import Sequence
from enum import IntEnum

import numpy as np
from scipy import ndimage
from skimage.metrics import contingency_table
from skimage.segmentation import watershed

from ..cells import CELL_CONNECTIVITY, cell_structure, label_cells, membrane_connectivity

__all__ = [
    "DEFAULT_THRESHOLDS",
    "HIGHER_IS_BETTER",
    "METRICS",
    "Mismatch",
    "classify_mismatches",
    "degenerate_thresholds",
    "info_f_score",
    "is_simple_point",
    "pixel_error",
    "pixel_mismatch",
    "rand_error",
    "rand_f_score",
    "segment",
    "simple_point_lut",
    "thin_segment",
    "threshold_sweep",
    "topological_error",
    "topological_errors",
    "v_rand_v_info",
    "warp_truth",
    "warping_error",
    "warping_errors",
    "warping_mismatches",
]

#: The challenge's thresholds ``prob > t`` (Fiji scripts: from 0.0 in steps of 0.1; 0.0 ... 0.9 here, 10 values).
DEFAULT_THRESHOLDS: np.ndarray = np.round(np.arange(10) * 0.1, 10)
#: Metric names accepted by :func:`threshold_sweep`.
METRICS: tuple[str, ...] = ("pixel_error", "pixel_mismatch", "rand_error", "warping_error", "topological_error",
                            "v_rand", "v_info")
#: Scores (maximised); every other metric is an error (minimised).
HIGHER_IS_BETTER: frozenset[str] = frozenset({"v_rand", "v_info"})


class Mismatch(IntEnum):
    """Kinds of topological errors left after warping ([FIJI] ``WarpingError.classifyMismatches2d``).

    Seen from the prediction: MERGE = the prediction joins two true cells here; SPLIT = it cuts a true cell;
    HOLE_* = it adds / removes a hole (membrane blob inside a cell, or a closed cell loop); OBJECT_* = it adds /
    removes a whole isolated cell blob."""

    NONE = 0
    MERGE = 1
    SPLIT = 2
    HOLE_ADDITION = 3
    HOLE_DELETION = 4
    OBJECT_ADDITION = 5
    OBJECT_DELETION = 6


# --------------------------------------------------------------------------------------------------- inputs

def _as_mask(x: np.ndarray, name: str) -> np.ndarray:
    """A boolean copy-free view of a binary mask (bool, or numbers where nonzero = cell)."""
    x = np.asarray(x)
    if x.dtype == bool:
        return x
    if np.issubdtype(x.dtype, np.floating) and np.any((x > 0) & (x < 1)):
        raise ValueError(f"{name} must be a binary mask (cell = nonzero); threshold the probabilities first "
                         f"(prob > t) or use threshold_sweep")
    return x > 0


def _pair(pred: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pred, truth = _as_mask(pred, "pred"), _as_mask(truth, "truth")
    if pred.shape != truth.shape:
        raise ValueError(f"pred {pred.shape} and truth {truth.shape} must have the same shape")
    if pred.ndim != 2:
        raise ValueError(f"expected one 2-D slice (H, W), got shape {pred.shape}; use threshold_sweep for stacks")
    return pred, truth


# ------------------------------------------------------------------------------------------ segmentations

def segment(cell_mask: np.ndarray) -> np.ndarray:
    """Label image of the cells: the connected components of the cell mask, boundaries (membrane) = 0.

    The package's one notion of a cell, `unet_repro.cells.label_cells` with
    :data:`~unet_repro.cells.CELL_CONNECTIVITY` (4, as in [FIJI]: ``Utils.connectedComponents(..., 4)`` for every
    Rand / VI / warping computation), which pairs with 8-connected membranes: two cells touching only at a corner
    are separate. The weight map counts cells the same way.

    Shapes: (H, W) bool -> (H, W) int32, labels 1..K.
    """
    return label_cells(_as_mask(cell_mask, "cell_mask"))


def thin_segment(cell_mask: np.ndarray) -> np.ndarray:
    """:func:`segment` after border thinning: every membrane pixel joins the nearest cell, except for 1-pixel-wide
    watershed lines (label 0) where two cells meet ([AC15] "border thinning"; [FIJI] thins the proposal with a
    4-connected classic watershed from its cells).

    Implemented as ``skimage.segmentation.watershed`` of the binary membrane map from the cell markers of
    :func:`segment`, flooding with the cell connectivity (4: ``connectivity=1``), ``watershed_line=True`` (flooding
    order within the membrane plateau = geodesic distance).
    No cells are created or merged; membrane blobs enclosed by one cell are absorbed by it.

    Shapes: (H, W) bool -> (H, W) int32.
    """
    mask = _as_mask(cell_mask, "cell_mask")
    markers = segment(mask)
    if markers.max() == 0:
        return markers
    return watershed((~mask).astype(np.uint8), markers, connectivity=cell_structure(),
                     watershed_line=True).astype(np.int32)


# ----------------------------------------------------------------------------------------------- pixel error

def _pixel_counts(pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """[tp, fp, fn, mismatches, n] with cell = positive."""
    tp = np.count_nonzero(pred & truth)
    fp = np.count_nonzero(pred & ~truth)
    fn = np.count_nonzero(~pred & truth)
    return np.array([tp, fp, fn, fp + fn, pred.size], dtype=np.float64)


def _pixel_error_from(c: np.ndarray) -> float:
    tp, fp, fn = c[0], c[1], c[2]
    return 0.0 if fp + fn == 0 else float(1.0 - 2.0 * tp / (2.0 * tp + fp + fn))


def pixel_error(pred: np.ndarray, truth: np.ndarray) -> float:
    """Challenge pixel error = 1 - F1 score of the cell pixels ([EVAL]; [FIJI] ``PixelError``).

    .. math:: 1 - \\frac{2\\,TP}{2\\,TP + FP + FN}, \\quad TP = |P \\cap T|,\\ FP = |P \\setminus T|,\\
        FN = |T \\setminus P|

    with P, T the predicted and true cell pixel sets. 0 for a perfect prediction (and for two empty masks).

    Shapes: ``pred``, ``truth`` (H, W) binary, cell = nonzero.
    """
    return _pixel_error_from(_pixel_counts(*_pair(pred, truth)))


def pixel_mismatch(pred: np.ndarray, truth: np.ndarray) -> float:
    """Fraction of misclassified pixels, ``mean(pred != truth)`` (the "squared Euclidean distance between the
    labels" of [EVAL]; [FIJI] ``PixelError.getMetricValue``). Not the number reported in the challenge tables.

    Shapes: ``pred``, ``truth`` (H, W) binary.
    """
    pred, truth = _pair(pred, truth)
    return float(np.count_nonzero(pred != truth)) / pred.size


# ------------------------------------------------------------------------------- Rand and information scores

def _restricted_table(pred_seg: np.ndarray, truth_seg: np.ndarray):
    """Counts c_ij (i = true segment >= 1, j = predicted segment >= 1) and c_i0 (true cell pixels that the
    prediction calls boundary), as a CSR array over the true foreground only, plus n = |true foreground|."""
    if pred_seg.shape != truth_seg.shape:
        raise ValueError(f"pred_seg {pred_seg.shape} and truth_seg {truth_seg.shape} must have the same shape")
    table = contingency_table(np.asarray(truth_seg).astype(np.intp, copy=False),
                              np.asarray(pred_seg).astype(np.intp, copy=False),
                              ignore_labels=[0], sparse_type="array").tocsc()
    n = float(table.sum())
    c_i0 = np.asarray(table[:, [0]].toarray()).ravel()   # pred boundary inside true cells
    inner = table[:, 1:]                                 # pred segments
    return inner.tocsr(), c_i0, n


def _rand_sums(pred_seg: np.ndarray, truth_seg: np.ndarray) -> np.ndarray:
    """[S_ab, S_a, S_b]: sums of squared counts, predicted boundary pixels as singletons (see rand_f_score)."""
    inner, c_i0, n = _restricted_table(pred_seg, truth_seg)
    singles = c_i0.sum()
    a = np.asarray(inner.sum(axis=1)).ravel() + c_i0     # true segment sizes
    b = np.asarray(inner.sum(axis=0)).ravel()            # predicted segment sizes inside the true foreground
    s_ab = float(inner.data @ inner.data) + singles
    return np.array([s_ab, float(a @ a), float(b @ b) + singles, n], dtype=np.float64)


def _rand_f_from(s: np.ndarray) -> float:
    s_ab, s_a, s_b, n = s
    if n == 0:
        return float("nan")
    return float(2.0 * s_ab / (s_a + s_b))


def rand_f_score(pred_seg: np.ndarray, truth_seg: np.ndarray) -> float:
    """Foreground-restricted Rand F-score V_Rand ([AC15] eq. for V^Rand_alpha, alpha = 1/2; [FIJI]
    ``RandError.getForegroundRestrictedRandIndexStatsN2``).

    Only pixels inside true segments (``truth_seg > 0``) count; n = their number. With p_ij the fraction of them in
    true segment i and predicted segment j, t_i = sum_j p_ij, s_j = sum_i p_ij:

    .. math:: V^{Rand} = \\frac{\\sum_{ij} p_{ij}^2}{\\tfrac12 \\sum_j s_j^2 + \\tfrac12 \\sum_i t_i^2}
        = \\text{harmonic mean of } \\frac{\\sum p_{ij}^2}{\\sum s_j^2} \\text{ (merge / precision) and }
        \\frac{\\sum p_{ij}^2}{\\sum t_i^2} \\text{ (split / recall)}

    where every true-foreground pixel the prediction labels 0 is its own singleton segment (it then adds 1/n^2 to
    both sums). Pairs are ordered pixel pairs including self-pairs (the "N^2 normalisation"). Range (0, 1], 1 iff
    the prediction induces the true partition of the true foreground; NaN if there is no true foreground.

    Shapes: ``pred_seg``, ``truth_seg`` (H, W) (or any common shape) non-negative integer labels, 0 = boundary.
    """
    return _rand_f_from(_rand_sums(pred_seg, truth_seg))


def _xlogx(x: np.ndarray) -> float:
    x = x[x > 0]
    return float(np.sum(x * np.log(x)))


def _info_terms(pred_seg: np.ndarray, truth_seg: np.ndarray) -> tuple[float, float, float]:
    """(H(S), H(T), I(S;T)) in nats, foreground-restricted, predicted boundary pixels as singletons."""
    inner, c_i0, n = _restricted_table(pred_seg, truth_seg)
    if n == 0:
        return float("nan"), float("nan"), float("nan")
    singles = c_i0.sum()
    t = (np.asarray(inner.sum(axis=1)).ravel() + c_i0) / n
    s = np.asarray(inner.sum(axis=0)).ravel() / n
    single_term = singles / n * np.log(1.0 / n)          # singletons: k pixels of probability 1/n each
    h_t = -_xlogx(t)
    h_s = -_xlogx(s) - single_term
    h_st = -_xlogx(inner.data / n) - single_term
    return h_s, h_t, h_s + h_t - h_st


def _info_f_from(h_s: float, h_t: float, mutual: float) -> float:
    if np.isnan(h_s):
        return float("nan")
    if h_s + h_t <= 0:
        return 1.0
    return float(max(0.0, min(1.0, 2.0 * mutual / (h_s + h_t))))


def info_f_score(pred_seg: np.ndarray, truth_seg: np.ndarray) -> float:
    """Foreground-restricted information-theoretic F-score V_Info ([AC15] eq. for V^Info_alpha, alpha = 1/2;
    [FIJI] ``VariationOfInformation.foregroundRestrictedFscore``).

    With p_ij, s_j, t_i as in :func:`rand_f_score` (same foreground restriction and singletons),
    H(S) = -sum_j s_j log s_j, H(T) = -sum_i t_i log t_i, I(S;T) = sum_ij p_ij log(p_ij / (s_j t_i)):

    .. math:: V^{Info} = \\frac{2\\, I(S;T)}{H(S) + H(T)}
        = \\text{harmonic mean of } \\frac{I}{H(S)} \\text{ (split) and } \\frac{I}{H(T)} \\text{ (merge)}

    Related to the variation of information by VI = H(S|T) + H(T|S) = H(S) + H(T) - 2 I. Range [0, 1], 1 iff
    the partitions agree (two single-segment partitions score 1).

    Shapes: ``pred_seg``, ``truth_seg`` (H, W) non-negative integer labels, 0 = boundary.
    """
    return _info_f_from(*_info_terms(pred_seg, truth_seg))


def rand_error(pred: np.ndarray, truth: np.ndarray) -> float:
    """Challenge Rand error = 1 - foreground-restricted Rand F-score of the 4-connected cell segmentations, no
    thinning ([EVAL] "1 - the maximal F-score of the foreground-restricted Rand index"; [FIJI]
    ``RandError.getForegroundRestrictedRandIndexStats``): ``1 - rand_f_score(segment(pred), segment(truth))``.

    Shapes: ``pred``, ``truth`` (H, W) binary, cell = nonzero.
    """
    pred, truth = _pair(pred, truth)
    return 1.0 - rand_f_score(segment(pred), segment(truth))


def v_rand_v_info(pred: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """(V_Rand, V_Info) after border thinning, the challenge's final ranking scores (higher is better) ([AC15];
    [FIJI] ``getMaximalVRandAfterThinning`` / ``getMaximalVInfoAfterThinning`` at one threshold).

    The prediction is segmented with :func:`thin_segment` (boundaries thinned to 1-pixel watershed lines), the
    truth with :func:`segment` (as is: its boundary pixels are excluded by the foreground restriction anyway); then
    :func:`rand_f_score` and :func:`info_f_score`.

    Shapes: ``pred``, ``truth`` (H, W) binary, cell = nonzero.
    """
    pred, truth = _pair(pred, truth)
    p, t = thin_segment(pred), segment(truth)
    return rand_f_score(p, t), info_f_score(p, t)


# ------------------------------------------------------------------------------------------- warping error

#: Neighbour k of the 3x3 neighbourhood (bit k of the LUT index): E, NE, N, NW, W, SW, S, SE (counter-clockwise).
_NEIGHBOURS: tuple[tuple[int, int], ...] = ((0, 1), (-1, 1), (-1, 0), (-1, -1), (0, -1), (1, -1), (1, 0), (1, 1))


def _topological_number(part: np.ndarray, connectivity: int) -> int:
    """T_n(p, Y) of Bertrand & Malandain (1994): the number of ``connectivity``-connected components of the 3x3
    patch ``part`` (Y n N8*(p), centre excluded) that contain an n-neighbour of the centre."""
    lab = label_cells(part, connectivity)
    if connectivity == 4:
        lab = lab[[0, 1, 1, 2], [1, 0, 2, 1]]            # only the 4-neighbours can touch p
    return len(np.unique(lab[lab > 0]))


@functools.lru_cache(maxsize=2)
def simple_point_lut(connectivity: int = CELL_CONNECTIVITY) -> np.ndarray:
    """Which of the 256 configurations of the 8 neighbours make the centre pixel a simple point.

    Digital topology pair: cells (foreground) ``connectivity``-connected (default
    :data:`~unet_repro.cells.CELL_CONNECTIVITY` = 4, as in [FIJI] ``simple2DBertrand(patch, 4)`` and
    :func:`segment`), membranes (background) connected the other way (8). With X the foreground, n the cell and
    m the membrane connectivity and N8*(p) the 8 neighbours of p (p excluded), p is simple iff ([J10]; Bertrand &
    Malandain 1994)

    .. math:: T_n(p, X) = 1 \\quad\\text{and}\\quad T_m(p, \\bar X) = 1

    T_k(p, Y) = number of k-connected components of Y n N8*(p) that contain a k-neighbour of p (for k = 8 every
    component does). Flipping a simple pixel (either way) changes no cell component and no membrane component.
    The test depends on the neighbours only, not on the value of p. Index = sum_k 2^k [neighbour k is foreground],
    neighbours ordered E, NE, N, NW, W, SW, S, SE.

    Shape: (256,) bool.
    """
    cell_conn, membrane_conn = connectivity, membrane_connectivity(connectivity)
    lut = np.zeros(256, dtype=bool)
    for code in range(256):
        fg = np.zeros((3, 3), dtype=bool)
        for k, (dy, dx) in enumerate(_NEIGHBOURS):
            fg[1 + dy, 1 + dx] = bool(code >> k & 1)
        bg = ~fg
        bg[1, 1] = False
        lut[code] = _topological_number(fg, cell_conn) == 1 and _topological_number(bg, membrane_conn) == 1
    lut.setflags(write=False)
    return lut


def is_simple_point(patch: np.ndarray) -> bool:
    """Whether the centre of a 3x3 binary patch is a simple point (see :func:`simple_point_lut`).

    Shape: ``patch`` (3, 3), foreground = nonzero; the centre value is ignored.
    """
    patch = np.asarray(patch)
    if patch.shape != (3, 3):
        raise ValueError(f"patch must be 3x3, got {patch.shape}")
    code = sum(1 << k for k, (dy, dx) in enumerate(_NEIGHBOURS) if patch[1 + dy, 1 + dx])
    return bool(simple_point_lut()[code])


def warp_truth(pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """The ground truth warped towards the prediction by flipping simple points only ([J10]; [FIJI]
    ``WarpingError.simplePointWarp2d``): the result has the truth's topology (same cells as :func:`segment` counts
    them, 4-connected; same 8-connected membrane components) and agrees with the prediction wherever a
    topology-preserving warp can make it agree.

    Algorithm: repeat { for each of the 4 parity classes (row % 2, col % 2): flip at once every pixel of the class
    that disagrees with ``pred`` and is simple } until a full pass flips nothing. Pixels of one class are >= 2 apart,
    so none lies in another's 3x3 neighbourhood and the simultaneous flips equal sequential ones. Pixels outside the
    image count as membrane. Only pixels next to a flip are re-tested in the next pass.

    Shapes: ``pred``, ``truth`` (H, W) binary -> (H, W) bool.
    """
    pred, truth = _pair(pred, truth)
    h, w = truth.shape
    wp = w + 2
    src = np.zeros((h + 2, wp), dtype=np.uint8)
    src[1:-1, 1:-1] = truth
    tgt = np.zeros_like(src)
    tgt[1:-1, 1:-1] = pred
    s, t = src.ravel(), tgt.ravel()                     # views: flipping s flips src
    offsets = np.array([dy * wp + dx for dy, dx in _NEIGHBOURS], dtype=np.intp)
    lut = simple_point_lut()
    todo = np.ones(s.size, dtype=bool)                   # pixels whose neighbourhood changed since last test
    while True:
        cand = np.flatnonzero((s != t) & todo)
        if cand.size == 0:
            break
        todo[:] = False
        parity = ((cand // wp) & 1) * 2 + ((cand % wp) & 1)
        n_flipped = 0
        for c in range(4):
            idx = cand[parity == c]
            if idx.size == 0:
                continue
            code = np.zeros(idx.size, dtype=np.intp)
            for k, off in enumerate(offsets):
                code |= s[idx + off].astype(np.intp) << k
            flip = idx[lut[code]]
            if flip.size:
                s[flip] ^= 1
                todo[(flip[:, None] + offsets).ravel()] = True
                n_flipped += flip.size
        if n_flipped == 0:
            break
    return src[1:-1, 1:-1].astype(bool)


def classify_mismatches(warped: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Classify the pixels where the warped truth still differs from the prediction ([FIJI]
    ``WarpingError.classifyMismatches2d``, whole-image version).

    With L the cell labels of ``warped`` (:func:`segment`, 4-connected) and U the set of labels among the in-image
    8 neighbours of a mismatch pixel p (0 = membrane):

    * U = {0}: OBJECT_DELETION if p is a cell pixel of ``warped`` else OBJECT_ADDITION;
    * U = {k}, k > 0: HOLE_ADDITION if p is a cell pixel else HOLE_DELETION;
    * |U| = 2: HOLE_ADDITION if p is membrane; if p is a cell pixel, remove it: SPLIT if its neighbours then carry
      more than 2 labels (its cell falls apart), else HOLE_DELETION;
    * |U| >= 3: MERGE if p is membrane (the prediction joins cells across it), else SPLIT.

    Shapes: ``warped``, ``pred`` (H, W) binary -> (H, W) uint8 with :class:`Mismatch` codes (0 = no mismatch).
    """
    pred, warped = _pair(pred, warped)
    out = np.zeros(warped.shape, dtype=np.uint8)
    ys, xs = np.nonzero(warped != pred)
    if ys.size == 0:
        return out
    lab = label_cells(warped)
    padded = np.pad(lab, 1, constant_values=-1)
    nb = np.stack([padded[ys + 1 + dy, xs + 1 + dx] for dy, dx in _NEIGHBOURS], axis=1)
    nb.sort(axis=1)
    first = np.ones(nb.shape, dtype=bool)
    first[:, 1:] = nb[:, 1:] != nb[:, :-1]
    n_cells = np.count_nonzero(first & (nb > 0), axis=1)
    has_membrane = np.any(nb == 0, axis=1)
    size = n_cells + has_membrane
    fg = warped[ys, xs]
    kind = np.empty(ys.size, dtype=np.uint8)

    only_membrane = n_cells == 0
    kind[only_membrane] = np.where(fg[only_membrane], Mismatch.OBJECT_DELETION, Mismatch.OBJECT_ADDITION)
    one_cell = (n_cells == 1) & ~has_membrane
    kind[one_cell] = np.where(fg[one_cell], Mismatch.HOLE_ADDITION, Mismatch.HOLE_DELETION)
    many = size >= 3
    kind[many] = np.where(fg[many], Mismatch.SPLIT, Mismatch.MERGE)
    two = (size == 2) & ~only_membrane
    kind[two & ~fg] = Mismatch.HOLE_ADDITION
    boxes = None
    for i in np.flatnonzero(two & fg):
        if boxes is None:
            boxes = ndimage.find_objects(lab)
        y, x = ys[i], xs[i]
        k = lab[y, x]
        sl_y, sl_x = boxes[k - 1]
        piece = lab[sl_y, sl_x] == k
        py, px = y - sl_y.start, x - sl_x.start
        piece[py, px] = False
        piece_lab = label_cells(piece)
        around = piece_lab[max(py - 1, 0):py + 2, max(px - 1, 0):px + 2]
        pieces = len(np.unique(around[around > 0]))
        others = int(size[i]) - int(np.any(nb[i] == k))
        kind[i] = Mismatch.SPLIT if others + pieces > 2 else Mismatch.HOLE_DELETION
    out[ys, xs] = kind
    return out


def warping_mismatches(pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Map of the topological errors of ``pred``: :func:`classify_mismatches` of :func:`warp_truth` (for figures).
    Both warping-error flavours (:func:`warping_errors`, :func:`topological_errors`) count pixels of this map.

    Shapes: (H, W) binary -> (H, W) uint8 :class:`Mismatch` codes.
    """
    pred, truth = _pair(pred, truth)
    return classify_mismatches(warp_truth(pred, truth), pred)


_SPLIT_MERGE = (Mismatch.SPLIT, Mismatch.MERGE)


def warping_errors(pred: np.ndarray, truth: np.ndarray) -> tuple[float, np.ndarray]:
    """Challenge warping error ("Minimum Splits and Mergers Warping error", [EVAL]; [J10]; [FIJI]
    ``WarpingError.getMinimumSplitsAndMergersErrorValue`` with ``clusterByError = false``, which sets
    ``flags = MERGE + SPLIT``) and the error map. The number in the paper's Table 1.

    The truth is warped towards the prediction with simple-point flips (:func:`warp_truth`); of the pixels where
    they still differ, those classified SPLIT or MERGE (:func:`classify_mismatches`) are counted:

    .. math:: \\text{warping error} = \\frac{|\\{p : \\text{mismatch}(p) \\in \\{\\text{split}, \\text{merge}\\}\\}|}
        {H \\cdot W}

    Hole and object additions / deletions are not counted (:func:`topological_errors` counts them too). 0 for any
    prediction with the truth's topology, however its boundaries are displaced.

    Degenerate predictions: **all membrane** scores 0 -- the warp shrinks every true cell to one pixel (deleting
    an object's last pixel is not simple) and those leftovers are OBJECT_DELETION, not counted. The challenge never
    met this case: its Fiji script only tried thresholds inside the probability map's range
    (``floor(10 min) / 10 .. floor(10 (max - 0.1)) / 10``); :func:`threshold_sweep` avoids it likewise. **All
    cell** scores > 0 for a truth with two or more cells: its membranes thin to lines that cannot be opened without
    joining cells, and those pixels are MERGE (0.0355 on ISBI training slice 0, 136 cells).

    Shapes: ``pred``, ``truth`` (H, W) binary -> (float, (H, W) bool mask of the counted pixels).
    """
    kinds = warping_mismatches(pred, truth)
    mask = np.isin(kinds, _SPLIT_MERGE)
    return float(np.count_nonzero(mask)) / mask.size, mask


def warping_error(pred: np.ndarray, truth: np.ndarray) -> float:
    """The value of :func:`warping_errors` (splits + mergers pixels / all pixels)."""
    return warping_errors(pred, truth)[0]


def topological_errors(pred: np.ndarray, truth: np.ndarray) -> tuple[float, np.ndarray]:
    """Full topological (Jain) warping error and its error map ([J10] eq. for the warping error; [FIJI]
    ``WarpingError.getMetricValue(threshold)``, "classic" warping error, which "counts all type of mismatches").

    With L* the truth warped towards the prediction by simple-point flips (:func:`warp_truth`), every pixel where
    they still differ is a topological error -- splits, mergers, hole additions / deletions, object additions /
    deletions alike:

    .. math:: \\text{topological error} = \\frac{\\|\\,\\hat L - L^*\\|^2}{H \\cdot W}
        = \\frac{|\\{p : L^*(p) \\ne \\hat L(p)\\}|}{H \\cdot W} \\;\\ge\\; \\text{warping error}

    (:math:`\\hat L` the binary prediction). 0 when the warp reaches the prediction, e.g. the same cells with
    displaced boundaries.

    Degenerate predictions: **all membrane** scores (number of true cells) / (H W), one leftover pixel per true cell
    (OBJECT_DELETION; a cell with a hole keeps a ring around it, HOLE_DELETION pixels): 747 pixels, 0.00285, on
    ISBI training slice 0 (136 cells, 3 with holes). **All cell** scores the pixels of the thinned membrane lines
    that separate the true cells (MERGE), as :func:`warping_errors` does, plus one pixel per membrane blob enclosed
    by a cell.

    Shapes: ``pred``, ``truth`` (H, W) binary -> (float, (H, W) bool mask of the counted pixels).
    """
    kinds = warping_mismatches(pred, truth)
    mask = kinds != Mismatch.NONE
    return float(np.count_nonzero(mask)) / mask.size, mask


def topological_error(pred: np.ndarray, truth: np.ndarray) -> float:
    """The value of :func:`topological_errors` (all topological mismatch pixels / all pixels)."""
    return topological_errors(pred, truth)[0]


# --------------------------------------------------------------------------------------------- threshold sweep

def degenerate_thresholds(prob: np.ndarray, thresholds: Sequence[float] | np.ndarray = DEFAULT_THRESHOLDS
                          ) -> np.ndarray:
    """Which thresholds give a degenerate prediction: ``prob > t`` holds no cell pixel or no membrane pixel in at
    least one slice.

    Such a prediction has no boundaries (or nothing but boundaries) and can score deceptively well: 0 split+merge
    warping error for all membrane (:func:`warping_errors`), a fair pixel error for all cell when cells cover most
    of the image. The challenge's Fiji script never tried such thresholds (it swept only
    ``floor(10 min) / 10 .. floor(10 (max - 0.1)) / 10`` of the map's range); this is the same rule per slice and
    for any grid.

    Shapes: ``prob`` (H, W) or (N, H, W) -> (T,) bool.
    """
    prob = np.asarray(prob)
    if prob.ndim == 2:
        prob = prob[None]
    if prob.ndim != 3:
        raise ValueError(f"expected (H, W) or (N, H, W), got {prob.shape}")
    thresholds = np.asarray(thresholds, dtype=np.float64).ravel()
    flat = prob.reshape(prob.shape[0], -1)
    lo, hi = flat.min(axis=1), flat.max(axis=1)             # (N,)
    # no cell pixel: max <= t; no membrane pixel: min > t
    return np.any((hi[:, None] <= thresholds) | (lo[:, None] > thresholds), axis=0)


def _select(curve: np.ndarray, higher_is_better: bool, degenerate: np.ndarray) -> tuple[int, bool]:
    """Index of the best finite value of ``curve``, among the non-degenerate thresholds when one has a finite value
    (ties: the lowest index); and whether the chosen one is degenerate. 0, False when nothing is finite."""
    finite = np.isfinite(curve)
    if not finite.any():
        return 0, bool(degenerate[0])
    allowed = finite & ~degenerate
    if not allowed.any():
        allowed = finite                                    # only degenerate thresholds have a value: say so
    masked = np.where(allowed, curve, -np.inf if higher_is_better else np.inf)
    best = int(np.argmax(masked) if higher_is_better else np.argmin(masked))
    return best, bool(degenerate[best])


def threshold_sweep(prob: np.ndarray, truth: np.ndarray, thresholds: Sequence[float] | np.ndarray = DEFAULT_THRESHOLDS,
                    metrics: Sequence[str] = METRICS, warping_at: str = "all") -> dict:
    """Evaluate P(cell) maps at several thresholds and report each metric at its own best threshold, as the
    challenge did ([FIJI] ``getMinimumMetricValue`` / ``get...MaximalFScore``: every metric is computed for
    ``prob > t`` at each t and the best value is reported; ties go to the lowest threshold).

    Degenerate thresholds (:func:`degenerate_thresholds`: some slice is all cell or all membrane) are never chosen
    while a non-degenerate threshold has a value; only when every threshold is degenerate is the best of them
    chosen, and then its ``degenerate`` flag is True (and a RuntimeWarning is issued). This generalises the Fiji
    script's rule of sweeping only thresholds inside the probability map's range, without which an all-membrane
    prediction would win the challenge's warping error with 0.

    Stacks are aggregated as the challenge did, at each threshold over all slices together: pixel error, Rand error
    and V_Rand from counts summed over slices (pairs only within a slice), warping and topological error = counted
    pixels / all pixels, V_Info = mean of the per-slice scores; then the best threshold is picked on that stack
    value (one threshold for the whole stack, per metric). The warping and the topological error share one warp of
    the truth per slice and threshold.

    Args:
        prob: (H, W) or (N, H, W) float P(cell) in [0, 1].
        truth: same shape, binary, cell = nonzero (e.g. the 0/255 ISBI labels).
        thresholds: the t of ``prob > t``; default 0.0, 0.1, ..., 0.9 (the Fiji scripts' grid).
        metrics: any of :data:`METRICS`.
        warping_at: ``"all"`` (every threshold) or ``"best_pixel_error"`` (only at the threshold chosen for the
            pixel error, NaN elsewhere: the warping is the costly part).

    Returns:
        ``{"thresholds": (T,), "degenerate_thresholds": [t, ...] (the degenerate ones, ascending),
        name: {"value": best stack value, "threshold": its t, "index": its index, "degenerate": bool (the chosen t is
        degenerate, i.e. all were), "curve": (T,) stack value per threshold, "per_slice": (N,) per-slice values at
        the chosen t, "per_slice_curve": (N, T)}}`` for each requested metric.
    """
    prob = np.asarray(prob)
    truth = np.asarray(truth)
    if prob.shape != truth.shape:
        raise ValueError(f"prob {prob.shape} and truth {truth.shape} must have the same shape")
    if prob.ndim == 2:
        prob, truth = prob[None], truth[None]
    if prob.ndim != 3:
        raise ValueError(f"expected (H, W) or (N, H, W), got {prob.shape}")
    unknown = set(metrics) - set(METRICS)
    if unknown:
        raise ValueError(f"unknown metrics {sorted(unknown)}; choose from {METRICS}")
    if warping_at not in ("all", "best_pixel_error"):
        raise ValueError(f"warping_at must be 'all' or 'best_pixel_error', got {warping_at!r}")
    thresholds = np.asarray(thresholds, dtype=np.float64).ravel()
    n, n_t = prob.shape[0], thresholds.size
    truth = truth > 0
    truth_segs = [segment(t) for t in truth]
    wanted = set(metrics)
    degenerate = degenerate_thresholds(prob, thresholds)

    # per-slice sufficient statistics, (N, T, k)
    pix = np.zeros((n, n_t, 5))
    rand = np.full((n, n_t, 4), np.nan)
    vrand = np.full((n, n_t, 4), np.nan)
    vinfo = np.full((n, n_t), np.nan)
    warp = np.full((n, n_t, 3), np.nan)           # [split + merge pixels, all mismatch pixels, all pixels]
    for i in range(n):
        for j, t in enumerate(thresholds):
            pred = prob[i] > t
            pix[i, j] = _pixel_counts(pred, truth[i])
            if "rand_error" in wanted:
                rand[i, j] = _rand_sums(segment(pred), truth_segs[i])
            if wanted & {"v_rand", "v_info"}:
                thin = thin_segment(pred)
                vrand[i, j] = _rand_sums(thin, truth_segs[i])
                vinfo[i, j] = _info_f_from(*_info_terms(thin, truth_segs[i]))
    if wanted & {"warping_error", "topological_error"}:
        if warping_at == "all":
            columns = range(n_t)
        else:
            pooled = np.array([_pixel_error_from(c) for c in pix.sum(axis=0)])
            columns = [_select(pooled, False, degenerate)[0]]
        for i in range(n):
            for j in columns:
                pred = prob[i] > thresholds[j]
                kinds = classify_mismatches(warp_truth(pred, truth[i]), pred)   # one warp for both metrics
                warp[i, j] = (np.count_nonzero(np.isin(kinds, _SPLIT_MERGE)), np.count_nonzero(kinds), kinds.size)

    def stack_and_slices(name: str) -> tuple[np.ndarray, np.ndarray]:
        if name == "pixel_error":
            return (np.array([_pixel_error_from(c) for c in pix.sum(0)]),
                    np.array([[_pixel_error_from(c) for c in row] for row in pix]))
        if name == "pixel_mismatch":
            return pix.sum(0)[:, 3] / pix.sum(0)[:, 4], pix[:, :, 3] / pix[:, :, 4]
        if name in ("rand_error", "v_rand"):
            s = rand if name == "rand_error" else vrand
            f_stack = np.array([_rand_f_from(c) for c in s.sum(0)])
            f_slice = np.array([[_rand_f_from(c) for c in row] for row in s])
            return (1 - f_stack, 1 - f_slice) if name == "rand_error" else (f_stack, f_slice)
        if name == "v_info":
            return vinfo.mean(0), vinfo
        k = 0 if name == "warping_error" else 1
        return warp[:, :, k].sum(0) / warp[:, :, 2].sum(0), warp[:, :, k] / warp[:, :, 2]

    result: dict = {"thresholds": thresholds,
                    "degenerate_thresholds": [float(t) for t in thresholds[degenerate]]}
    flagged = []
    for name in metrics:
        curve, per_slice_curve = stack_and_slices(name)
        best, is_degenerate = _select(curve, name in HIGHER_IS_BETTER, degenerate)
        if is_degenerate:
            flagged.append(f"{name} at t={thresholds[best]:g}")
        result[name] = {"value": float(curve[best]), "threshold": float(thresholds[best]), "index": best,
                        "degenerate": is_degenerate, "curve": curve, "per_slice": per_slice_curve[:, best],
                        "per_slice_curve": per_slice_curve}
    if flagged:
        warnings.warn("threshold_sweep: every threshold gives a degenerate prediction (a slice all cell or all "
                      "membrane); chosen anyway: " + ", ".join(flagged), RuntimeWarning, stacklevel=2)
    return result
