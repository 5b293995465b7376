"""The network's input scaling: how the gray values of an image become the numbers a network sees, for training and
prediction alike.

Two named rules (`RULES`); a run records the name of its rule and prediction applies the same one:

* ``"range"`` (ISBI-2012 and PH2): the dtype's range to [0, 1]: uint8 / 255, uint16 / 65535,
  bool as 0/1, float as it is (expected in [0, 1]). The same scaling for every image, so an image's absolute
  brightness is kept. Other integer dtypes (int16, uint32, ...) have no range this rule could take: refused.
* ``"percentile"`` (own data, the folder task's presets: microscopy images, 8-bit or 12/16-bit and float ones whose
  values use only part of the dtype's range): per image, ``(x - p_low) / (p_high - p_low)`` with ``p_low``, ``p_high`` the 1st and 99.8th
  percentiles of all its pixels, all channels together (so that the ratios between an RGB image's channels
  survive), not clipped: a few pixels lie below 0 or above 1. As csbdeep/StarDist's ``normalize(x, 1, 99.8)``.
  Guard for (nearly) constant images: when ``p_high == p_low`` the image's minimum and maximum are used instead,
  and an image of one value becomes all 0.

The percentile rule must see a whole image: a training tile or a prediction window has other percentiles than
its image. So a data reader applies it to each whole image before tiles are cut (then the images are float32 and
`normalize(tile)` with the default rule leaves them as they are: `prepare_image`). Its output is not confined to
[0, 1]; the gray-value augmentation maps such a tile onto [0, 1] by its own range and back
(`unet_repro.augment.within_unit_range`).

Output: float32, the input's shape ((H, W) or (H, W, C)).
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from ..errors import DataError, UsageError

DEFAULT_RULE = "range"
PERCENTILES = (1.0, 99.8)


def scale_range(image: np.ndarray) -> np.ndarray:
    """The ``"range"`` rule: uint8 / 255, uint16 / 65535, bool as 0/1, float as it is; float32 out."""
    if image.dtype == np.uint8:
        return image.astype(np.float32) / 255.0
    if image.dtype == np.uint16:
        return image.astype(np.float32) / 65535.0
    if image.dtype == bool:
        return image.astype(np.float32)
    if np.issubdtype(image.dtype, np.floating):
        return image.astype(np.float32, copy=False)
    raise DataError(f"an image of dtype {image.dtype} has no range to scale by (the 'range' rule takes uint8, uint16 "
                    f"and float images); use the 'percentile' rule or convert the image to 16-bit")


def scale_percentile(image: np.ndarray, low: float = PERCENTILES[0], high: float = PERCENTILES[1]) -> np.ndarray:
    """The ``"percentile"`` rule: ``(x - p_low) / (p_high - p_low)`` over all pixels and channels of the image, not
    clipped; min and max instead when the percentiles coincide; all 0 for an image of one value. float32 out."""
    x = np.asarray(image, dtype=np.float64)
    lo, hi = np.percentile(x, [low, high])
    if hi <= lo:  # most pixels share one value (e.g. sparse bright spots on a flat background)
        lo, hi = float(x.min()), float(x.max())
    if hi <= lo:
        return np.zeros(x.shape, np.float32)
    return ((x - lo) / (hi - lo)).astype(np.float32)


#: The named rules. The name is what a run records and what prediction applies.
RULES: dict[str, Callable[[np.ndarray], np.ndarray]] = {"range": scale_range, "percentile": scale_percentile}

#: One line per rule, for a run's first lines.
RULE_LINES = {
    "range": "range (uint8 / 255, uint16 / 65535, float as it is)",
    "percentile": f"percentile (per image, its percentiles {PERCENTILES[0]:g} and {PERCENTILES[1]:g} over all "
                  f"pixels and channels -> 0 and 1, not clipped)",
}


def check_rule(rule: str) -> str:
    """`rule` if it names a rule, else `UsageError` listing the rules."""
    if rule not in RULES:
        raise UsageError(f"unknown intensity rule {rule!r} (--normalization); choose one of {', '.join(RULES)}")
    return rule


def normalize(image: np.ndarray, rule: str = DEFAULT_RULE) -> np.ndarray:
    """The network's input scaling, used for training and prediction alike: `image` scaled by the named `rule`
    (see the module docstring); the default ``"range"`` turns uint8 gray values into float32 in [0, 1]."""
    return RULES[check_rule(rule)](np.asarray(image))


def prepare_image(image: np.ndarray, rule: str) -> np.ndarray:
    """An image as training tiles and prediction take it, the one place where `rule` is applied to a whole image:
    uint8 under "range" as it is (the tiles scale it, bit for bit as ISBI-2012 and PH2 always were), else float32
    scaled whole by `rule` (a per-image rule must see the whole image, not a tile)."""
    if rule == "range" and image.dtype == np.uint8:
        return image
    return normalize(image, rule)
