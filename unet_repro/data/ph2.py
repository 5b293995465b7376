"""PH2 dermoscopy data (Mendonça et al. 2013): reading the original layout, resizing once, a fixed split.

Layout under the data root (see ``datasets/README.md``)::

    PH2 Dataset images/IMDxxx/IMDxxx_Dermoscopic_Image/<one image: BMP or PNG>
    PH2 Dataset images/IMDxxx/IMDxxx_lesion/<one mask: BMP, 1-bit or 24-bit>

The default protocol of the studies this project compares with: every image resized to 256 x 256 (anti-aliased),
its mask resized the same way and thresholded at 0.5, and a seeded random split of 100 / 50 / 50 images
(train / validation / test).

Where the data is not (a GPU machine that gets only the checkout), a *portable cache* stands in for it:
`save_ph2_cache` writes the resized arrays into one file (lossless PNG per image, bit-packed masks: 24 MB at
256 x 256), `write_ph2_standin` makes a data folder holding only the 200 empty case folders (what the PH2 task's
layout check looks at), and with ``UNET_REPRO_PH2_CACHE`` naming the file, `load_ph2` reads the arrays from it
instead of decoding the case folders. ``benchmarks/gpu_session.sh`` uses this (see ``benchmarks/GPU.md``).
"""
from __future__ import annotations

import hashlib
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from ..errors import DataError, DataNotFoundError
from ..files import atomic_write
from .masks import binarize_mask
from .split import seeded_split

IMAGES_DIR = "PH2 Dataset images"
IMAGE_SUFFIXES = (".bmp", ".png", ".jpg", ".jpeg", ".tif", ".tiff")
#: Names a portable cache file (`save_ph2_cache`) that `load_ph2` reads instead of the case folders.
PH2_CACHE_ENV = "UNET_REPRO_PH2_CACHE"
PORTABLE_FORMAT = "unet_repro-ph2-cache-1"


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

    With ``$UNET_REPRO_PH2_CACHE`` set, the arrays come from that portable cache file instead (`load_ph2_cache`; it
    must be of this `size`), and `root` needs no images: where it holds case folders (real ones or the empty ones
    of `write_ph2_standin`), their names must be the cache's. The file is trusted as it is: it is not compared
    with the images' contents.
    """
    root = Path(root)
    portable = os.environ.get(PH2_CACHE_ENV)
    if portable:
        data = load_ph2_cache(portable, size)
        if (root / IMAGES_DIR).is_dir():
            names = [c.name for c in _cases(root)]
            if names != data.names:
                raise DataError(f"{PH2_CACHE_ENV}={portable} holds {len(data.names)} cases ({data.names[0]} ... "
                                f"{data.names[-1]}) but {root / IMAGES_DIR} holds {len(names)} other ones; point "
                                f"{PH2_CACHE_ENV} at the cache of this data, or unset it to read the images")
        return data
    cases = _cases(root)
    cache = _cache_path(root, cases, size, Path(cache_dir) if cache_dir else default_cache_dir())
    if cache.exists():
        with np.load(cache) as z:
            return PH2Data(z["images"], z["masks"], [str(n) for n in z["names"]])
    images, masks = zip(*(resize_case(*read_case(case), size) for case in cases))
    data = PH2Data(np.stack(images), np.stack(masks), [c.name for c in cases])
    cache.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(cache) as f:  # a concurrent or killed run never sees half a cache
        np.savez(f, images=data.images, masks=data.masks, names=np.array(data.names))
    return data


def save_ph2_cache(data: PH2Data, path: Path | str) -> Path:
    """Write `data` (all images of one size) as a portable cache file for `load_ph2_cache`, atomically.

    One ``.npz`` without pickles: each image as lossless PNG (OpenCV), the masks bit-packed, the names, the size and
    a format tag: 24 MB for PH2 at 256 x 256, where a zlib-compressed ``.npz`` of the arrays takes 33 MB (what
    travels to a GPU machine is limited).
    """
    path = Path(path)
    images = np.ascontiguousarray(data.images)
    if images.ndim != 4 or images.shape[1] != images.shape[2] or images.dtype != np.uint8:
        raise ValueError(f"expected (N, size, size, C) uint8 images, got {images.shape} {images.dtype}")
    # OpenCV takes the RGB array for BGR and decodes it back to the same array: exact, no channel swap needed.
    blobs = []
    for image in images:
        ok, blob = cv2.imencode(".png", image)
        if not ok:
            raise ValueError("OpenCV could not encode an image as PNG")
        blobs.append(blob.ravel())
    offsets = np.cumsum([0] + [len(b) for b in blobs]).astype(np.int64)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as f:
        np.savez(f, format=np.array(PORTABLE_FORMAT), size=np.int64(images.shape[1]),
                 shape=np.array(images.shape, np.int64), png=np.concatenate(blobs), offsets=offsets,
                 masks=np.packbits(np.asarray(data.masks, bool)), names=np.array(data.names))
    return path


def load_ph2_cache(path: Path | str, size: int | None = None) -> PH2Data:
    """The PH2 arrays of a portable cache file written by `save_ph2_cache`; `DataError` when the file is not one,
    or (with `size`) holds images of another size."""
    path = Path(path)
    if not path.is_file():
        raise DataNotFoundError(f"PH2 cache file {path} not found ({PH2_CACHE_ENV}); write it with "
                                f"save_ph2_cache, e.g. `bash benchmarks/gpu_session.sh prepare-ph2-cache`")
    try:
        with np.load(path, allow_pickle=False) as z:
            if str(z["format"]) != PORTABLE_FORMAT:
                raise ValueError(f"format {z['format']}")
            shape = tuple(int(v) for v in z["shape"])
            png, offsets = z["png"], z["offsets"]
            masks = np.unpackbits(z["masks"], count=shape[0] * shape[1] * shape[2]).reshape(shape[:3])
            names = [str(n) for n in z["names"]]
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise DataError(f"{path} is not a PH2 cache file of save_ph2_cache ({e})") from None
    if size is not None and shape[1] != size:
        raise DataError(f"{path} holds PH2 at {shape[1]}x{shape[2]}, not the {size}x{size} asked for; write a cache "
                        f"of that size or pass --size {shape[1]}")
    flag = cv2.IMREAD_COLOR if shape[3] == 3 else cv2.IMREAD_UNCHANGED
    images = np.stack([cv2.imdecode(png[offsets[i]:offsets[i + 1]], flag) for i in range(shape[0])])
    return PH2Data(images.reshape(shape), masks.astype(np.uint8), names)


def write_ph2_standin(cache: Path | str, dest: Path | str) -> Path:
    """A stand-in PH2 data folder at `dest`: ``PH2 Dataset images/<name>/``, empty, for each case of the portable
    `cache` file, which is all the PH2 task's layout check looks at. Use it as ``--data-root`` with
    ``UNET_REPRO_PH2_CACHE`` naming the cache. Returns `dest`."""
    dest = Path(dest)
    for name in load_ph2_cache(cache).names:
        (dest / IMAGES_DIR / name).mkdir(parents=True, exist_ok=True)
    return dest


def split_ph2(names: list[str], seed: int = 0, sizes: tuple[int, int, int] = (100, 50, 50)) -> dict[str, list[str]]:
    """The PH2 protocol's seeded random train / validation / test split of the case names (100 / 50 / 50)."""
    return seeded_split(names, seed, sizes)
