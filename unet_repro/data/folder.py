"""Your own data: a folder of images and a folder of masks, paired by file name.

    images/            masks/
      case_001.png       case_001.png        (.png .tif .tiff .bmp .jpg .jpeg; the extensions may differ)
      case_002.tif       case_002_mask.png   (a mask may carry a _mask suffix)
      stack.tif          stack.tif           (a multi-page image pairs with a multi-page mask, page by page)

Pairing (`pair_files`): by file name without extension, a mask optionally with the ``_mask`` suffix. Refused, each
naming the files: an image without a mask and a mask without an image; two files of one name in a folder
(``a.png`` and ``a.tif``) or two masks for one image (``a.png`` and ``a_mask.png``); hidden files (``.DS_Store``,
``._a.png``, any dotfile) and files that are not images (``Thumbs.db``, ``notes.txt``), which would otherwise be
skipped silently; a multi-page image whose mask has another number of pages.

Reading: images by `unet_repro.data.images` (dtype, channels and pages kept; a page of ``stack.tif`` is named
``stack.tif[k]``), masks by `unet_repro.data.masks` (the kind decided from the whole set, or forced). Each mask must
have its image's size and must not equal its image (the image given as mask). The images must share their number
of channels, except that a mix of gray and RGB is read as RGB (gray repeated). The intensity rule
(`unet_repro.data.intensity`) must fit every image: under "range" uint8, uint16, or float in [0, 1].

With ``size``: every image is resized to size x size by area averaging; the masks without inventing values: binary
masks averaged the same way and thresholded at 0.5 (as for PH2), instance and class masks by nearest neighbour.
Then each image is scaled by the rule, whole (the percentile rule needs all of an image): float32, except that
uint8 images under "range" stay uint8 (the tiles scale them, bit for bit as before).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..errors import DataError, DataNotFoundError
from .images import ImageFile, describe_images, list_image_files, read_image_file, size_text, some_names
from .intensity import DEFAULT_RULE, RULE_LINES, check_rule, normalize, prepare_image
from .masks import MaskSet, RawMask, describe_masks, read_mask_file, read_mask_set
from .ph2 import resize_case

MASK_SUFFIX = "_mask"


@dataclass
class FolderData:
    """Own data as read. ``images``: N arrays (H, W) or (H, W, C), uint8 or float32 (see the module docstring);
    ``masks``: N canonical masks (binary uint8 {0, 1}, instances int32, classes uint8 0..K-1); ``names``: the image
    file stems, ``file.tif[k]`` for the pages of a stack; ``files``: the image file of each image (the unit a
    split keeps together); ``kind``, ``classes`` (K: 2 for binary, None for instances), ``rule`` (the intensity
    rule applied) and ``lines``, what was read, for the run's first lines. Sizes may differ between images unless
    the folder was read with a ``size``."""

    images: list[np.ndarray]
    masks: list[np.ndarray]
    names: list[str]
    files: list[str]
    kind: str
    classes: int | None
    rule: str
    lines: list[str]

    @property
    def channels(self) -> int:
        return 1 if self.images[0].ndim == 2 else self.images[0].shape[2]


# -- pairing -------------------------------------------------------------------------------------------------------

def _by_stem(files: list[Path], folder: Path, what: str) -> dict[str, Path]:
    by_stem: dict[str, Path] = {}
    for p in files:
        if p.stem in by_stem:
            raise DataError(f"{folder} holds two {what} named {p.stem}: {by_stem[p.stem].name} and {p.name}; keep one")
        by_stem[p.stem] = p
    return by_stem


def pair_files(images_dir: Path, masks_dir: Path) -> list[tuple[str, Path, Path]]:
    """(name, image file, mask file) for every image, sorted by name; `DataError` naming unpaired files, two masks
    of one image, hidden and non-image files."""
    images_dir, masks_dir = Path(images_dir), Path(masks_dir)
    images = _by_stem(list_image_files(images_dir, "images"), images_dir, "images")
    masks = _by_stem(list_image_files(masks_dir, "masks"), masks_dir, "masks")
    paired: dict[str, Path] = {}
    for stem, p in masks.items():
        name = stem[:-len(MASK_SUFFIX)] if stem.endswith(MASK_SUFFIX) and stem[:-len(MASK_SUFFIX)] in images else stem
        if name in paired:
            raise DataError(f"{masks_dir} holds two masks for the image {images[name].name}: {paired[name].name} and "
                            f"{p.name}; keep one")
        paired[name] = p
    lonely_images = sorted(set(images) - set(paired))
    lonely_masks = sorted(set(paired) - set(images))
    if lonely_images or lonely_masks:
        parts = []
        if lonely_images:
            parts.append(f"no mask for {some_names([images[n].name for n in lonely_images])} in {masks_dir}")
        if lonely_masks:
            parts.append(f"no image for {some_names([paired[n].name for n in lonely_masks])} in {images_dir}")
        raise DataError("images and masks are paired by file name: " + "; ".join(parts)
                        + f" (a mask may be named like its image, or with a {MASK_SUFFIX} suffix)")
    return [(name, images[name], paired[name]) for name in sorted(images)]


# -- reading -------------------------------------------------------------------------------------------------------

def _check_pair(image: ImageFile, masks: list[RawMask], mask_path: Path) -> None:
    if len(masks) != image.pages:
        raise DataError(f"{mask_path} has {len(masks)} page(s) but its image {image.path} has {image.pages}; a "
                        f"multi-page image needs a mask page for each of its pages")
    for name, plane, mask in zip(image.names(full=True), image.planes, masks):
        if mask.shape != plane.shape[:2]:
            raise DataError(f"{mask.name} is {mask.shape[1]}x{mask.shape[0]} but its image {name} is "
                            f"{plane.shape[1]}x{plane.shape[0]}; a mask must have its image's size")
        if mask.values.shape == plane.shape and np.array_equal(mask.values, plane):
            raise DataError(f"{mask.name} equals its image {name} pixel for pixel: the image was given as its "
                            f"mask; point --masks at the masks")


def _check_intensity(image: ImageFile, rule: str) -> None:
    for name, plane in zip(image.names(full=True), image.planes):
        if np.issubdtype(plane.dtype, np.floating):
            if not np.isfinite(plane).all():
                raise DataError(f"{name}: the image holds NaN or infinite values; fix or re-export it")
            if rule == "range" and (plane.min() < 0 or plane.max() > 1):
                raise DataError(f"{name}: {plane.dtype} values in [{plane.min():g}, {plane.max():g}], but the 'range' "
                                f"intensity rule takes float images as they are, in [0, 1]; pass --normalization "
                                f"percentile")
        elif rule == "range" and plane.dtype not in (np.uint8, np.uint16):
            raise DataError(f"{name}: {plane.dtype} pixels have no range for the 'range' intensity rule (uint8, "
                            f"uint16, float); pass --normalization percentile")


def _channels(files: list[ImageFile]) -> int:
    """The images' channels: one count for all, or a mix of gray and RGB (read as RGB); else `DataError`."""
    counts = {f.channels for f in files}
    if len(counts) == 1 or counts == {1, 3}:
        return max(counts)
    one, two = sorted(counts)[:2]
    a = next(f.path for f in files if f.channels == one)
    b = next(f.path for f in files if f.channels == two)
    raise DataError(f"the images differ in channels: {a} has {one}, {b} has {two}; give every image the same "
                    f"channels (gray and RGB may be mixed)")


def _resize(image: np.ndarray, mask: np.ndarray, kind: str, size: int) -> tuple[np.ndarray, np.ndarray]:
    if image.dtype not in (np.uint8, np.uint16, np.float32, np.float64):
        image = image.astype(np.float64)  # what cv2's area averaging takes
    if kind == "binary":
        return resize_case(image, mask, size)
    resized = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)
    return resized, cv2.resize(mask, (size, size), interpolation=cv2.INTER_NEAREST)


def load_folder(images_dir: Path | str, masks_dir: Path | str, size: int | None = None, kind: str | None = None,
                n_classes: int | None = None, rule: str = DEFAULT_RULE) -> FolderData:
    """Read and pair the images and masks by the rules of the module docstring; `kind` / `n_classes` force the
    masks' kind (`unet_repro.data.masks`), `rule` names the intensity rule."""
    check_rule(rule)
    pairs = pair_files(Path(images_dir), Path(masks_dir))
    files, raw, names, sources = [], [], [], []
    for name, image_path, mask_path in pairs:
        image = read_image_file(image_path)
        masks = read_mask_file(mask_path)
        _check_pair(image, masks, mask_path)
        _check_intensity(image, rule)
        files.append(image)
        raw.extend(masks)
        names.extend([name] if image.pages == 1 else image.names())
        sources.extend([image_path.name] * image.pages)
    channels = _channels(files)
    mask_set = read_mask_set(raw, kind, n_classes)
    images, masks = [], []
    for plane, mask in zip((p for f in files for p in f.planes), mask_set.masks):
        if size is not None:
            plane, mask = _resize(plane, mask, mask_set.kind, size)
        plane = prepare_image(plane, rule)
        if channels == 3 and plane.ndim == 2:
            plane = np.repeat(plane[..., None], 3, axis=2)
        images.append(plane)
        masks.append(mask)
    lines = reading_lines(files, mask_set, rule, size, channels)
    return FolderData(images, masks, names, sources, mask_set.kind, mask_set.classes, rule, lines)


def reading_lines(files: list[ImageFile], mask_set: MaskSet, rule: str, size: int | None, channels: int
                  ) -> list[str]:
    """What was read, as the run's first lines: images (count, files, sizes, channels, dtypes, stacks,
    conversions), masks (kind and why, foreground / objects / classes), the intensity rule and any resizing."""
    lines = describe_images(files)
    if channels == 3 and any(f.channels == 1 for f in files):
        lines.append(f"images: {sum(f.channels == 1 for f in files)} gray file(s) among RGB ones, read as RGB "
                     f"(gray repeated)")
    lines += describe_masks(mask_set)
    lines.append(f"intensity: {RULE_LINES[rule]}")
    if size is not None:
        planes = [p for f in files for p in f.planes]
        lines.append(f"resized from {size_text([p.shape for p in planes])} to {size}x{size} (masks: "
                     + ("area average >= 0.5)" if mask_set.kind == "binary" else "nearest neighbour)"))
    return lines


def read_image(path: Path) -> np.ndarray:
    """One image of one file (a one-page file), in its dtype, by `unet_repro.data.images`; `DataError` naming the
    file for a multi-page file."""
    f = read_image_file(path)
    if f.pages > 1:
        raise DataError(f"{path} holds {f.pages} pages (axes {f.axes}); give one image, or one page of it")
    return f.planes[0]
