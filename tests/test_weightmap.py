"""Tests of the U-Net border weight map: analytic cases, fast == direct (both cell connectivities), the same cells
as the ISBI metrics, real ISBI labels."""
from __future__ import annotations

import math
import tracemalloc

import numpy as np
import pytest
from conftest import real_data_root, synthetic_em
from scipy import ndimage

from unet_repro.cells import CELL_CONNECTIVITY, label_cells
from unet_repro.metrics import segment
from unet_repro.weightmap import (
    border_radius,
    border_weight_map,
    border_weight_map_direct,
)

BOTH = pytest.mark.parametrize(
    "weight_map", [border_weight_map, border_weight_map_direct], ids=["fast", "direct"]
)


def two_squares(gap: int) -> np.ndarray:
    """30x40 mask, two 10x10 cells on rows 10..19; facing columns 14 and 14 + gap."""
    mask = np.zeros((30, 40), np.uint8)
    mask[10:20, 5:15] = 255
    mask[10:20, 14 + gap : 24 + gap] = 255
    return mask


def random_blobs(shape: tuple[int, int], seed: int, smooth: float = 2.0, level: float = 0.2) -> np.ndarray:
    """Many irregular cells: thresholded smoothed noise (touching the image borders too)."""
    rng = np.random.default_rng(seed)
    noise = ndimage.gaussian_filter(rng.standard_normal(shape), smooth)
    return noise > level * noise.std()


@BOTH
def test_two_cells_between_them_analytic(weight_map) -> None:
    gap, w0, sigma = 6, 10.0, 5.0
    w = weight_map(two_squares(gap), w0=w0, sigma=sigma)
    # 200 foreground / 1000 background pixels: w_c = 5 on cells, 1 on background.
    w_bg = 1.0
    # Between the cells, d1 + d2 = gap on every pixel of the row (midway: d1 = d2 = gap / 2).
    expected = w_bg + w0 * math.exp(-(gap**2) / (2 * sigma**2))
    np.testing.assert_allclose(w[10:20, 15:20], expected, rtol=0, atol=1e-6)
    assert w[15, 17] == pytest.approx(expected, abs=1e-6)  # the midway pixel
    # Off-axis (true Euclidean, not chessboard/city-block): (8, 17) is sqrt(13) from both
    # nearest corners (10, 14) and (10, 20).
    off = w_bg + w0 * math.exp(-((2 * math.sqrt(13)) ** 2) / (2 * sigma**2))
    assert w[8, 17] == pytest.approx(off, abs=1e-6)
    # Cells get no border term, only w_c.
    np.testing.assert_array_equal(w[10:20, 5:15], np.float32(5.0))
    assert w.dtype == np.float32 and w.shape == (30, 40)


@BOTH
def test_border_term_shrinks_with_the_gap(weight_map) -> None:
    near = weight_map(two_squares(4))[15, 16]
    far = weight_map(two_squares(8))[15, 18]
    assert near > far > 1.0


@BOTH
def test_single_cell_class_balance_no_border_term(weight_map) -> None:
    mask = np.zeros((40, 40), bool)
    mask[10:30, 10:30] = True  # one cell, 1/4 of the pixels
    w = weight_map(mask, w0=10.0, sigma=5.0)
    expected = np.where(mask, 3.0, 1.0).astype(np.float32)  # f_max / f_c = 0.75 / 0.25
    np.testing.assert_array_equal(w, expected)


@BOTH
def test_class_balance_with_border_term_far_away(weight_map) -> None:
    # Two thin cells in the corners of a 100x100 image, 1/4 of it foreground.
    mask = np.zeros((100, 100), bool)
    mask[:, :5] = True
    mask[:, 80:] = True
    w = weight_map(mask, w0=10.0, sigma=5.0)
    np.testing.assert_array_equal(w[mask], np.float32(3.0))
    # Background with d1 + d2 = 76: border term 10 * exp(-115.5) is nothing in float32.
    np.testing.assert_array_equal(w[:, 5:80], np.float32(1.0))


@BOTH
@pytest.mark.parametrize("value", [0, 1, 255])
def test_single_class_gives_ones(weight_map, value: int) -> None:
    mask = np.full((17, 23), value, np.uint8)
    w = weight_map(mask)
    np.testing.assert_array_equal(w, np.ones((17, 23), np.float32))
    assert w.dtype == np.float32


def diagonal_squares() -> np.ndarray:
    """20x20 mask, two 5x5 squares touching only at the corner (7,7)-(8,8)."""
    mask = np.zeros((20, 20), bool)
    mask[3:8, 3:8] = True
    mask[8:13, 8:13] = True
    return mask


def test_cells_are_4_connected_by_default() -> None:
    assert CELL_CONNECTIVITY == 4
    assert label_cells(diagonal_squares()).max() == 2
    assert label_cells(diagonal_squares(), connectivity=8).max() == 1
    with pytest.raises(ValueError, match="connectivity"):
        label_cells(diagonal_squares(), connectivity=6)


@BOTH
def test_diagonal_touch_is_two_cells_and_the_membrane_between_gets_the_border_term(weight_map) -> None:
    """The bug of 8-connected cells: the two membrane pixels beside the touching corner lie 1 px from each square,
    so they must get w0 * exp(-(1 + 1)^2 / (2 sigma^2)) on top of w_c, as the metrics see two cells there."""
    mask = diagonal_squares()
    w0, sigma = 10.0, 5.0
    w = weight_map(mask, w0=w0, sigma=sigma)
    assert segment(mask).max() == 2                     # the ISBI metrics: two cells
    w_c_bg = 1.0                                        # 50 cell pixels, 350 membrane pixels
    expected = w_c_bg + w0 * math.exp(-(2.0**2) / (2 * sigma**2))   # ~ 10.23
    assert w[7, 8] == pytest.approx(expected, abs=1e-5)
    assert w[8, 7] == pytest.approx(expected, abs=1e-5)
    np.testing.assert_array_equal(w[mask], np.float32(350 / 50))  # cells: only w_c
    assert w.max() == pytest.approx(expected, abs=1e-5)  # the corner pixels are the closest to both cells


@BOTH
def test_diagonal_touch_is_one_cell_with_8_connectivity(weight_map) -> None:
    mask = diagonal_squares()
    w = weight_map(mask, connectivity=8)
    # One 8-connected cell: no border term at all.
    n_fg = int(mask.sum())
    expected = np.where(mask, (mask.size - n_fg) / n_fg, 1.0).astype(np.float32)
    np.testing.assert_array_equal(w, expected)


@BOTH
def test_rejects_bad_connectivity(weight_map) -> None:
    with pytest.raises(ValueError, match="connectivity"):
        weight_map(diagonal_squares(), connectivity=6)


def weight_map_from_labels(labels: np.ndarray, w0: float = 10.0, sigma: float = 5.0) -> np.ndarray:
    """Eq. 2 of the paper from a given cell label image (independent of `unet_repro.weightmap`'s labelling):
    w_c + w0 exp(-(d1 + d2)^2 / (2 sigma^2)) on membrane pixels, d1, d2 = EDT to the nearest two labels."""
    fg = labels > 0
    n_fg = fg.sum()
    n_max = max(n_fg, fg.size - n_fg)
    w = np.where(fg, n_max / n_fg, n_max / (fg.size - n_fg))
    dists = np.sort(np.stack([ndimage.distance_transform_edt(labels != i) for i in range(1, labels.max() + 1)],
                             axis=-1), axis=-1)
    border = w0 * np.exp(-((dists[..., 0] + dists[..., 1]) ** 2) / (2 * sigma**2))
    return (w + np.where(fg, 0.0, border)).astype(np.float32)


@pytest.mark.parametrize("k", range(4))
def test_weight_map_counts_the_cells_the_metrics_count(k: int) -> None:
    """On EM-like labels with diagonally touching cells the weight map is eq. 2 for exactly the cells of the ISBI
    metrics' `segment` (not for the fewer 8-connected ones)."""
    mask = synthetic_em()[1][k] > 0
    cells = segment(mask)
    assert cells.max() > label_cells(mask, connectivity=8).max()   # the labels do have diagonal touches
    expected = weight_map_from_labels(cells)
    for weight_map in (border_weight_map, border_weight_map_direct):
        np.testing.assert_allclose(weight_map(mask), expected, rtol=0, atol=1e-5)
    assert np.abs(border_weight_map(mask, connectivity=8) - expected).max() > 1.0


@BOTH
@pytest.mark.parametrize("shape", [(64,), (2, 32, 32), ()])
def test_rejects_non_2d(weight_map, shape) -> None:
    with pytest.raises(ValueError, match="2-D"):
        weight_map(np.zeros(shape, np.uint8))


@BOTH
def test_rejects_bad_sigma(weight_map) -> None:
    with pytest.raises(ValueError, match="sigma"):
        weight_map(two_squares(6), sigma=0.0)


@pytest.mark.parametrize("w0, sigma", [(10.0, 5.0), (10.0, 3.0), (1.0, 8.0), (1e4, 2.0)])
def test_border_radius_is_the_smallest_safe_cutoff(w0: float, sigma: float) -> None:
    r = border_radius(w0, sigma)
    assert w0 * math.exp(-(r**2) / (2 * sigma**2)) <= 2.0**-25
    assert w0 * math.exp(-((r - 1) ** 2) / (2 * sigma**2)) > 2.0**-25
    if (w0, sigma) == (10.0, 5.0):
        assert r == 32


@pytest.mark.parametrize("connectivity", [4, 8])
@pytest.mark.parametrize(
    "seed, shape, w0, sigma",
    [
        (0, (128, 128), 10.0, 5.0),
        (1, (128, 128), 10.0, 5.0),
        (2, (96, 150), 10.0, 5.0),
        (3, (128, 128), 10.0, 2.0),
        (4, (128, 128), 3.0, 9.0),
        (5, (128, 128), 1e3, 5.0),
    ],
)
def test_fast_matches_direct_on_random_blobs(seed: int, shape, w0: float, sigma: float, connectivity: int) -> None:
    mask = random_blobs(shape, seed)
    n_cells = label_cells(mask, connectivity).max()
    assert n_cells >= 20  # many cells, so the windows overlap and the order matters
    fast = border_weight_map(mask, w0=w0, sigma=sigma, connectivity=connectivity)
    direct = border_weight_map_direct(mask, w0=w0, sigma=sigma, connectivity=connectivity)
    assert fast.dtype == np.float32 and fast.shape == shape
    assert direct.dtype == np.float32 and direct.shape == shape
    # The border term is really there (not only w_c) ...
    n_fg = int(mask.sum())
    n_max = max(n_fg, mask.size - n_fg)
    w_c = np.where(mask, n_max / n_fg, n_max / (mask.size - n_fg))
    assert (direct - w_c).max() > 0.1
    # ... and both algorithms agree.
    assert np.abs(fast - direct).max() <= 1e-5


def test_fast_memory_is_linear_in_pixels() -> None:
    mask = random_blobs((128, 128), 0)
    n_cells = label_cells(mask).max()
    assert n_cells >= 40
    plane = mask.size * 8  # one float64 plane
    tracemalloc.start()
    try:
        border_weight_map(mask)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # ~7 planes here (input copies, w_c, labels, d1, d2, window temporaries, result);
    # an (H, W, cells) stack would be >= n_cells >= 40 planes.
    assert peak < 12 * plane


def isbi_labels() -> np.ndarray:
    import tifffile

    path = real_data_root("isbi2012") / "train-labels.tif"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    return tifffile.imread(path)


@pytest.mark.realdata
@pytest.mark.parametrize("connectivity", [4, 8])
def test_fast_matches_direct_on_isbi_labels(connectivity: int) -> None:
    for slice_ in isbi_labels()[:2]:
        mask = slice_ > 127
        fast = border_weight_map(mask, connectivity=connectivity)
        direct = border_weight_map_direct(mask, connectivity=connectivity)
        assert fast.shape == mask.shape and fast.dtype == np.float32
        np.testing.assert_array_equal(fast, direct)          # bit-identical on the ISBI labels


@pytest.mark.realdata
def test_8_connectivity_merges_18_pairs_on_the_isbi_labels() -> None:
    """The measured effect of the old 8-connected cells: 18 pairs of diagonally touching cells on the 30 training
    labels were one cell to the weight map (and two to the metrics); on slice 7 their membrane lost up to 5.48."""
    labels = isbi_labels()
    assert labels.shape == (30, 512, 512)
    merged = sum(int(label_cells(s > 127).max() - label_cells(s > 127, connectivity=8).max()) for s in labels)
    assert merged == 18
    mask = labels[7] > 127
    gain = border_weight_map(mask).astype(np.float64) - border_weight_map(mask, connectivity=8)
    assert gain.min() >= 0 and not gain[mask].any()          # only membrane pixels gain, nothing loses
    assert gain.max() == pytest.approx(5.48, abs=0.01)
    assert np.count_nonzero(gain > 0.5) == 54
