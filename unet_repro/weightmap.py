"""Pixel-wise loss weight map of the U-Net paper (Ronneberger et al. 2015, eq. 2).

For a binary mask of shape (H, W) the weight map is

.. math::

    w(x) = w_c(x) + w_0 \\exp\\left(-\\frac{(d_1(x) + d_2(x))^2}{2\\sigma^2}\\right)

where

- cells are the connected foreground regions of the mask, connected as defined once
  for the whole package by :data:`unet_repro.cells.CELL_CONNECTIVITY` (4: two cells
  touching only at a corner are two cells, and the membrane pixels beside the corner
  get the border term; as the ISBI metrics count cells). ``connectivity=8`` joins
  such cells into one, which then gets no border term between its parts;
- :math:`w_c(x) = f_{max} / f_{c(x)}` balances the class frequencies, with
  :math:`f_c` the fraction of pixels of class :math:`c` (foreground or background)
  in this mask and :math:`f_{max}` the larger one; :math:`w_c = 1` everywhere when
  the mask holds a single class;
- :math:`d_1, d_2` are the exact Euclidean distances to the nearest and
  second-nearest cell. The border term is only added on background pixels, and
  it is 0 when the mask has fewer than two cells.

Two implementations are provided: :func:`border_weight_map` (fast, memory
O(H*W)) and :func:`border_weight_map_direct` (slow reference, memory
O(H*W*cells)), which agree to float32 precision.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
from scipy import ndimage as ndi

from .cells import CELL_CONNECTIVITY, label_cells

__all__ = ["PAPER_SIGMA", "PAPER_W0", "border_weight_map", "border_weight_map_direct", "border_radius"]

#: The paper's weight-map parameters (Sec. 3: "we set w0 = 10 and sigma ~ 5 pixels"), the defaults everywhere.
PAPER_W0 = 10.0
PAPER_SIGMA = 5.0


def _check_args(mask: np.ndarray, w0: float, sigma: float) -> np.ndarray:
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"mask must be a 2-D (H, W) array, got shape {mask.shape}")
    if not sigma > 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")
    if not w0 >= 0:
        raise ValueError(f"w0 must be >= 0, got {w0}")
    return mask != 0


def _class_weights(fg: np.ndarray) -> np.ndarray:
    """Class-balancing term ``w_c``, float64 array of shape (H, W)."""
    n_fg = int(np.count_nonzero(fg))
    n_bg = fg.size - n_fg
    if n_fg == 0 or n_bg == 0:
        return np.ones(fg.shape, dtype=np.float64)
    n_max = max(n_fg, n_bg)
    # The ratio of counts equals the ratio of frequencies.
    return np.where(fg, n_max / n_fg, n_max / n_bg)


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


def border_weight_map(mask: np.ndarray, w0: float = 10.0, sigma: float = 5.0,
                      connectivity: int = CELL_CONNECTIVITY) -> np.ndarray:
    """U-Net weight map ``w = w_c + w0 * exp(-(d1 + d2)**2 / (2 sigma**2))`` (fast).

    See the module docstring for the exact definition. Agrees with
    :func:`border_weight_map_direct` to float32 precision (on the ISBI 2012
    labels: bit-identical). Time is proportional to the summed area of the cells'
    bounding boxes grown by ``border_radius(w0, sigma) - 2`` pixels; memory is
    O(H*W).

    Args:
        mask: (H, W) array; nonzero = foreground (cell), zero = background.
        w0: amplitude of the border term, >= 0.
        sigma: width of the border term in pixels, > 0.
        connectivity: 4 or 8, which foreground pixels form one cell (default
            :data:`unet_repro.cells.CELL_CONNECTIVITY`, 4).

    Returns:
        (H, W) float32 weight map.

    Raises:
        ValueError: if ``mask`` is not 2-D, ``sigma <= 0``, ``w0 < 0`` or
            ``connectivity`` is not 4 or 8.
    """
    fg = _check_args(mask, w0, sigma)
    weights = _class_weights(fg)
    labels = label_cells(fg, connectivity)
    n_cells = int(labels.max())
    if n_cells < 2 or w0 == 0:
        return weights.astype(np.float32)

    height, width = fg.shape
    cutoff = border_radius(w0, sigma)
    # Each cell's distance map is computed only in its bounding box grown by
    # `grow` pixels. That is exact inside the window (the whole cell lies in it).
    # A pixel outside is >= grow + 1 = cutoff - 1 from the cell (integer grid), and
    # a background pixel is >= 1 from its nearest cell, so whenever the window
    # misses the nearest or second-nearest cell of a pixel, the true d1 + d2 is
    # >= cutoff, and the running d1, d2 (distances to a subset of the cells) are
    # no smaller. Hence where the running d1 + d2 < cutoff they are exact, and
    # elsewhere the true border term is <= 2**-25 (see border_radius) and is
    # dropped.
    grow = cutoff - 2
    d1 = np.full(fg.shape, np.inf, dtype=np.float32)
    d2 = np.full(fg.shape, np.inf, dtype=np.float32)
    for i, (rows, cols) in enumerate(ndi.find_objects(labels), start=1):
        r0, r1 = max(rows.start - grow, 0), min(rows.stop + grow, height)
        c0, c1 = max(cols.start - grow, 0), min(cols.stop + grow, width)
        not_cell = (labels[r0:r1, c0:c1] != i).view(np.uint8)
        # OpenCV's DIST_MASK_PRECISE is the exact (Felzenszwalb) EDT, ~2x faster
        # than scipy's; its float32 output is made bit-exact below.
        dist = cv2.distanceTransform(not_cell, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
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


def border_weight_map_direct(mask: np.ndarray, w0: float = 10.0, sigma: float = 5.0,
                             connectivity: int = CELL_CONNECTIVITY) -> np.ndarray:
    """Slow reference for :func:`border_weight_map`, used by tests and the benchmark.

    Computes one full ``distance_transform_edt(labels != i)`` per cell, stacks them
    into an (H, W, cells) float64 array, sorts it along the last axis and takes the
    two smallest as ``d1, d2``; computed in float64, cast to float32 at the end.
    Memory is O(H*W*cells).

    Args:
        mask: (H, W) array; nonzero = foreground (cell), zero = background.
        w0: amplitude of the border term, >= 0.
        sigma: width of the border term in pixels, > 0.
        connectivity: 4 or 8, which foreground pixels form one cell (default
            :data:`unet_repro.cells.CELL_CONNECTIVITY`, 4).

    Returns:
        (H, W) float32 weight map.

    Raises:
        ValueError: if ``mask`` is not 2-D, ``sigma <= 0``, ``w0 < 0`` or
            ``connectivity`` is not 4 or 8.
    """
    fg = _check_args(mask, w0, sigma)
    weights = _class_weights(fg)
    labels = label_cells(fg, connectivity)
    n_cells = int(labels.max())
    if n_cells < 2:
        return weights.astype(np.float32)
    dists = np.stack(
        [ndi.distance_transform_edt(labels != i) for i in range(1, n_cells + 1)], axis=-1
    )
    dists.sort(axis=-1)
    d1, d2 = dists[..., 0], dists[..., 1]
    border = w0 * np.exp(-((d1 + d2) ** 2) / (2.0 * sigma**2))
    weights += np.where(fg, 0.0, border)
    return weights.astype(np.float32)
