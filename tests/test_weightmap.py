"""Tests of the U-Net border weight map: analytic cases, fast == direct, real ISBI labels."""
from __future__ import annotations

import math
import os
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

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


@BOTH
def test_diagonal_touch_is_one_cell(weight_map) -> None:
    mask = np.zeros((20, 20), bool)
    mask[3:8, 3:8] = True
    mask[8:13, 8:13] = True  # touches the first square only at the corner (7,7)-(8,8)
    w = weight_map(mask)
    # One 8-connected cell: no border term. With 4-connectivity (8, 7) would be 1 px from
    # both squares and get w0 * exp(-4 / 50) ~ 9.2 on top.
    n_fg = int(mask.sum())
    expected = np.where(mask, (mask.size - n_fg) / n_fg, 1.0).astype(np.float32)
    np.testing.assert_array_equal(w, expected)


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
def test_fast_matches_direct_on_random_blobs(seed: int, shape, w0: float, sigma: float) -> None:
    mask = random_blobs(shape, seed)
    n_cells = ndimage.label(mask, np.ones((3, 3)))[1]
    assert n_cells >= 20  # many cells, so the windows overlap and the order matters
    fast = border_weight_map(mask, w0=w0, sigma=sigma)
    direct = border_weight_map_direct(mask, w0=w0, sigma=sigma)
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
    n_cells = ndimage.label(mask, np.ones((3, 3)))[1]
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


@pytest.mark.realdata
def test_fast_matches_direct_on_isbi_labels() -> None:
    import tifffile

    root = os.environ.get("UNET_REPRO_DATA")
    if not root:
        pytest.skip("UNET_REPRO_DATA is not set")
    path = Path(root) / "isbi2012" / "train-labels.tif"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    labels = tifffile.imread(path)[:2]
    for slice_ in labels:
        mask = slice_ > 127
        fast = border_weight_map(mask)
        direct = border_weight_map_direct(mask)
        assert fast.shape == mask.shape and fast.dtype == np.float32
        assert np.abs(fast - direct).max() <= 1e-5
