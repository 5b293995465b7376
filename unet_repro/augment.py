"""Data augmentation of the U-Net paper (Ronneberger et al. 2015, Sec. 3.1), on albumentations 2.x.

The paper augments with shifts, rotations and, above all, *elastic deformations*: "random displacement
vectors on a coarse 3 by 3 grid ... sampled from a Gaussian distribution with 10 pixels standard deviation.
Per-pixel displacements are then computed using bicubic interpolation."

Two pipelines, because the weight map must not see gray-value changes:

* ``geometric_transforms``: applied jointly to ``image`` (HxW), ``mask`` (HxW, labels) and ``weight``
  (HxW float32, declared as an additional *image* target so it is interpolated, not nearest-sampled);
* ``intensity_transforms``: applied to the image only.

``paper_augmentation`` bundles both into an ``Augmentation`` that is reproducible from an explicit seed.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Callable

import albumentations as A
import cv2
import numpy as np
from albumentations.core.type_definitions import Targets
from scipy import ndimage

__all__ = [
    "Augmentation",
    "ElasticGrid",
    "elastic_displacement",
    "geometric_transforms",
    "intensity_transforms",
    "paper_augmentation",
    "seed_compose",
]


@lru_cache(maxsize=32)
def _spline_matrix(n_out: int, n_in: int) -> np.ndarray:
    """(n_out, n_in) matrix M such that ``M @ v`` is the cubic-spline interpolant of the samples ``v``
    evaluated at ``n_out`` corner-aligned points ``t_i = i * (n_in - 1) / (n_out - 1)``.

    Interpolation is linear in the samples, so column k is the interpolant of the k-th unit vector.
    The 2-D tensor-product spline is separable, hence ``field = My @ D @ Mx.T`` equals
    ``ndimage.map_coordinates(D, ..., order=3, mode="mirror")`` on the full HxW grid, at ~1/100 of the cost.
    """
    t = np.linspace(0.0, n_in - 1.0, n_out) if n_out > 1 else np.zeros(1)
    cols = [ndimage.map_coordinates(e, [t], order=3, mode="mirror") for e in np.eye(n_in)]
    m = np.stack(cols, axis=1)
    m.flags.writeable = False  # cached and shared: must not be modified by callers
    return m


def _outer_sum(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """``left @ right.T`` for (H, g) and (W, g) with small g, as a sum of g outer products (no BLAS threads)."""
    out = np.zeros((left.shape[0], right.shape[0]), dtype=np.float64)
    for k in range(left.shape[1]):
        out += left[:, k, None] * right[None, :, k]
    return out.astype(np.float32)


def elastic_displacement(
    shape: tuple[int, int], grid: int, sigma: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Smooth random displacement field, as in the U-Net paper.

    Draws ``D_x, D_y ~ N(0, sigma^2)`` i.i.d. on a ``grid x grid`` lattice whose corner nodes sit on the
    image corners (node (i, j) at pixel ``(i (H-1)/(grid-1), j (W-1)/(grid-1))``), then interpolates each
    component to every pixel with bicubic *spline* interpolation (scipy ``order=3``, i.e. the interpolating
    cubic B-spline; ``mode="mirror"`` boundary, so the field has zero normal slope at the image border,
    consistent with the mirrored padding). The field passes exactly through the sampled grid values, so
    at a grid node ``std(dx) = sigma``.

    Args:
        shape: (H, W) of the image.
        grid: number of nodes per axis (>= 2).
        sigma: standard deviation of the node displacements, in pixels.
        rng: numpy Generator; the only source of randomness (two ``grid x grid`` normal draws).

    Returns:
        (dx, dy), float32 arrays of shape (H, W): displacement along x (columns) and y (rows).
    """
    h, w = int(shape[0]), int(shape[1])
    nodes = rng.normal(0.0, sigma, size=(2, grid, grid))
    my, mx = _spline_matrix(h, grid), _spline_matrix(w, grid)
    # (H, g) x (g, g) x (g, W) by broadcasting, not `@`: a BLAS matrix product would start one OpenBLAS thread per
    # core in every data-loading worker and oversubscribe the CPU (benchmarks/RESULTS.md, data pipeline).
    dx = _outer_sum(my @ nodes[0], mx)
    dy = _outer_sum(my @ nodes[1], mx)
    return dx, dy


def _remap(img: np.ndarray, map_x: np.ndarray, map_y: np.ndarray, interpolation: int) -> np.ndarray:
    """``out[y, x] = img[map_y[y, x], map_x[y, x]]`` with mirrored borders; keeps shape and dtype."""
    out = cv2.remap(img, map_x, map_y, interpolation=interpolation, borderMode=cv2.BORDER_REFLECT_101)
    return out.reshape(img.shape)  # cv2 drops a trailing singleton channel (HxWx1 -> HxW)


class ElasticGrid(A.DualTransform):
    """Elastic deformation of the U-Net paper: coarse Gaussian grid + bicubic upsampling + remap.

    With ``(dx, dy) = elastic_displacement((H, W), grid, sigma, rng)`` every target is resampled as
    ``out[y, x] = in[y + dy[y, x], x + dx[y, x]]`` (``cv2.remap``, ``BORDER_REFLECT_101``):

    * images (``image`` and additional targets declared as ``"image"``, e.g. the weight map), HxW or
      HxWxC, uint8 / uint16 / float32 / float64: BILINEAR interpolation, dtype preserved;
    * masks (``mask``, ``masks``): NEAREST neighbour, so the label set is preserved.

    The same field is used for all targets of one call. Randomness comes only from ``self.random_generator``
    (set by ``A.Compose(seed=...)``, ``Compose.set_random_seed`` or ``seed_compose``). ``sigma=0`` is the
    exact identity.
    Bounding boxes and keypoints are not supported.

    Args:
        grid: nodes per axis of the coarse displacement grid (>= 2). Paper: 3.
        sigma: std of the node displacements in pixels (>= 0). Paper: 10.
        p: probability of applying the transform.
    """

    _targets = (Targets.IMAGE, Targets.MASK, Targets.VOLUME, Targets.MASK3D)

    def __init__(self, grid: int = 3, sigma: float = 10.0, p: float = 0.5):
        # Validated by hand (no pydantic InitSchema) to give short, explicit error messages.
        if isinstance(grid, bool) or not isinstance(grid, (int, np.integer)) or grid < 2:
            raise ValueError(f"ElasticGrid: grid must be an integer >= 2, got {grid!r}")
        if not np.isfinite(sigma) or sigma < 0:
            raise ValueError(f"ElasticGrid: sigma must be a finite number >= 0, got {sigma!r}")
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"ElasticGrid: p must be in [0, 1], got {p!r}")
        super().__init__(p=p)
        self.grid = int(grid)
        self.sigma = float(sigma)

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        """Build the sampling maps once per call, shared by every target (``params["shape"]`` = image shape)."""
        if self.sigma == 0:
            return {"map_x": None, "map_y": None}  # identity: no draw, no resampling
        h, w = params["shape"][:2]
        dx, dy = elastic_displacement((h, w), self.grid, self.sigma, self.random_generator)
        ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
        return {"map_x": xs + dx, "map_y": ys + dy}

    def apply(self, img: np.ndarray, map_x: np.ndarray | None, map_y: np.ndarray | None, **params: Any) -> np.ndarray:
        """Image-like targets (image, additional "image" targets such as the weight map): bilinear."""
        if map_x is None:
            return img
        return _remap(img, map_x, map_y, cv2.INTER_LINEAR)

    def apply_to_mask(
        self, mask: np.ndarray, map_x: np.ndarray | None, map_y: np.ndarray | None, **params: Any
    ) -> np.ndarray:
        """Label targets: nearest neighbour keeps masks binary / within their label set.
        (``masks`` goes through the base class, which stacks ``apply_to_mask`` over the first axis.)"""
        if map_x is None:
            return mask
        return _remap(mask, map_x, map_y, cv2.INTER_NEAREST)

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("grid", "sigma")


def seed_compose(compose: A.Compose, seed: int) -> A.Compose:
    """Seed every transform of ``compose`` from ONE numpy and ONE python stream derived from ``seed``.

    Why not ``compose.set_random_seed(seed)`` / ``A.Compose(seed=seed)``: in albumentations 2.0.8 these
    give each child transform its *own* generator seeded with the *same* integer, so all children draw
    identical numbers. E.g. HorizontalFlip and VerticalFlip (both p=0.5) then always fire together, which
    is a 180-degree rotation: mirrored samples never occur, and Affine's p-draw equals theirs as well.
    ``set_random_state`` shares one generator, so the draws are sequential and independent.
    """
    compose.set_random_state(np.random.default_rng(seed), random.Random(seed))
    return compose


def geometric_transforms(
    *,
    elastic_p: float = 1.0,
    elastic_sigma: float = 10.0,
    elastic_grid: int = 3,
    shift_limit: float = 0.05,
    rotate_limit: float = 45.0,
    affine_p: float = 0.5,
    flip_p: float = 0.5,
    seed: int | None = None,
) -> A.Compose:
    """Geometric augmentation applied jointly to ``image``, ``mask`` and ``weight`` (all HxW).

    Order: lossless dihedral moves first (flips, 90-degree rotations: EM data is isotropic; the three
    together give a uniform draw from the 8 symmetries of the square), then a small shift + rotation
    (``A.Affine``, translation up to ``shift_limit`` of the size, rotation in ``[-rotate_limit, rotate_limit]``
    degrees), then the paper's elastic deformation. Borders are mirrored everywhere (like the paper's
    overlap-tile padding); masks use nearest neighbour. Contains no intensity transform: ``weight`` is
    declared as an additional *image* target and goes through every step.

    Note: RandomRotate90 swaps H and W of non-square inputs; the training crops are square (572x572).
    ``seed`` (optional) seeds the pipeline through ``seed_compose``.
    """
    compose = A.Compose(
        [
            A.HorizontalFlip(p=flip_p),
            A.VerticalFlip(p=flip_p),
            A.RandomRotate90(p=1.0),
            A.Affine(
                translate_percent=(-shift_limit, shift_limit),
                rotate=(-rotate_limit, rotate_limit),
                interpolation=cv2.INTER_LINEAR,
                mask_interpolation=cv2.INTER_NEAREST,
                border_mode=cv2.BORDER_REFLECT_101,
                p=affine_p,
            ),
            ElasticGrid(grid=elastic_grid, sigma=elastic_sigma, p=elastic_p),
        ],
        additional_targets={"weight": "image"},
    )
    return compose if seed is None else seed_compose(compose, seed)


def intensity_transforms(
    *,
    brightness_limit: float = 0.1,
    contrast_limit: float = 0.1,
    gamma_limit: tuple[float, float] = (80.0, 120.0),
    noise_std_range: tuple[float, float] = (0.01, 0.03),
    p: float = 0.5,
    noise_p: float = 0.2,
    seed: int | None = None,
) -> A.Compose:
    """Gray-value variation for the image only (HxW uint8, or float32 in [0, 1]).

    ``RandomBrightnessContrast`` (limits are fractions of the max value), ``RandomGamma``
    (``gamma_limit`` in percent: (80, 120) -> gamma in [0.8, 1.2]) and light ``GaussNoise`` (``std_range``
    is a fraction of the max value: 0.01-0.03 of 255 is about 2.5-7.7 gray levels).
    These transforms clip float images to [0, 1], hence the range requirement.
    ``seed`` (optional) seeds the pipeline through ``seed_compose``.
    """
    compose = A.Compose(
        [
            A.RandomBrightnessContrast(brightness_limit=brightness_limit, contrast_limit=contrast_limit, p=p),
            A.RandomGamma(gamma_limit=gamma_limit, p=p),
            A.GaussNoise(std_range=noise_std_range, p=noise_p),
        ]
    )
    return compose if seed is None else seed_compose(compose, seed)


@dataclass
class Augmentation:
    """Geometric pipeline on (image, mask, weight), then intensity pipeline on the image.

    Both composes are re-seeded on every call (``seed_compose``), so a sample's augmentation is a pure
    function of (inputs, seed), independent of the global RNGs, of call order and of DataLoader worker
    forking (derive the seed from e.g. (epoch, sample index)).
    """

    geometric: A.Compose
    intensity: A.Compose | None = None

    def __call__(
        self, image: np.ndarray, mask: np.ndarray, weight: np.ndarray | None, seed: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Args: image HxW (uint8, or float32 in [0, 1]), mask HxW uint8 labels, weight HxW float32 or None (a loss
        without weight map), all with the same HxW; seed: non-negative int. Returns the augmented (image, mask,
        weight); the image and mask do not depend on whether a weight map is given."""
        shapes = [a.shape[:2] for a in (image, mask, weight) if a is not None]
        if len(set(shapes)) > 1:
            raise ValueError(f"image/mask/weight sizes differ: {', '.join(map(str, shapes))}")
        # Two independent streams from one seed (seed and seed+1 would make the intensity stream of
        # sample i equal the geometric stream of sample i+1).
        geo_seed, int_seed = (int(s) for s in np.random.SeedSequence(seed).generate_state(2))
        seed_compose(self.geometric, geo_seed)
        out = self.geometric(image=image, mask=mask, **({} if weight is None else {"weight": weight}))
        image = out["image"]
        if self.intensity is not None:
            seed_compose(self.intensity, int_seed)
            image = within_unit_range(image, lambda x: self.intensity(image=x)["image"])
        return image, out["mask"], out.get("weight")


def within_unit_range(image: np.ndarray, transform: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """`transform` (the intensity transforms, which work on uint8 or on floats in [0, 1] and clip to that range)
    applied to a float image of any range (e.g. percentile-normalised own data, which runs a little below 0 and
    above 1): mapped affinely onto [0, 1] by its own minimum and maximum, transformed, mapped back. Images already
    in range (and uint8 ones) are transformed as they are."""
    if image.dtype.kind != "f" or (image.min() >= 0 and image.max() <= 1):
        return transform(image)
    lo, hi = float(image.min()), float(image.max())
    scaled = ((image - lo) / (hi - lo)).astype(np.float32)
    return (transform(scaled) * (hi - lo) + lo).astype(image.dtype)


def paper_augmentation(
    *,
    elastic_p: float = 1.0,
    elastic_sigma: float = 10.0,
    elastic_grid: int = 3,
    shift_limit: float = 0.05,
    rotate_limit: float = 45.0,
    intensity: bool = True,
) -> Augmentation:
    """The paper's augmentation with the defaults above (intensity transforms optional)."""
    geometric = geometric_transforms(
        elastic_p=elastic_p,
        elastic_sigma=elastic_sigma,
        elastic_grid=elastic_grid,
        shift_limit=shift_limit,
        rotate_limit=rotate_limit,
    )
    return Augmentation(geometric, intensity_transforms() if intensity else None)
