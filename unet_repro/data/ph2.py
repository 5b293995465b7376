"""PH2 dermoscopy data (Mendonça et al. 2013): reading the original layout, resizing once, a fixed split.

Layout under the data root (see ``datasets/README.md``)::

    PH2 Dataset images/IMDxxx/IMDxxx_Dermoscopic_Image/<one image: BMP or PNG>
    PH2 Dataset images/IMDxxx/IMDxxx_lesion/<one mask: BMP, 1-bit or 24-bit>

The default protocol of the studies this project compares with: every image resized to 256 x 256 (anti-aliased),
its mask resized the same way and thresholded at 0.5, and a seeded random split of 100 / 50 / 50 images
(train / validation / test).
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from ..errors import DataError, DataNotFoundError
from .masks import binarize_mask
from .split import seeded_split

IMAGES_DIR = "PH2 Dataset images"
IMAGE_SUFFIXES = (".bmp", ".png", ".jpg", ".jpeg", ".tif", ".tiff")


@dataclass
class PH2Data:
    """``images`` (N, size, size, 3) uint8 RGB, ``masks`` (N, size, size) uint8 in {0, 1} (lesion = 1) and the
    image ``names`` (``IMD002``, ...) in sorted order."""

    images: np.ndarray
    masks: np.ndarray
    names: list[str]


def _one_file(folder: Path, what: str, case: str) -> Path:
    if not folder.is_dir():
        raise DataNotFoundError(f"{case}: {what} folder {folder} not found")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DataNotFoundError(f"{case}: no {what} file in {folder}")
    if len(files) > 1:
        raise DataError(f"{case}: {folder} holds {len(files)} {what} files ({', '.join(p.name for p in files)}); "
                         f"expected one")
    return files[0]


def _read(path: Path, mode: str) -> np.ndarray:
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert(mode))
    except Exception as e:  # PIL raises several types for broken files
        raise DataError(f"{path}: cannot be read as an image ({e})") from None


def read_case(case_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """One PH2 case at full resolution: RGB image (H, W, 3) uint8 and binary lesion mask (H, W) uint8."""
    name = case_dir.name
    image_path = _one_file(case_dir / f"{name}_Dermoscopic_Image", "dermoscopic image", name)
    mask_path = _one_file(case_dir / f"{name}_lesion", "lesion mask", name)
    image = _read(image_path, "RGB")
    mask = binarize_mask(_read(mask_path, "L"), mask_path)  # 1-bit masks read as 0/255, 24-bit ones as 0/255 gray
    if mask.shape != image.shape[:2]:
        raise DataError(f"{mask_path} is {mask.shape[1]}x{mask.shape[0]} but its image {image_path} is "
                         f"{image.shape[1]}x{image.shape[0]}")
    return image, mask


def resize_case(image: np.ndarray, mask: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Anti-aliased resize (area averaging) of the image; the mask is averaged the same way and thresholded at 0.5."""
    img = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)
    m = cv2.resize(mask.astype(np.float32), (size, size), interpolation=cv2.INTER_AREA) >= 0.5
    return img, m.astype(np.uint8)


def _cases(root: Path) -> list[Path]:
    images = root / IMAGES_DIR
    if not images.is_dir():
        raise DataNotFoundError(f"PH2 folder {images} not found; expected the original layout '{IMAGES_DIR}/IMDxxx/"
                                f"...' under {root} (see datasets/README.md, or pass --data-root / set "
                                f"UNET_REPRO_DATA)")
    cases = sorted(p for p in images.iterdir() if p.is_dir() and p.name.startswith("IMD"))
    if not cases:
        raise DataNotFoundError(f"{images} holds no IMDxxx case folders")
    return cases


def _cache_path(root: Path, cases: list[Path], size: int, cache_dir: Path) -> Path:
    """A cache file named after the data it holds: case names, file sizes and times, and the size."""
    h = hashlib.sha1(f"{root.resolve()}|{size}".encode())
    for case in cases:
        for f in sorted(case.rglob("*")):
            if f.is_file():
                st = f.stat()
                h.update(f"{f.relative_to(root)}|{st.st_size}|{st.st_mtime_ns}".encode())
    return cache_dir / f"ph2_{size}_{h.hexdigest()[:16]}.npz"


def default_cache_dir() -> Path:
    return Path(os.environ.get("UNET_REPRO_CACHE", Path.home() / ".cache" / "unet_repro"))


def load_ph2(root: Path | str, size: int = 256, cache_dir: Path | str | None = None) -> PH2Data:
    """All PH2 cases under `root`, resized to ``size`` x ``size``, in sorted name order.

    The decoded, resized arrays are cached once in `cache_dir` (default ``$UNET_REPRO_CACHE`` or
    ``~/.cache/unet_repro``; the data folder itself may be read-only) and reused by every run of a grid; the cache
    key covers the files' names, sizes and modification times, so changed data is read again.
    """
    root = Path(root)
    cases = _cases(root)
    cache = _cache_path(root, cases, size, Path(cache_dir) if cache_dir else default_cache_dir())
    if cache.exists():
        with np.load(cache) as z:
            return PH2Data(z["images"], z["masks"], [str(n) for n in z["names"]])
    images, masks = zip(*(resize_case(*read_case(case), size) for case in cases))
    data = PH2Data(np.stack(images), np.stack(masks), [c.name for c in cases])
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_name(f".{cache.name}.{os.getpid()}.tmp.npz")
    np.savez(tmp, images=data.images, masks=data.masks, names=np.array(data.names))
    os.replace(tmp, cache)  # atomic: a concurrent or killed run never sees half a cache
    return data


def split_ph2(names: list[str], seed: int = 0, sizes: tuple[int, int, int] = (100, 50, 50)) -> dict[str, list[str]]:
    """The PH2 protocol's seeded random train / validation / test split of the case names (100 / 50 / 50)."""
    return seeded_split(names, seed, sizes)
