"""What "a cell" is in a binary EM label: the one definition shared by the weight map, the metrics and the figures.

A cell is a connected component of the cell (foreground, nonzero) pixels of a 2-D mask. Which pixels count as
connected is :data:`CELL_CONNECTIVITY`:

* 4 (default): pixels sharing an edge. Two cells that touch only at a corner are two cells, separated by the
  membrane pixels beside the corner. This is the ISBI-2012 challenge's choice (its Fiji evaluation labels cells
  with ``connectedComponents(..., 4)``) and the right one for 2-D EM, where a 1-pixel membrane line drawn at 45
  degrees leaves the cells on either side touching diagonally.
* 8: pixels sharing an edge or a corner. Diagonally touching cells are one cell.

The membranes (background) are then connected the other way (:func:`membrane_connectivity`: 8 for 4-connected
cells and vice versa), the pairing under which digital topology (simple points, Jordan curves) is consistent.

Changing :data:`CELL_CONNECTIVITY` changes the weight map's border term (which cells are "two cells"), the ISBI
metrics' segmentation, simple points and mismatch classes together; the metrics then no longer follow the
challenge. Functions that take a ``connectivity`` keyword (:func:`label_cells`,
`unet_repro.weightmap.border_weight_map`) keep the other choice available per call.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

__all__ = ["CELL_CONNECTIVITY", "cell_structure", "check_connectivity", "label_cells", "membrane_connectivity"]

#: Neighbours that join cell pixels into one cell: 4 (edges only, the ISBI challenge's choice) or 8 (also corners).
CELL_CONNECTIVITY: int = 4


def check_connectivity(connectivity: int) -> int:
    """``connectivity`` if it is 4 or 8 (as a 2-D neighbour count), else ValueError."""
    if connectivity not in (4, 8):
        raise ValueError(f"connectivity must be 4 or 8 (2-D neighbours), got {connectivity!r}")
    return int(connectivity)


def membrane_connectivity(cell_connectivity: int = CELL_CONNECTIVITY) -> int:
    """The connectivity of the membranes (background) that pairs with ``cell_connectivity``: 8 for 4, 4 for 8.

    With the same connectivity for both, a diagonal step would either cross a membrane line (both 8) or a
    diagonal pair of membrane pixels would separate nothing (both 4): the pair (4, 8) / (8, 4) is the one for which
    a closed curve of one class separates the other (the digital Jordan theorem).
    """
    return 12 - check_connectivity(cell_connectivity)


def cell_structure(connectivity: int = CELL_CONNECTIVITY) -> np.ndarray:
    """The 3x3 neighbourhood of ``connectivity`` (the ``structure`` of `scipy.ndimage.label`, the footprint
    ``connectivity`` of `skimage.segmentation.watershed`): a cross for 4, a full square for 8.

    Shape: (3, 3) bool.
    """
    rank = 1 if check_connectivity(connectivity) == 4 else 2
    return ndi.generate_binary_structure(2, rank)


def label_cells(mask: np.ndarray, connectivity: int = CELL_CONNECTIVITY) -> np.ndarray:
    """Label image of the cells: each ``connectivity``-connected component of the nonzero pixels of ``mask`` gets
    its own label 1..K, in raster order of its first pixel; membrane (zero) pixels are 0.

    Shapes: (H, W) binary (bool, or numbers with nonzero = cell) -> (H, W) int32. The number of cells is
    ``labels.max()``.
    """
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"mask must be a 2-D (H, W) array, got shape {mask.shape}")
    labels, _ = ndi.label(mask != 0, structure=cell_structure(connectivity))
    return labels.astype(np.int32, copy=False)
