"""Tests for unet_repro.augment (elastic deformation + paper augmentation pipelines)."""

from __future__ import annotations

import random
import warnings

import albumentations as A
import numpy as np
import pytest
from scipy import ndimage

from unet_repro.augment import (
    Augmentation,
    ElasticGrid,
    elastic_displacement,
    geometric_transforms,
    intensity_transforms,
    paper_augmentation,
    seed_compose,
)


def blob_image(size: int = 128, seed: int = 0) -> np.ndarray:
    """Smooth random blobs, uint8 in [0, 255]: thresholding at 127 gives a mask with long edges."""
    noise = np.random.default_rng(seed).normal(size=(size, size))
    smooth = ndimage.gaussian_filter(noise, sigma=size / 10, mode="wrap")
    smooth = (smooth - smooth.min()) / (smooth.max() - smooth.min())
    return np.round(255 * smooth).astype(np.uint8)


def elastic(sigma: float = 10.0, grid: int = 3, seed: int = 0) -> A.Compose:
    return A.Compose([ElasticGrid(grid=grid, sigma=sigma, p=1.0)], additional_targets={"weight": "image"}, seed=seed)


@pytest.fixture
def sample() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    image = blob_image()
    mask = (image > 127).astype(np.uint8)
    weight = np.random.default_rng(1).random(image.shape, dtype=np.float32) * 10
    return image, mask, weight


def test_sigma_zero_is_identity(sample):
    image, mask, weight = sample
    out = elastic(sigma=0.0)(image=image, mask=mask, weight=weight)
    for key, ref in (("image", image), ("mask", mask), ("weight", weight)):
        assert out[key].dtype == ref.dtype
        assert np.array_equal(out[key], ref), key


def test_mask_stays_aligned_with_image(sample):
    image, mask, _ = sample
    out = elastic(sigma=10.0, seed=3)(image=image, mask=mask)
    # the deformation is real: many pixels moved
    assert np.mean(out["mask"] != mask) > 0.01
    agreement = np.mean((out["image"] > 127) == (out["mask"] == 1))
    assert agreement > 0.98, agreement


@pytest.mark.parametrize("seed", range(3))
def test_masks_stay_binary(sample, seed):
    image, mask, weight = sample
    out = elastic(sigma=10.0, seed=seed)(image=image, mask=mask, weight=weight, masks=[mask, 1 - mask])
    assert set(np.unique(out["mask"])) <= {0, 1}
    assert set(np.unique(np.asarray(out["masks"]))) <= {0, 1}
    geo = geometric_transforms(seed=seed)
    out = geo(image=image, mask=mask, weight=weight)
    assert out["mask"].dtype == np.uint8
    assert set(np.unique(out["mask"])) <= {0, 1}


def test_label_set_preserved():
    # sparse label values: any interpolation other than nearest would create new values in between
    label_values = np.array([0, 3, 7, 255], dtype=np.uint8)
    labels = label_values[np.random.default_rng(0).integers(0, 4, (64, 64))]
    out = elastic(sigma=10.0)(image=labels, mask=labels)
    assert set(np.unique(out["mask"])) <= set(label_values.tolist())


# Each bilinear resampling of the uint8 image rounds by <= 0.5 gray level; the float weight is not rounded.
# ElasticGrid alone resamples once; the geometric pipeline resamples at most twice (Affine + ElasticGrid).
@pytest.mark.parametrize(
    ("make", "atol"),
    [(lambda s: elastic(10.0, seed=s), 0.5 + 1e-3), (lambda s: geometric_transforms(seed=s), 1.0 + 1e-3)],
)
def test_weight_gets_same_field_as_image(sample, make, atol):
    image, mask, _ = sample
    weight = image.astype(np.float32)
    out = make(5)(image=image, mask=mask, weight=weight)
    assert out["weight"].dtype == np.float32
    assert out["weight"].shape == image.shape
    assert not np.array_equal(out["image"], image)
    np.testing.assert_allclose(out["weight"], out["image"].astype(np.float32), rtol=0, atol=atol)


def test_multichannel_and_float_images_keep_shape_and_dtype():
    rng = np.random.default_rng(0)
    for img in (
        rng.random((40, 50, 3), dtype=np.float32),
        rng.random((40, 50, 1), dtype=np.float32),
        rng.integers(0, 256, (40, 50), dtype=np.uint8),
    ):
        out = elastic(seed=1)(image=img)["image"]
        assert out.shape == img.shape and out.dtype == img.dtype


def test_reproducible_from_seed_and_global_rng_untouched(sample):
    image, mask, weight = sample
    aug = paper_augmentation()
    np.random.seed(123)
    np_state, py_state = np.random.get_state(), random.getstate()
    a = aug(image, mask, weight, seed=7)
    aug(image, mask, weight, seed=8)  # an intervening call must not matter
    b = aug(image, mask, weight, seed=7)
    c = aug(image, mask, weight, seed=8)
    after = np.random.get_state()
    assert after[0] == np_state[0] and np.array_equal(after[1], np_state[1]) and after[2:] == np_state[2:]
    assert random.getstate() == py_state
    for x, y in zip(a, b):
        assert x.dtype == y.dtype and np.array_equal(x, y)
    assert not np.array_equal(a[0], c[0]) and not np.array_equal(a[2], c[2])
    # a plain Compose seeded twice the same way also replays exactly
    assert np.array_equal(elastic(seed=4)(image=image)["image"], elastic(seed=4)(image=image)["image"])


def test_augmentation_shapes_and_dtypes():
    image = blob_image(572)
    mask = (image > 127).astype(np.uint8)
    weight = np.ones(image.shape, np.float32)
    img, msk, w = paper_augmentation()(image, mask, weight, seed=0)
    assert (img.shape, msk.shape, w.shape) == ((572, 572),) * 3
    assert (img.dtype, msk.dtype, w.dtype) == (np.uint8, np.uint8, np.float32)
    # intensity transforms on a float image in [0, 1], and on one of any range (percentile-normalised own data):
    # the same augmentation as on that image mapped onto [0, 1], mapped back
    fimg = image.astype(np.float32) / 255
    in_range = paper_augmentation()(fimg, mask, weight, seed=0)[0]
    assert in_range.dtype == np.float32
    wide = (fimg * 1.4 - 0.2).astype(np.float32)  # from -0.2 to 1.2
    out = paper_augmentation()(wide, mask, weight, seed=0)[0]
    assert out.dtype == np.float32 and out.min() < 0 and out.max() > 1 and np.isfinite(out).all()
    lo, hi = float(wide.min()), float(wide.max())
    expected = paper_augmentation()((wide - lo) / (hi - lo), mask, weight, seed=0)[0] * (hi - lo) + lo
    # (the map onto [0, 1] uses the range of the deformed tile, which bicubic interpolation widens a little)
    np.testing.assert_allclose(out, expected, atol=1e-3)
    with pytest.raises(ValueError):
        paper_augmentation()(image, mask[:-1], weight, seed=0)


def test_displacement_statistics_and_smoothness():
    rng = np.random.default_rng(0)
    draws = [elastic_displacement((33, 33), 3, 10.0, rng) for _ in range(2000)]
    dx = np.array([d[0] for d in draws])
    dy = np.array([d[1] for d in draws])
    assert dx.shape == (2000, 33, 33) and dx.dtype == np.float32
    # grid nodes sit on the corners and the centre; the interpolant passes through the N(0, sigma^2) draws
    for y, x in [(0, 0), (0, 32), (32, 32), (16, 16), (0, 16)]:
        assert abs(dx[:, y, x].std() - 10.0) < 1.0, (y, x, dx[:, y, x].std())
        assert abs(dy[:, y, x].std() - 10.0) < 1.0
    assert abs(np.corrcoef(dx[:, 0, 0], dy[:, 0, 0])[0, 1]) < 0.1  # independent components
    # full-size field: smooth (sub-pixel change between neighbouring pixels)
    for _ in range(20):
        fx, fy = elastic_displacement((572, 572), 3, 10.0, rng)
        for f in (fx, fy):
            assert np.abs(np.diff(f, axis=0)).max() < 0.5 and np.abs(np.diff(f, axis=1)).max() < 0.5


def test_no_warnings(sample):
    image, mask, weight = sample
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        aug = paper_augmentation()
        aug(image, mask, weight, seed=0)
        aug(image.astype(np.float32) / 255, mask, weight, seed=1)
        elastic(seed=0)(image=image, mask=mask, weight=weight)
        Augmentation(geometric_transforms(), intensity_transforms())(image, mask, weight, seed=2)


def test_all_eight_square_symmetries_occur():
    """Guards against albumentations' Compose seeding, which gives HorizontalFlip and VerticalFlip identical
    random streams (they would always fire together: no mirrored sample would ever be produced)."""
    img = np.arange(16, dtype=np.uint8).reshape(4, 4)
    d4 = {np.rot90(f, k).tobytes() for f in (img, img[:, ::-1]) for k in range(4)}
    geo = geometric_transforms(elastic_p=0.0, affine_p=0.0)
    seen = {seed_compose(geo, s)(image=img)["image"].tobytes() for s in range(100)}
    assert seen == d4


def test_geometric_pipeline_has_no_intensity_transform():
    geo = geometric_transforms()
    assert all(isinstance(t, A.DualTransform) for t in geo.transforms)
    assert any(isinstance(t, ElasticGrid) for t in geo.transforms)


@pytest.mark.parametrize("kwargs", [{"grid": 1}, {"grid": 2.5}, {"sigma": -1.0}, {"sigma": float("nan")}, {"p": 2.0}])
def test_invalid_arguments(kwargs):
    with pytest.raises(ValueError):
        ElasticGrid(**kwargs)
