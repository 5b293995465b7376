"""PH2 dermoscopy data (Mendonça et al. 2013): its original layout, the prepared layout, one resize, a fixed split.

The protocol of the studies this project compares with: every image resized to 256 x 256 (`resize_case`: area
averaging, anti-aliased), its mask resized the same way and thresholded at 0.5, and a seeded random split of 100 /
50 / 50 images (train / validation / test; `split_ph2` decides it from the case names, it is never stored with the
data).

`load_ph2(root, size)` reads a PH2 folder in either of two layouts (``datasets/README.md``) and gives the same
arrays from both:

- **original**, as the PH2 archive unpacks::

      PH2 Dataset images/IMDxxx/IMDxxx_Dermoscopic_Image/<one image: BMP or PNG>
      PH2 Dataset images/IMDxxx/IMDxxx_lesion/<one mask: BMP, 1-bit or 24-bit>

  Each case is decoded and resized once; the arrays are cached in ``$UNET_REPRO_CACHE`` (default
  ``~/.cache/unet_repro``) under a key made of the files' names, sizes and times, so changed data is read again.

- **prepared**, written from the original by `prepare_ph2` (``python datasets/prepare_ph2.py``) and recognised by
  its ``manifest.json``::

      manifest.json        format name and version, size, resize rule, case names, the sha256 of every source file
                           it was made from and of every file written
      images/IMDxxx.png    the resized image: RGB, size x size, 8 bits per channel, lossless PNG
      masks/IMDxxx.png     the resized mask: gray, size x size, lesion 255, background 0, lossless PNG

  It holds exactly the arrays the original layout gives at its size, in about 21 MB at 256 x 256 (the original
  takes 150 MB), so it travels compactly, e.g. to a machine that has only a checkout of this repository. Reading it
  checks it against its manifest: another format or version, another size than asked, a listed file that is
  missing, changed (sha256) or not a size x size image, and an image or mask file the manifest does not list are
  each refused by name (`DataError`). The manifest is written last, so an interrupted preparation leaves a folder
  that is not taken for a prepared layout.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from ..version import __version__
from ..errors import DataError, DataNotFoundError, UsageError
from ..files import atomic_write
from .masks import binarize_mask
from .split import seeded_split

IMAGES_DIR = "PH2 Dataset images"
IMAGE_SUFFIXES = (".bmp", ".png", ".jpg", ".jpeg", ".tif", ".tiff")
MANIFEST = "manifest.json"
PREPARED_FORMAT = "unet_repro-ph2-prepared"
PREPARED_VERSION = 1
RESIZE_RULE = ("image: cv2.resize to size x size with INTER_AREA (area averaging); mask: the 0/1 mask as float32 "
               "resized the same way, lesion where >= 0.5")
# A case name is also a file name in the prepared layout: no separators, no "..".
CASE_NAME = re.compile(r"IMD[A-Za-z0-9_-]*")


@dataclass
class PH2Data:
    """``images`` (N, size, size, 3) uint8 RGB, ``masks`` (N, size, size) uint8 in {0, 1} (lesion = 1) and the
    image ``names`` (``IMD002``, ...) in sorted order."""

    images: np.ndarray
    masks: np.ndarray
    names: list[str]


# -- the original layout -------------------------------------------------------------------------------------------

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


def case_files(case_dir: Path) -> tuple[Path, Path]:
    """The image file and the lesion mask file of one case folder of the original layout."""
    name = case_dir.name
    return (_one_file(case_dir / f"{name}_Dermoscopic_Image", "dermoscopic image", name),
            _one_file(case_dir / f"{name}_lesion", "lesion mask", name))


def read_case(case_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """One PH2 case at full resolution: RGB image (H, W, 3) uint8 and binary lesion mask (H, W) uint8."""
    image_path, mask_path = case_files(case_dir)
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


def _case_dirs(root: Path) -> list[Path]:
    """The IMDxxx case folders of the original layout under `root`, sorted (none when it is not there)."""
    images = root / IMAGES_DIR
    if not images.is_dir():
        return []
    return sorted(p for p in images.iterdir() if p.is_dir() and p.name.startswith("IMD"))


def _cases(root: Path) -> list[Path]:
    cases = _case_dirs(root)
    if not cases:
        if (root / IMAGES_DIR).is_dir():
            raise DataNotFoundError(f"{root / IMAGES_DIR} holds no IMDxxx case folders")
        raise DataNotFoundError(f"PH2 folder {root / IMAGES_DIR} not found, nor a prepared layout's {MANIFEST}; "
                                f"expected the original layout '{IMAGES_DIR}/IMDxxx/...' or one written by "
                                f"datasets/prepare_ph2.py under {root} (see datasets/README.md, or pass --data-root / "
                                f"set UNET_REPRO_DATA)")
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
    """All PH2 cases under `root` (either layout, see the module docstring), resized to ``size`` x ``size``, in
    sorted name order.

    A prepared layout is read and checked against its manifest (it must be of this `size`). The original layout's
    decoded, resized arrays are cached once in `cache_dir` (default ``$UNET_REPRO_CACHE`` or
    ``~/.cache/unet_repro``; the data folder itself may be read-only) and reused by every run of a grid.
    """
    root = Path(root)
    if is_prepared(root):
        return read_prepared(root, size)
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


def case_names(root: Path | str, size: int) -> list[str]:
    """The case names of the PH2 folder `root` without decoding any image: a prepared layout's (its manifest and
    files checked as far as that is cheap: `read_manifest`), or the original layout's case folders (none when
    neither layout is there)."""
    root = Path(root)
    if is_prepared(root):
        return list(read_manifest(root, size).cases)
    return [c.name for c in _case_dirs(root)]


def split_ph2(names: list[str], seed: int = 0, sizes: tuple[int, int, int] = (100, 50, 50)) -> dict[str, list[str]]:
    """The PH2 protocol's seeded random train / validation / test split of the case names (100 / 50 / 50)."""
    return seeded_split(names, seed, sizes)


# -- the prepared layout -------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Manifest:
    """What a prepared layout's ``manifest.json`` records (besides its format, version and descriptions)."""

    size: int
    cases: tuple[str, ...]
    sources: dict[str, str]  # path under the original PH2 folder ("PH2 Dataset images/...") -> sha256
    files: dict[str, str]  # path under the prepared folder ("images/IMD002.png") -> sha256


def is_prepared(root: Path | str) -> bool:
    """Whether `root` holds a prepared layout (it has a ``manifest.json``; its contents are checked when read)."""
    return (Path(root) / MANIFEST).is_file()


def prepared_files(case: str) -> tuple[str, str]:
    """The image and mask file of a case in the prepared layout, relative to its folder."""
    return f"images/{case}.png", f"masks/{case}.png"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG", compress_level=9)
    return buffer.getvalue()


def prepare_ph2(source: Path | str, dest: Path | str, size: int = 256) -> PH2Data:
    """Write the prepared layout of the original PH2 folder `source` into `dest` (new or empty) at ``size`` x
    ``size``: the PNG files, then ``manifest.json`` (atomically, last). Returns the arrays written, which
    `load_ph2(dest, size)` gives back."""
    source, dest = Path(source), Path(dest)
    if is_prepared(source):
        raise UsageError(f"{source} is already a prepared layout ({MANIFEST}); prepare from the original PH2 folder "
                         f"(the one holding '{IMAGES_DIR}/')")
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise UsageError(f"{dest} exists and is not an empty folder; name a new folder for the prepared layout (one "
                         f"without {MANIFEST} is what an interrupted preparation leaves: delete it)")
    cases = _cases(source)
    for sub in ("images", "masks"):
        (dest / sub).mkdir(parents=True, exist_ok=True)
    sources, files, images, masks = {}, {}, [], []
    for case in cases:
        for path in case_files(case):
            sources[path.relative_to(source).as_posix()] = _sha256(path.read_bytes())
        image, mask = resize_case(*read_case(case), size)
        for rel, array in zip(prepared_files(case.name), (image, mask * 255)):
            blob = _png(array)
            (dest / rel).write_bytes(blob)
            files[rel] = _sha256(blob)
        images.append(image)
        masks.append(mask)
    names = [c.name for c in cases]
    _write_manifest(dest, Manifest(size, tuple(names), sources, files))
    return PH2Data(np.stack(images), np.stack(masks), names)


def _write_manifest(dest: Path, manifest: Manifest) -> None:
    record = {
        "format": PREPARED_FORMAT, "version": PREPARED_VERSION, "size": manifest.size, "resize": RESIZE_RULE,
        "images": "images/<case>.png: RGB, size x size, 8 bits per channel, lossless PNG",
        "masks": "masks/<case>.png: gray, size x size, lesion 255, background 0, lossless PNG",
        "split": "not stored: unet_repro.data.ph2.split_ph2 decides it from the case names and the split seed",
        "made_with": {"unet_repro": __version__, "opencv": cv2.__version__, "pillow": Image.__version__},
        "cases": list(manifest.cases), "sources": manifest.sources, "files": manifest.files,
    }
    with atomic_write(dest / MANIFEST) as f:
        f.write((json.dumps(record, indent=1) + "\n").encode())


def read_manifest(root: Path | str, size: int | None = None) -> Manifest:
    """The manifest of the prepared layout at `root`, checked: its format and version, its size (with `size`: the
    one asked for), that its files are those of its cases and are all there, and that ``images/`` and ``masks/``
    hold no other image. The files' contents are checked when they are read (`read_prepared`)."""
    root = Path(root)
    path = root / MANIFEST
    redo = "prepare it again from the original PH2 folder with datasets/prepare_ph2.py"
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise DataError(f"{path} cannot be read as JSON ({e}); {redo}") from None
    found = raw.get("format") if isinstance(raw, dict) else None
    if found != PREPARED_FORMAT:
        raise DataError(f"{path} is not a prepared PH2 manifest (format {found!r}, expected {PREPARED_FORMAT!r}); "
                        f"{redo}")
    if raw.get("version") != PREPARED_VERSION:
        raise DataError(f"{path} is version {raw.get('version')!r} of {PREPARED_FORMAT}, this unet_repro reads "
                        f"version {PREPARED_VERSION}; {redo}")
    try:
        manifest = Manifest(int(raw["size"]), tuple(str(c) for c in raw["cases"]),
                            {str(k): str(v) for k, v in raw["sources"].items()},
                            {str(k): str(v) for k, v in raw["files"].items()})
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise DataError(f"{path} lacks or garbles an entry ({type(e).__name__}: {e}); {redo}") from None
    bad = [c for c in manifest.cases if not CASE_NAME.fullmatch(c)]
    listed = {rel for case in manifest.cases for rel in prepared_files(case)}
    if not manifest.cases or bad or len(set(manifest.cases)) < len(manifest.cases) or set(manifest.files) != listed:
        names = f"; bad case names: {', '.join(bad[:3])}" if bad else ""
        raise DataError(f"{path}: its files are not the image and mask of each of its {len(manifest.cases)} cases "
                        f"(each listed once){names}; {redo}")
    if size is not None and manifest.size != size:
        raise DataError(f"{root} holds PH2 prepared at {manifest.size}x{manifest.size}, not the {size}x{size} asked "
                        f"for; pass --size {manifest.size}, or prepare the original PH2 folder at {size} with "
                        f"`python datasets/prepare_ph2.py --from ORIGINAL --dest NEW_FOLDER --size {size}`")
    _check_listing(root, manifest, redo)
    return manifest


def _check_listing(root: Path, manifest: Manifest, redo: str) -> None:
    """Every listed file is there, and no unlisted image or mask lies beside them (it would be silently left out)."""
    missing = sorted(rel for rel in manifest.files if not (root / rel).is_file())
    if missing:
        raise DataNotFoundError(f"{root / missing[0]} is missing" + (f" (and {len(missing) - 1} more files)"
                                                                      if len(missing) > 1 else "")
                                + f": {MANIFEST} lists it; copy the whole prepared folder again, or {redo}")
    for sub in ("images", "masks"):
        extra = sorted(p.name for p in (root / sub).iterdir()
                       if p.suffix.lower() in IMAGE_SUFFIXES and f"{sub}/{p.name}" not in manifest.files)
        if extra:
            raise DataError(f"{root / sub / extra[0]} is not listed in {MANIFEST}"
                            + (f" (nor are {len(extra) - 1} more files)" if len(extra) > 1 else "")
                            + f"; remove it, or add its case to the original PH2 folder and prepare it again "
                              f"with datasets/prepare_ph2.py")


def _read_listed(root: Path, rel: str, manifest: Manifest, mode: str) -> np.ndarray:
    """A listed PNG file of the prepared layout, its sha256 checked before it is decoded."""
    path = root / rel
    data = path.read_bytes()
    if _sha256(data) != manifest.files[rel]:
        raise DataError(f"{path} has changed since it was prepared (its sha256 is not the one in {MANIFEST}); copy "
                        f"the prepared folder again, or prepare it again with datasets/prepare_ph2.py")
    try:
        with Image.open(io.BytesIO(data)) as im:
            array = np.array(im)
            found = im.mode
    except Exception as e:  # PIL raises several types for broken files
        raise DataError(f"{path}: cannot be read as an image ({e})") from None
    side = manifest.size
    if found != mode or array.shape[:2] != (side, side):
        raise DataError(f"{path} is a {array.shape[1]}x{array.shape[0]} {found} image; a prepared layout of size "
                        f"{side} holds {side}x{side} {mode} ones")
    return array


def read_prepared(root: Path | str, size: int) -> PH2Data:
    """The PH2 arrays of the prepared layout at `root`, which must be of ``size`` x ``size``; every file is checked
    against the manifest (`read_manifest`, then each file's sha256) and refused by name when it does not match."""
    root = Path(root)
    manifest = read_manifest(root, size)
    images, masks = [], []
    for case in manifest.cases:
        image_rel, mask_rel = prepared_files(case)
        images.append(_read_listed(root, image_rel, manifest, "RGB"))
        mask = _read_listed(root, mask_rel, manifest, "L")
        if not np.isin(mask, (0, 255)).all():
            raise DataError(f"{root / mask_rel} holds values other than 0 and 255; a prepared mask is lesion 255, "
                            f"background 0")
        masks.append((mask == 255).astype(np.uint8))
    return PH2Data(np.stack(images), np.stack(masks), list(manifest.cases))
