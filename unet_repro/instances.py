"""Instance labels, the U-Net paper's training target: separation borders between touching objects, and touching cells
from a binary EM label.

An *instance label image* is an (H, W) integer array (any signed or unsigned integer dtype: 8-, 16-, 32- or 64-bit,
as Cellpose, StarDist, napari, Fiji/Labkit and the Cell Tracking Challenge write them): 0 is background and every
other value is one object, namely all pixels holding that value, connected or not. The values need not be
consecutive. Nothing here relabels connected components: two touching objects stay two objects because their values
differ, which a binary mask cannot say.

On the paper's HeLa and U373 data (Ronneberger et al. 2015, sec. 3 and fig. 3) every cell is its own object, and
"small separation borders" of background are drawn between touching cells ("computed using morphological
operations"); the weight map (`unet_repro.weightmap`, eq. 2) then gives those border pixels a large weight.
:func:`separation_borders` draws them, :func:`touching_cells` makes touching cells out of a binary EM label (to
measure the paper's claim on the ISBI data), and :func:`sequential_objects` gives any label image the compact ids
1..N that per-object loops need.

Separation borders: the definition
----------------------------------
Two pixels *touch* when they are 8-neighbours (they share an edge or a corner) and hold two different nonzero values.
Only object pixels ever change, and only to 0; background stays background, and an object that touches no other
object is unchanged.

* ``width=1``: an object pixel becomes background when it touches a pixel of an object with a *smaller* value. Of
  two touching objects the one with the larger value gives up its pixels that touch the other: a border one pixel
  wide (in every direction: along rows, columns and diagonals), the order of [DF2].
* ``width=2``: an object pixel becomes background when it touches a pixel of any other object: one pixel from each
  side, symmetric (independent of the values); ``skimage.segmentation.find_boundaries(labels, connectivity=2,
  mode="inner")`` restricted to pixels whose neighbour is another object, not background.

Afterwards no two pixels of different objects are 8-neighbours (except as below), so the objects stay apart whether
the mask is read with 4- or with 8-connected components (`unet_repro.cells`).

Small objects never disappear. An object all of whose pixels the rule above would turn into border (a 1-pixel
object touching one with a smaller value, a 1-pixel-wide line along such a neighbour, a 1- or 2-pixel-wide object
between two neighbours with ``width=2``, ...) keeps all its pixels; instead, every pixel of another object that
touches it becomes background. If that in turn would leave such a neighbour with no pixel, the neighbour gets those
pixels back (it keeps only the border the rule drew) and the two stay touching: e.g. two touching 1-pixel objects
both stay, touching. An object can lose a thin part of itself, or be cut into pieces, by a border; it stays one
object (one value).

Sources
-------
[UNET] Ronneberger O, Fischer P, Brox T (2015) "U-Net: Convolutional networks for biomedical image segmentation",
       MICCAI, sec. 3 and fig. 3c-d -- separation borders between touching cells, heavily weighted in the loss.
[FALK] Falk T, Mai D, Bensch R, et al. (2019) "U-Net: deep learning for cell counting, detection, and morphometry",
       Nat. Methods 16:67-70, doi:10.1038/s41592-018-0261-2, and its Fiji plugin by the U-Net authors' group
       (github.com/lmb-freiburg/Unet-Segmentation, ``TrainingSample.addLabelsAndWeightsToBlobs``) -- touching is
       the 8-neighbourhood, and one side of each touching pair becomes background ("gaps"); the d1, d2 of the weight
       map are distances to the objects.
[DF2]  deepflash2 (Griebel et al. 2023, github.com/matjesg/deepflash2, ``preprocess_mask``) -- the objects are
       taken in increasing value and each gives up its pixels that are 8-neighbours of the pixels kept before it:
       a one-pixel border on the larger value's side.

Known deviations. [FALK] makes a pixel background when one of its four 8-neighbours earlier in raster order (left,
upper-left, upper, upper-right) holds another object, checked on the input labels: one pixel where one object lies
above the other, but two where they lie side by side (the left object also loses the pixels whose upper-right
neighbour is in the right object); ``width=1`` here is one pixel in every direction, as [DF2]. [DF2] checks against
the pixels already kept, here against all pixels of the smaller-valued objects: the two differ only where three or
more objects meet. Neither source has the small-object rule (there an object made of border pixels only
disappears) nor ``width=2``.
"""
from __future__ import annotations

import math

import numpy as np
from scipy import ndimage as ndi

from .cells import CELL_CONNECTIVITY, label_cells

__all__ = ["SEPARATION_WIDTHS", "check_instance_labels", "predicted_instances", "separation_borders", "sequential_objects",
           "touching_cells"]

#: The border widths :func:`separation_borders` draws (see the module docstring for what each means).
SEPARATION_WIDTHS: tuple[int, ...] = (1, 2)

# Half of the 8-neighbourhood as (row, column) offsets (right, lower-left, lower, lower-right): every pair of
# 8-neighbours is one pixel p and one of these neighbours q of p.
_NEIGHBOURS = ((0, 1), (1, -1), (1, 0), (1, 1))


def check_instance_labels(labels: np.ndarray) -> np.ndarray:
    """``labels`` as an array if it is an (H, W) instance label image of an integer dtype, else ValueError.

    A bool array is refused: it is a binary mask (one class), whose cells are `unet_repro.cells.label_cells`.
    """
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"instance labels must be a 2-D (H, W) array, got shape {labels.shape}")
    if labels.dtype.kind not in "iu":
        raise ValueError(f"instance labels must be an integer array (0 = background, each other value one object), "
                         f"got dtype {labels.dtype}; a binary mask's cells are unet_repro.cells.label_cells(mask)")
    return labels


def sequential_objects(labels: np.ndarray) -> tuple[np.ndarray, int]:
    """The objects of an instance label image numbered 1..N, in increasing order of their values; 0 stays 0.

    Shapes: (H, W) any integer dtype -> ((H, W) int32, N). Each value stays one object (no connected components).
    """
    labels = check_instance_labels(labels)
    if labels.size and labels.min() >= 0 and labels.max() < max(labels.size, 2**16):
        # The usual case: a lookup table indexed by value, O(H*W + max), ~50x faster than sorting the pixels.
        present = np.bincount(labels.ravel().astype(np.intp, copy=False)) > 0
        present[0] = False
        ids = np.where(present, np.cumsum(present), 0).astype(np.int32)
        return ids[labels], int(np.count_nonzero(present))
    values, inverse = np.unique(labels, return_inverse=True)
    nonzero = values != 0
    ids = np.zeros(len(values), np.int32)
    ids[nonzero] = np.arange(1, np.count_nonzero(nonzero) + 1, dtype=np.int32)
    return ids[inverse.reshape(labels.shape)], int(np.count_nonzero(nonzero))


def _shifted(offset: tuple[int, int], shape: tuple[int, ...]) -> tuple[tuple[slice, slice], tuple[slice, slice]]:
    """Index pairs (p, q) that cut the (H, W) image into the pixels p whose neighbour ``p + offset`` is inside it,
    and those neighbours q."""
    (dr, dc), (height, width) = offset, shape
    p = (slice(0, height - dr), slice(max(-dc, 0), width - max(dc, 0)))
    q = (slice(dr, height), slice(max(dc, 0), width + min(dc, 0)))
    return p, q


def _width_rule(labels: np.ndarray, width: int) -> np.ndarray:
    """The pixels the width rule turns into border (before the small-object rule), (H, W) bool."""
    border = np.zeros(labels.shape, bool)
    for offset in _NEIGHBOURS:
        p, q = _shifted(offset, labels.shape)
        a, b = labels[p], labels[q]
        touch = (a != 0) & (b != 0) & (a != b)
        if width == 1:
            border[p] |= touch & (a > b)   # the larger value gives way
            border[q] |= touch & (b > a)
        else:
            border[p] |= touch
            border[q] |= touch
    return border


def _vanished(objects: np.ndarray, n_objects: int, border: np.ndarray) -> np.ndarray:
    """Per object id 0..N, whether ``border`` covers all of its pixels, (N + 1,) bool (id 0 = background: False)."""
    kept = np.bincount(objects[~border].ravel(), minlength=n_objects + 1)
    vanished = kept == 0
    vanished[0] = False
    return vanished


def separation_borders(labels: np.ndarray, width: int = 1) -> np.ndarray:
    """The instance labels with a background border drawn wherever two different objects touch.

    Definition (which pixels become background for ``width`` 1 and 2, touching = 8-neighbours, what happens to
    objects too small to give up a pixel) and sources: see the module docstring.

    Shapes: (H, W) integer array (0 = background, each other value one object) -> (H, W), the same dtype, a new
    array.

    Raises:
        ValueError: if ``labels`` is not a 2-D integer array or ``width`` is not 1 or 2.
    """
    labels = check_instance_labels(labels)
    if width not in SEPARATION_WIDTHS:
        raise ValueError(f"width must be one of {SEPARATION_WIDTHS} (pixels), got {width!r}")
    border = _width_rule(labels, width)
    if border.any():
        objects, n_objects = sequential_objects(labels)
        small = _vanished(objects, n_objects, border)[objects]
        if small.any():
            # Small objects keep their pixels; their neighbours' pixels that touch them give way instead ...
            near_small = ndi.binary_dilation(small, structure=np.ones((3, 3), bool))
            widened = (border | near_small) & (objects != 0) & ~small
            # ... unless a neighbour would then vanish itself: it keeps the border of the rule only.
            stuck = _vanished(objects, n_objects, widened)[objects]
            border = np.where(stuck, border, widened)
    out = labels.copy()
    out[border] = 0
    return out


def touching_cells(mask: np.ndarray, connectivity: int = CELL_CONNECTIVITY) -> np.ndarray:
    """Instance labels from a binary EM label, in which every membrane pixel belongs to its nearest cell.

    The cells are ``unet_repro.cells.label_cells(mask, connectivity)`` (labels 1..K in raster order of their first
    pixel). Each membrane (zero) pixel gets the label of the cell at the smallest exact Euclidean distance from it
    (distance between pixel centres); where several cells are equally near, the smallest label wins. So cells that a
    membrane separated now touch, and :func:`separation_borders` can draw the paper's thin borders between them.
    Cell pixels keep their labels; with no cell at all the result is all 0. Time: proportional to the summed area
    of the cells' bounding boxes grown by the largest distance of a membrane pixel to its nearest cell (a few
    pixels on EM labels).

    Shapes: (H, W) binary (bool, or numbers with nonzero = cell) -> (H, W) int32.
    """
    cells = label_cells(mask, connectivity)
    membrane = cells == 0
    if cells.max() == 0 or not membrane.any():
        return cells
    # A cell at distance d from a pixel has the pixel within d of its bounding box; every membrane pixel has a cell
    # within `reach`, so each cell's distances are only needed in its bounding box grown by `reach`.
    reach = math.ceil(float(ndi.distance_transform_edt(membrane).max()))
    height, width = cells.shape
    best = np.full(cells.shape, np.inf)
    out = cells.copy()
    for i, (rows, cols) in enumerate(ndi.find_objects(cells), start=1):
        window = (slice(max(rows.start - reach, 0), min(rows.stop + reach, height)),
                  slice(max(cols.start - reach, 0), min(cols.stop + reach, width)))
        # Squared distances are integers (exact in float64 after rounding), so equal distances compare equal and
        # the strict `<` keeps the smaller label, visited first.
        squared = np.rint(ndi.distance_transform_edt(cells[window] != i) ** 2)
        nearer = membrane[window] & (squared < best[window])
        best[window][nearer] = squared[nearer]
        out[window][nearer] = i
    return out


def predicted_instances(foreground: np.ndarray, min_size: int = 0) -> np.ndarray:
    """Instance labels of a predicted foreground mask: its 4-connected components (the package's notion of a cell,
    `unet_repro.cells.label_cells`), so that one background pixel of border, drawn straight or diagonally, keeps two
    objects apart as the separation borders of the training target (`separation_borders`) taught it; components of
    fewer than `min_size` pixels (specks) are dropped and the rest numbered 1..N in raster order.

    Shapes: (H, W) bool (or nonzero = foreground) -> (H, W) int32.
    """
    labels = label_cells(np.asarray(foreground) != 0)
    if min_size > 1 and labels.max():
        sizes = np.bincount(labels.ravel())
        keep = sizes >= min_size
        keep[0] = False
        new = np.zeros(len(sizes), np.int32)
        new[keep] = np.arange(1, int(keep.sum()) + 1, dtype=np.int32)
        labels = new[labels]
    return labels
