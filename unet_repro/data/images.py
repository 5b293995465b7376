"""Images as microscopes, cameras and annotation tools write them: one reading rule for every image file.

Formats: PNG, TIFF, BMP, JPEG (`SUFFIXES`). A file holds one or more *planes*; a plane is one 2-D image, (H, W)
gray or (H, W, C) with C channels, in the file's own dtype (uint8, uint16, uint32, float32, ...): the intensity
rule (`unet_repro.data.intensity`) decides the scaling, not the reader. Nothing is dropped silently: what cannot be
read with certainty is refused by name (`DataError`) with what to do.

1. TIFF (tifffile): the file's first series (a file of several series, e.g. pages of different sizes, is refused).
   Its axes (``series.axes``: 'YX', 'YXS', 'CYX', 'YXC', 'ZYX', 'IYX', 'QYX', 'TZCYX', ...) are read as:

   - Y, X: the plane's rows and columns;
   - C (channels) or S (samples: RGB, or channels stored per pixel) move last: (H, W, C); a file with both is
     refused;
   - I, Z, T, Q (a generic page sequence, depth, time, unnamed pages): each plane along them is one image, in the
     file's order (T before Z for 'TZYX'), named ``file.tif[k]`` (`plane_name`);
   - any other axis longer than 1 (angle, phase, lambda, mosaic, ...) is refused by name.

   Photometric interpretation: gray (MINISBLACK) and RGB as stored; PALETTE as its colours (images) or its
   indices (masks); MINISWHITE (0 = white), CMYK, YCbCr and others are refused. 1-bit TIFFs become uint8 0/255.
   A compressed TIFF whose codec tifffile lacks (LZW, JPEG, PackBits without ``imagecodecs``) is decoded page by
   page with Pillow instead.
2. PNG, BMP, JPEG (Pillow; a 16-bit RGB(A) PNG with OpenCV, because Pillow reduces it to 8 bits): one plane.
   Gray (8 or 16-bit) and RGB as stored; 1-bit -> uint8 0/255; palette -> RGB (images) or the palette indices
   (masks); CMYK / YCbCr JPEG -> RGB. A file of several frames (animated PNG) is refused.
3. Alpha (RGBA, gray + alpha, an RGB TIFF with a 4th sample): an alpha that is the same everywhere (all opaque, or
   all 0 as writers leave an unused alpha) is dropped; an alpha that varies is refused, since what it hides
   cannot be read.

`read_image_file` returns an `ImageFile`: the planes and what was read (axes, pages, channels, dtype, what was
converted); `describe_images` turns a set of them into the run's first lines.
"""
from __future__ import annotations

import contextlib
import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import cv2
import numpy as np
import tifffile
from PIL import Image

from ..errors import DataError, DataNotFoundError

SUFFIXES = (".png", ".tif", ".tiff", ".bmp", ".jpg", ".jpeg")
TIFF_SUFFIXES = (".tif", ".tiff")
LOSSY_SUFFIXES = (".jpg", ".jpeg")
PAGE_AXES = "IZTQ"  # each plane along these axes is one image
CHANNEL_AXES = "CS"  # these move last
AXIS_NAMES = {"A": "angle", "P": "phase", "R": "tile", "H": "lifetime", "E": "lambda", "L": "exposure",
              "V": "event", "M": "mosaic", "F": "frequency", "O": "other"}


@dataclass(frozen=True)
class ImageFile:
    """One file as read: its ``planes`` ((H, W) or (H, W, C) arrays in the file's dtype), the ``axes`` the file
    declared ('YX' for a gray PNG, 'YXS' for RGB, 'ZCYX' for an ImageJ hyperstack, ...) and what was ``converted``
    on reading ('' when nothing; e.g. 'palette -> RGB', 'opaque alpha dropped')."""

    path: Path
    planes: tuple[np.ndarray, ...]
    axes: str
    converted: str = ""

    @property
    def pages(self) -> int:
        return len(self.planes)

    @property
    def channels(self) -> int:
        return 1 if self.planes[0].ndim == 2 else self.planes[0].shape[2]

    @property
    def dtype(self) -> np.dtype:
        return self.planes[0].dtype

    def names(self, full: bool = False) -> list[str]:
        """Each plane's name: the file's name (or path, with `full`), with ``[k]`` for the pages of a stack."""
        return [plane_name(self.path, k, self.pages, full) for k in range(self.pages)]


def plane_name(path: Path, index: int, pages: int, full: bool = False) -> str:
    """``name.tif`` for a one-plane file, ``name.tif[3]`` for page 3 of a stack (the path itself with `full`)."""
    base = str(path) if full else path.name
    return base if pages == 1 else f"{base}[{index}]"


def read_image_file(path: Path | str, palette: str = "rgb") -> ImageFile:
    """Read every plane of an image file by the rule of the module docstring; `DataError` naming the file for what
    cannot be read with certainty. ``palette``: "rgb" (images: a palette's colours) or "index" (masks: its
    indices)."""
    path = Path(path)
    if not path.is_file():
        raise DataNotFoundError(f"image {path} not found")
    if path.suffix.lower() in TIFF_SUFFIXES:
        return _read_tiff(path, palette)
    return _read_pillow(path, palette)


def some_names(items: Sequence[str], n: int = 3) -> str:
    """The first `n` names, and how many more."""
    return ", ".join(items[:n]) + (f" and {len(items) - n} more" if len(items) > n else "")


def list_image_files(folder: Path, what: str, suffixes: tuple[str, ...] = SUFFIXES) -> list[Path]:
    """The image files of `folder` (sorted by name); `DataError` naming hidden files and files that are not
    images, which would otherwise be skipped silently. Subfolders are not read."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataNotFoundError(f"{what} folder {folder} not found; pass the folder that holds your {what}")
    entries = sorted(p for p in folder.iterdir() if p.is_file())
    hidden = [p.name for p in entries if p.name.startswith(".")]
    other = [p.name for p in entries if not p.name.startswith(".") and p.suffix.lower() not in suffixes]
    if hidden or other:
        parts = ([f"hidden file(s) {some_names(hidden)}"] if hidden else []) + \
                ([f"file(s) that are not {what} ({', '.join(suffixes)}): {some_names(other)}"] if other else [])
        raise DataError(f"{folder} holds {' and '.join(parts)}; every file there is read, none skipped: move them "
                        f"out (hidden files: e.g. .DS_Store, ._name from macOS)")
    files = [p for p in entries if p.suffix.lower() in suffixes]
    if not files:
        raise DataError(f"{folder} holds no {what} ({', '.join(suffixes)})")
    return files


# -- TIFF ------------------------------------------------------------------------------------------------------------

def _read_tiff(path: Path, palette: str) -> ImageFile:
    try:
        with open_tiff(path) as tf:
            series = tf.series
            if not series:
                raise DataError(f"{path}: the TIFF holds no image")
            if len(series) > 1:
                shapes = ", ".join(f"{s.axes} {tuple(s.shape)}" for s in series[:4])
                raise DataError(f"{path}: the TIFF holds {len(series)} image series ({shapes}); expected one image "
                                f"or one stack of same-size pages; save one series per file")
            s, page = series[0], series[0].pages[0]
            photometric = int(page.photometric)
            if photometric not in (0, 1, 2, 3):  # MINISWHITE, MINISBLACK, RGB, PALETTE
                raise DataError(f"{path}: TIFF photometric {page.photometric.name} is not read (expected gray, RGB or "
                                f"palette); save it as gray or RGB")
            if photometric == 0:
                raise DataError(f"{path}: the TIFF is stored inverted (photometric MINISWHITE, 0 = white; tifffile "
                                f"writes bool arrays so): what its values mean is not certain; save it as ordinary "
                                f"gray, e.g. a mask as 8-bit 0/255")
            data = _tiff_pixels(tf, s, path)
            axes = s.axes
            colormap = page.colormap if photometric == 3 else None
    except DataError:
        raise
    except Exception as e:  # tifffile raises several types for broken files
        raise DataError(f"{path}: cannot be read as a TIFF ({e}); check or re-save the file") from None
    if data.dtype == bool:
        data = data.astype(np.uint8) * 255
    planes, converted = _planes_from_axes(data, axes, path, rgb=photometric == 2)
    if colormap is not None and palette == "rgb":
        planes, converted = [_apply_colormap(p, colormap, path) for p in planes], "palette -> RGB"
    return ImageFile(path, tuple(planes), axes, converted)


def _tiff_pixels(tf: tifffile.TiffFile, series, path: Path) -> np.ndarray:
    """The series' pixels; with Pillow page by page when tifffile lacks the codec."""
    try:
        return series.asarray()
    except (KeyError, ValueError) as e:
        if "imagecodecs" not in str(e):
            raise
        if len(series.pages) != len(tf.pages):
            raise DataError(f"{path}: compressed with a codec this installation lacks ({e}); "
                            f"pip install imagecodecs") from None
    try:
        with Image.open(path) as im:
            pages = []
            for k in range(getattr(im, "n_frames", 1)):
                im.seek(k)
                pages.append(np.asarray(im))
    except Exception as e:
        raise DataError(f"{path}: compressed with a codec tifffile lacks and Pillow cannot decode it ({e}); "
                        f"pip install imagecodecs") from None
    return np.stack(pages).reshape(series.shape)


class _Complaints(logging.Handler):
    """Collects what tifffile logs (instead of raising) about a damaged file, e.g. "invalid page offset"."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextlib.contextmanager
def open_tiff(path: Path) -> Iterator[tifffile.TiffFile]:
    """A TIFF stack opened and its pages listed; `DataError` naming the file if it is not a TIFF or is truncated
    (tifffile logs a cut page chain and keeps the pages before the cut; a cut inside the pixels shows as page data
    that ends past the end of the file)."""
    complaints = _Complaints()
    logger = logging.getLogger("tifffile")
    logger.addHandler(complaints)
    try:
        pages = tifffile.TiffFile(path)
        pages.pages.useframes = False
        n = len(pages.pages)
    except Exception as e:  # tifffile raises several types for broken files
        raise DataError(f"{path}: cannot be read as a TIFF stack ({e}); check or re-download the file") from None
    finally:
        logger.removeHandler(complaints)
    with pages:
        size = path.stat().st_size
        ends = [max((o + c for o, c in zip(p.dataoffsets, p.databytecounts)), default=0) for p in pages.pages]
        if complaints.messages or any(end > size for end in ends):
            why = complaints.messages[0] if complaints.messages else "page data ends past the end of the file"
            raise DataError(f"{path}: the TIFF is truncated or damaged ({why}; {n} readable page(s)); re-download "
                            f"or rebuild it")
        yield pages


def _planes_from_axes(data: np.ndarray, axes: str, path: Path, rgb: bool) -> tuple[list[np.ndarray], str]:
    """Split `data` of `axes` into (H, W[, C]) planes: channels last, one plane per index of the page axes."""
    if len(axes) != data.ndim or "Y" not in axes or "X" not in axes:
        raise DataError(f"{path}: TIFF axes {axes!r} for shape {data.shape} are not an image's (no Y and X); save "
                        f"it as one image or a stack of 2-D pages")
    keep = [i for i, (a, n) in enumerate(zip(axes, data.shape)) if n > 1 or a in "YX"]
    data, axes = data.reshape([data.shape[i] for i in keep]), "".join(axes[i] for i in keep)
    odd = [a for a in axes if a not in "YX" + PAGE_AXES + CHANNEL_AXES]
    if odd:
        a = odd[0]
        raise DataError(f"{path}: TIFF axes {axes!r}: axis {a!r} ({AXIS_NAMES.get(a, 'unknown')}) of "
                        f"{data.shape[axes.index(a)]} is not read (pages are I/Z/T/Q, channels C/S); save one image "
                        f"per {AXIS_NAMES.get(a, a)}, or as pages (ZYX) or channels (CYX)")
    channel_axes = [a for a in axes if a in CHANNEL_AXES]
    if len(channel_axes) > 1:
        raise DataError(f"{path}: TIFF axes {axes!r} hold two channel axes (C and S); save the channels as one axis")
    page_axes = [a for a in axes if a in PAGE_AXES]
    order = [axes.index(a) for a in page_axes] + [axes.index("Y"), axes.index("X")] + \
            [axes.index(a) for a in channel_axes]
    data = data.transpose(order)
    n_pages = int(np.prod([data.shape[i] for i in range(len(page_axes))], dtype=np.int64))
    data = data.reshape((n_pages, *data.shape[len(page_axes):]))
    converted = ""
    if rgb and data.ndim == 4 and data.shape[3] not in (3, 4):
        raise DataError(f"{path}: an RGB TIFF with {data.shape[3]} samples per pixel; expected 3 (RGB) or 4 (RGBA)")
    if rgb and data.ndim == 4 and data.shape[3] == 4:
        data, converted = _drop_alpha(data, path)
    return list(data), converted


def _apply_colormap(plane: np.ndarray, colormap: np.ndarray, path: Path) -> np.ndarray:
    """A palette TIFF plane as RGB: 8-bit when the colour map holds 8-bit colours scaled to 16 bits."""
    cmap = np.asarray(colormap)
    for scale in (257, 256):
        if not (cmap % scale).any():
            cmap = (cmap // scale).astype(np.uint8)
            break
    if plane.ndim != 2 or int(plane.max()) >= cmap.shape[1]:
        raise DataError(f"{path}: palette indices outside its colour map of {cmap.shape[1]} colours")
    return np.ascontiguousarray(cmap[:, plane].transpose(1, 2, 0))


# -- PNG, BMP, JPEG --------------------------------------------------------------------------------------------------

def _png_header(path: Path) -> tuple[int, int] | None:
    """(bit depth, colour type) from a PNG's IHDR chunk, None for another format."""
    with open(path, "rb") as f:
        head = f.read(26)
    if head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        return None
    return head[24], head[25]


def _read_pillow(path: Path, palette: str) -> ImageFile:
    header = _png_header(path)
    if header is not None and header[0] == 16 and header[1] in (2, 4, 6):  # 16-bit gray+alpha, RGB, RGBA
        return _read_png16_colour(path, header[1])
    try:
        with Image.open(path) as im:
            if getattr(im, "n_frames", 1) > 1:
                raise DataError(f"{path}: holds {im.n_frames} frames (an animated image); save one image per file or "
                                f"a multi-page TIFF")
            plane, axes, converted = _pillow_plane(im, path, palette)
    except DataError:
        raise
    except Exception as e:  # Pillow raises several types for broken files
        raise DataError(f"{path}: cannot be read as an image ({e})") from None
    return ImageFile(path, (plane,), axes, converted)


def _pillow_plane(im: Image.Image, path: Path, palette: str) -> tuple[np.ndarray, str, str]:
    mode = im.mode
    if mode in ("L", "RGB"):
        a = np.asarray(im)
        return a, "YX" if a.ndim == 2 else "YXS", ""
    if mode == "1":
        return np.asarray(im.convert("L")), "YX", "1-bit -> 0/255"
    if mode.startswith("I;16") or mode == "I":
        a = np.asarray(im)
        if mode == "I" and (a.min() < 0 or a.max() > 65535):
            return a.astype(np.int32), "YX", ""
        return a.astype(np.uint16), "YX", ""
    if mode == "F":
        return np.asarray(im).astype(np.float32), "YX", ""
    if mode in ("LA", "RGBA"):
        a, converted = _drop_alpha(np.asarray(im)[None], path)
        a = a[0]
        return (a[..., 0], "YX", converted) if a.shape[2] == 1 else (a, "YXS", converted)
    if mode in ("P", "PA"):
        if palette == "index":
            a = np.asarray(im)
            if a.ndim == 3:  # PA: index and alpha
                a = _drop_alpha(a[None], path)[0][0, ..., 0]
            return a, "YX", "palette indices"
        rgba = np.asarray(im.convert("RGBA"))
        a, converted = _drop_alpha(rgba[None], path)
        return a[0], "YXS", "palette -> RGB" + (f", {converted}" if converted else "")
    if mode in ("CMYK", "YCbCr", "LAB", "HSV"):
        return np.asarray(im.convert("RGB")), "YXS", f"{mode} -> RGB"
    raise DataError(f"{path}: pixel mode {mode} is not read; save it as gray or RGB (8 or 16-bit)")


def _read_png16_colour(path: Path, colour_type: int) -> ImageFile:
    """A 16-bit gray+alpha, RGB or RGBA PNG, which Pillow would reduce to 8 bits."""
    a = cv2.imdecode(np.fromfile(path, np.uint8), cv2.IMREAD_UNCHANGED)
    if a is None or a.dtype != np.uint16:
        raise DataError(f"{path}: cannot be read as a 16-bit PNG")
    converted = ""
    if a.ndim == 3:
        a = a[..., [2, 1, 0, 3]] if a.shape[2] == 4 else a[..., ::-1]  # OpenCV's BGR(A) -> RGB(A)
        if a.shape[2] == 4:
            a, converted = _drop_alpha(a[None], path)
            a = a[0]
        if colour_type == 4:  # gray + alpha, decoded as colour
            a = a[..., 0]
    return ImageFile(path, (np.ascontiguousarray(a),), "YX" if a.ndim == 2 else "YXS", converted)


def _drop_alpha(planes: np.ndarray, path: Path) -> tuple[np.ndarray, str]:
    """(N, H, W, C) with alpha last -> without it, when the alpha is one value everywhere; else `DataError`."""
    alpha = planes[..., -1]
    lo, hi = alpha.min(), alpha.max()
    if lo != hi:
        top = np.iinfo(alpha.dtype).max if np.issubdtype(alpha.dtype, np.integer) else 1
        hidden = int((alpha != top).sum())
        raise DataError(f"{path}: has transparent pixels (alpha below opaque in {hidden} pixels): what they show "
                        f"is not certain; save it without transparency (no alpha channel)")
    return np.ascontiguousarray(planes[..., :-1]), "opaque alpha dropped" if hi else "unused (all 0) alpha dropped"


# -- what was read ---------------------------------------------------------------------------------------------------

def channel_text(channels: int) -> str:
    return {1: "gray", 3: "RGB"}.get(channels, f"{channels} channels")


def size_text(shapes: Sequence[tuple[int, ...]]) -> str:
    """'512x512' or '384x256 to 1024x768' (W x H, by area)."""
    sizes = sorted({(s[1], s[0]) for s in shapes}, key=lambda wh: (wh[0] * wh[1], wh))
    first, last = sizes[0], sizes[-1]
    return f"{first[0]}x{first[1]}" + ("" if first == last else f" to {last[0]}x{last[1]}")


def describe_images(files: Sequence[ImageFile]) -> list[str]:
    """The run's first lines about the images: how many from how many files, sizes, channels, dtypes, the stacks
    and what was converted."""
    planes = [p for f in files for p in f.planes]
    channels = Counter(channel_text(f.channels) for f in files)
    dtypes = Counter(str(f.dtype) for f in files)
    lines = [f"images: {len(planes)} from {len(files)} file(s); {size_text([p.shape for p in planes])}; "
             + ", ".join(f"{k} ({n})" for k, n in channels.items()) + "; "
             + ", ".join(f"{k} ({n})" for k, n in dtypes.items())]
    stacks = [f for f in files if f.pages > 1]
    if stacks:
        lines.append(f"images: {len(stacks)} multi-page file(s), each page one image: "
                     + ", ".join(f"{f.path.name} ({f.pages} pages, axes {f.axes})" for f in stacks[:3])
                     + (f" and {len(stacks) - 3} more" if len(stacks) > 3 else ""))
    conversions = Counter(f.converted for f in files if f.converted)
    if conversions:
        lines.append("images converted on reading: " + ", ".join(f"{k} ({n} file(s))" for k, n in conversions.items()))
    return lines
