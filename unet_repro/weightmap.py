"""Pixel-wise loss weight map of the U-Net paper (Ronneberger et al. 2015, eq. 2).

For a binary mask or an instance label image of shape (H, W) the weight map is

.. math::

    w(x) = w_c(x) + w_0 \\exp\\left(-\\frac{(d_1(x) + d_2(x))^2}{2\\sigma^2}\\right)

where

- the objects ("cells") are, for a binary mask, its connected foreground regions,
  connected as defined once for the whole package by
  :data:`unet_repro.cells.CELL_CONNECTIVITY` (4: two cells touching only at a corner
  are two cells, and the membrane pixels beside the corner get the border term; as
  the ISBI metrics count cells). ``connectivity=8`` joins such cells into one, which
  then gets no border term between its parts. For an instance label image
  (``instances=True``; see `unet_repro.instances`) each nonzero value is one object,
  as given: no connected components are taken, so an object in several pieces is
  one object, and two touching objects are two. The border term needs background
  between them: draw it first with `unet_repro.instances.separation_borders` and
  pass the bordered labels; a border pixel between two touching objects then gets
  about :math:`w_0 + w_c` (:math:`d_1 + d_2 = 2` for ``width=1``);
- :math:`w_c(x) = f_{max} / f_{c(x)}` balances the class frequencies, with
  :math:`f_c` the fraction of pixels of class :math:`c` (foreground = nonzero or
  background) in the mask or labels given (for instance labels: after the borders
  are drawn) and :math:`f_{max}` the larger one; :math:`w_c = 1` everywhere when
  they hold a single class. :func:`class_balance_weights` is the same for a
  K-class target;
- :math:`d_1, d_2` are the exact Euclidean distances to the nearest and
  second-nearest object. The border term is only added on background pixels, and
  it is 0 when there are fewer than two objects.

Two implementations are provided: :func:`border_weight_map` (fast, memory
O(H*W)) and :func:`border_weight_map_direct` (slow reference, memory
O(H*W*objects)), which agree to float32 precision.

Known deviation for instance labels: the U-Net Fiji plugin (Falk et al. 2019,
``TrainingSample.addLabelsAndWeightsToBlobs``) measures d1, d2 to the objects
before it draws the borders (a border pixel has d1 = 0 there); here they are
measured in the labels given, after the borders (d1 = 1 on a 1-pixel border),
so that foreground, w_c and d1, d2 all describe the same target.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
from scipy import ndimage as ndi

from .cells import CELL_CONNECTIVITY, label_cells
from .instances import sequential_objects

__all__ = ["PAPER_SIGMA", "PAPER_W0", "border_radius", "border_weight_map", "border_weight_map_direct",
           "class_balance_weights"]

#: The paper's weight-map parameters (Sec. 3: "we set w0 = 10 and sigma ~ 5 pixels"), the defaults everywhere.
PAPER_W0 = 10.0
PAPER_SIGMA = 5.0
# Class indices beyond this are no K-class target (more likely instance labels); refused by class_balance_weights.
_MAX_CLASSES = 2**16


def _check_args(mask: np.ndarray, w0: float, sigma: float) -> np.ndarray:
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"mask must be a 2-D (H, W) array, got shape {mask.shape}")
    if not sigma > 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")
    if not w0 >= 0:
        raise ValueError(f"w0 must be >= 0, got {w0}")
    return mask


def _objects(mask: np.ndarray, connectivity: int | None, instances: bool) -> tuple[np.ndarray, int]:
    """The objects the border term separates, as (H, W) int32 labels 1..N (0 = background), and N."""
    if not instances:
        labels = label_cells(mask != 0, CELL_CONNECTIVITY if connectivity is None else connectivity)
        return labels, int(labels.max())
    if connectivity is not None:
        raise ValueError("connectivity applies to binary masks only; with instances=True each nonzero value is "
                         "one object")
    return sequential_objects(mask)


def class_balance_weights(target: np.ndarray) -> np.ndarray:
    """Class-balancing term ``w_c(x) = f_max / f_class(x)`` of a class-index target, (H, W) float64.

    ``f_k`` is the fraction of the pixels of ``target`` that hold class ``k``, and ``f_max`` the largest of them, over
    the classes present in this target (absent classes play no part); ``w_c = 1`` everywhere when only one class is
    present. For a binary target (K = 2, e.g. a bool mask) this is the ``w_c`` of eq. 2 in :func:`border_weight_map`.

    Shapes: (H, W) bool or integer class indices 0..K-1 -> (H, W) float64.

    Raises:
        ValueError: if ``target`` is not 2-D, not bool or integer, or holds an index < 0 or >= 65536.
    """
    target = np.asarray(target)
    if target.ndim != 2:
        raise ValueError(f"target must be a 2-D (H, W) array, got shape {target.shape}")
    if target.dtype.kind not in "biu":
        raise ValueError(f"target must hold integer class indices 0..K-1, got dtype {target.dtype}")
    if target.dtype.kind == "b":
        n_true = np.count_nonzero(target)  # ~50x faster than bincount, for the binary mask of every weight map
        counts = np.array([target.size - n_true, n_true])
        target = target.view(np.uint8)
    elif target.size and (target.min() < 0 or target.max() >= _MAX_CLASSES):
        raise ValueError(f"target must hold class indices 0..K-1 with K <= {_MAX_CLASSES}, got values "
                         f"{target.min()}..{target.max()}; instance labels are no class target")
    else:
        counts = np.bincount(target.ravel().astype(np.intp, copy=False), minlength=1)
    present = counts > 0
    per_class = np.ones(len(counts))
    # The ratio of counts equals the ratio of frequencies.
    per_class[present] = counts.max() / counts[present]
    return per_class[target]


def border_radius(w0: float, sigma: float) -> int:
    """Cut-off ``R`` on ``d1 + d2`` beyond which the border term is negligible.

    Returns ``R = ceil(sigma * sqrt(2 ln(w0 * 2**25)))`` (at least 2), so that
    ``w0 * exp(-(d1 + d2)**2 / (2 sigma**2)) <= 2**-25`` whenever ``d1 + d2 >= R``:
    a quarter of the float32 spacing at 1, and the weights are ``>= 1``
    (``w_c >= 1``), so dropping such terms changes the float32 result by at most
    one rounding step. E.g. ``R = 32`` for ``w0=10, sigma=5``.
    """
    arg = w0 * 2.0**25
    if arg <= 1.0:
        # Then the border term is <= w0 <= 2**-25 everywhere.
        return 2
    return max(2, math.ceil(sigma * math.sqrt(2.0 * math.log(arg))))


def border_weight_map(mask: np.ndarray, w0: float = PAPER_W0, sigma: float = PAPER_SIGMA,
                      connectivity: int | None = None, *, instances: bool = False,
                      classes: np.ndarray | None = None) -> np.ndarray:
    """U-Net weight map ``w = w_c + w0 * exp(-(d1 + d2)**2 / (2 sigma**2))`` (fast).

    See the module docstring for the exact definition. Agrees with
    :func:`border_weight_map_direct` to float32 precision (on the ISBI 2012
    labels: bit-identical). Time is proportional to the summed area of the objects'
    bounding boxes grown by ``border_radius(w0, sigma) - 2`` pixels; memory is
    O(H*W).

    Args:
        mask: (H, W) array; nonzero = foreground (cell), zero = background. With
            ``instances=True``: an instance label image of any integer dtype, 0 =
            background, each other value one object (draw the separation borders
            first: `unet_repro.instances.separation_borders`).
        w0: amplitude of the border term, >= 0.
        sigma: width of the border term in pixels, > 0.
        connectivity: 4 or 8, which foreground pixels of a binary mask form one cell
            (default :data:`unet_repro.cells.CELL_CONNECTIVITY`, 4). Not allowed
            with ``instances=True``.
        instances: ``mask`` is an instance label image; its objects are its values.
            An instance label image whose objects are the 4-connected cells of a
            mask gives exactly the weight map of that mask.
        classes: for K classes, the (H, W) class-index target (0 = background)
            whose class frequencies ``w_c`` balances (`class_balance_weights`);
            ``mask`` then gives the objects of the border term (e.g.
            ``classes != 0``). Default: foreground vs background of ``mask``.

    Returns:
        (H, W) float32 weight map.

    Raises:
        ValueError: if ``mask`` is not 2-D, ``sigma <= 0``, ``w0 < 0``,
            ``connectivity`` is not 4 or 8 or is given with ``instances=True``, or
            instance labels are not integers.
    """
    mask = _check_args(mask, w0, sigma)
    objects, n_objects = _objects(mask, connectivity, instances)
    fg = objects != 0
    if classes is not None and np.shape(classes) != fg.shape:
        raise ValueError(f"classes {np.shape(classes)} and mask {fg.shape} must have the same shape")
    weights = class_balance_weights(fg if classes is None else classes)
    if n_objects < 2 or w0 == 0:
        return weights.astype(np.float32)

    height, width = fg.shape
    cutoff = border_radius(w0, sigma)
    # Each object's distance map is computed only in its bounding box grown by
    # `grow` pixels. That is exact inside the window (the whole object lies in it).
    # A pixel outside is >= grow + 1 = cutoff - 1 from the object (integer grid), and
    # a background pixel is >= 1 from its nearest object, so whenever the window
    # misses the nearest or second-nearest object of a pixel, the true d1 + d2 is
    # >= cutoff, and the running d1, d2 (distances to a subset of the objects) are
    # no smaller. Hence where the running d1 + d2 < cutoff they are exact, and
    # elsewhere the true border term is <= 2**-25 (see border_radius) and is
    # dropped.
    grow = cutoff - 2
    d1 = np.full(fg.shape, np.inf, dtype=np.float32)
    d2 = np.full(fg.shape, np.inf, dtype=np.float32)
    for i, (rows, cols) in enumerate(ndi.find_objects(objects), start=1):
        r0, r1 = max(rows.start - grow, 0), min(rows.stop + grow, height)
        c0, c1 = max(cols.start - grow, 0), min(cols.stop + grow, width)
        not_object = (objects[r0:r1, c0:c1] != i).view(np.uint8)
        # OpenCV's DIST_MASK_PRECISE is the exact (Felzenszwalb) EDT, ~2x faster
        # than scipy's; its float32 output is made bit-exact below.
        dist = cv2.distanceTransform(not_object, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
        m1 = d1[r0:r1, c0:c1]  # views: updated in place
        m2 = d2[r0:r1, c0:c1]
        # Insert dist into the sorted pair (m1 <= m2) without branching.
        np.minimum(m2, np.maximum(m1, dist), out=m2)
        np.minimum(m1, dist, out=m1)

    near = d1 + d2 < cutoff
    near &= ~fg
    idx = np.flatnonzero(near)
    e1 = d1.ravel()[idx].astype(np.float64)
    e2 = d2.ravel()[idx].astype(np.float64)
    if cutoff < 2048:
        # Squared distances are integers and a float32 distance d < 2048 squares to
        # within 2**-24 * 2 * d**2 < 0.5 of one: rounding recovers it, so d1, d2
        # equal scipy's float64 EDT exactly (not only to float32 precision).
        e1 = np.sqrt(np.rint(e1 * e1))
        e2 = np.sqrt(np.rint(e2 * e2))
    dsum = e1 + e2
    weights.ravel()[idx] += w0 * np.exp(-(dsum * dsum) / (2.0 * sigma * sigma))
    return weights.astype(np.float32)


def border_weight_map_direct(mask: np.ndarray, w0: float = PAPER_W0, sigma: float = PAPER_SIGMA,
                             connectivity: int | None = None, *, instances: bool = False) -> np.ndarray:
    """Slow reference for :func:`border_weight_map`, used by tests and the benchmark.

    Computes one full ``distance_transform_edt(objects != i)`` per object, stacks them
    into an (H, W, objects) float64 array, sorts it along the last axis and takes the
    two smallest as ``d1, d2``; computed in float64, cast to float32 at the end.
    Memory is O(H*W*objects).

    Args:
        mask: (H, W) array; nonzero = foreground (cell), zero = background. With
            ``instances=True``: an instance label image of any integer dtype, 0 =
            background, each other value one object.
        w0: amplitude of the border term, >= 0.
        sigma: width of the border term in pixels, > 0.
        connectivity: 4 or 8, which foreground pixels of a binary mask form one cell
            (default :data:`unet_repro.cells.CELL_CONNECTIVITY`, 4). Not allowed
            with ``instances=True``.
        instances: ``mask`` is an instance label image; its objects are its values.

    Returns:
        (H, W) float32 weight map.

    Raises:
        ValueError: as :func:`border_weight_map`.
    """
    mask = _check_args(mask, w0, sigma)
    objects, n_objects = _objects(mask, connectivity, instances)
    fg = objects != 0
    weights = class_balance_weights(fg)
    if n_objects < 2:
        return weights.astype(np.float32)
    dists = np.stack(
        [ndi.distance_transform_edt(objects != i) for i in range(1, n_objects + 1)], axis=-1
    )
    dists.sort(axis=-1)
    d1, d2 = dists[..., 0], dists[..., 1]
    border = w0 * np.exp(-((d1 + d2) ** 2) / (2.0 * sigma**2))
    weights += np.where(fg, 0.0, border)
    return weights.astype(np.float32)
