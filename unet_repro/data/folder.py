"""Your own data: a folder of images and a folder of masks, paired by file name.

    images/            masks/
      case_001.png       case_001.png      (any of .png .tif .tiff .bmp .jpg; the extensions may differ)
      case_002.tif       case_002.png

Images are 8-bit gray or RGB (RGBA loses its alpha; a mix of gray and RGB is read as RGB); masks are 8-bit, one
channel or RGB read as gray, with foreground = nonzero (0/1 or 0/255; see `binarize_mask`). A mask may also be named
after its image with a ``_mask`` suffix (``case_001_mask.png``). Every image needs its mask and every mask its image;
the errors name the files that have no partner.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import DataError, DataNotFoundError
from .masks import binarize_mask
from .ph2 import resize_case

SUFFIXES = (".png", ".tif", ".tiff", ".bmp", ".jpg", ".jpeg")
MASK_SUFFIX = "_mask"


@dataclass
class FolderData:
    """``images``: N arrays (H, W) or (H, W, 3) uint8; ``masks``: N arrays (H, W) uint8 in {0, 1}; ``names``: the
    image file stems, sorted. Sizes may differ between images unless the folder was read with a ``size``."""

    images: list[np.ndarray]
    masks: list[np.ndarray]
    names: list[str]

    @property
    def channels(self) -> int:
        return 1 if self.images[0].ndim == 2 else self.images[0].shape[2]


def _files(folder: Path, what: str) -> dict[str, Path]:
    if not folder.is_dir():
        raise DataNotFoundError(f"{what} folder {folder} not found; pass the folder that holds your {what}")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in SUFFIXES)
    if not files:
        raise DataError(f"{folder} holds no {what} ({', '.join(SUFFIXES)})")
    by_stem: dict[str, Path] = {}
    for p in files:
        if p.stem in by_stem:
            raise DataError(f"{folder} holds two {what} named {p.stem}: {by_stem[p.stem].name} and {p.name}; keep one")
        by_stem[p.stem] = p
    return by_stem


def pair_files(images_dir: Path, masks_dir: Path) -> list[tuple[str, Path, Path]]:
    """(name, image file, mask file) for every image, sorted by name; `DataError` naming unpaired files."""
    images, masks = _files(Path(images_dir), "images"), _files(Path(masks_dir), "masks")
    masks = {(stem[:-len(MASK_SUFFIX)] if stem.endswith(MASK_SUFFIX) and stem[:-len(MASK_SUFFIX)] in images
              else stem): p for stem, p in masks.items()}
    lonely_images = sorted(set(images) - set(masks))
    lonely_masks = sorted(set(masks) - set(images))
    if lonely_images or lonely_masks:
        parts = []
        if lonely_images:
            parts.append(f"no mask for {', '.join(images[n].name for n in lonely_images[:5])}"
                         + (f" and {len(lonely_images) - 5} more" if len(lonely_images) > 5 else "")
                         + f" in {masks_dir}")
        if lonely_masks:
            parts.append(f"no image for {', '.join(masks[n].name for n in lonely_masks[:5])}"
                         + (f" and {len(lonely_masks) - 5} more" if len(lonely_masks) > 5 else "")
                         + f" in {images_dir}")
        raise DataError("images and masks are paired by file name: " + "; ".join(parts)
                        + f" (a mask may be named like its image, or with a {MASK_SUFFIX} suffix)")
    return [(name, images[name], masks[name]) for name in sorted(images)]


def read_image(path: Path) -> np.ndarray:
    """An 8-bit gray (H, W) or RGB (H, W, 3) image file; other modes are converted, 16-bit ones refused."""
    try:
        with Image.open(path) as im:
            if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
                raise DataError(f"{path}: {im.mode} pixels; expected 8-bit gray or RGB, convert it to 8-bit")
            if im.mode not in ("L", "RGB"):
                im = im.convert("RGB" if im.mode in ("RGBA", "P", "CMYK", "YCbCr", "LA") else "L")
            return np.asarray(im)
    except DataError:
        raise
    except Exception as e:  # PIL raises several types for broken files
        raise DataError(f"{path}: cannot be read as an image ({e})") from None


def load_folder(images_dir: Path | str, masks_dir: Path | str, size: int | None = None) -> FolderData:
    """Read and pair the images and masks; with `size`, resize each pair to size x size (area-averaged image, mask
    averaged and thresholded at 0.5, as for PH2)."""
    pairs = pair_files(Path(images_dir), Path(masks_dir))
    images, masks = [], []
    for name, image_path, mask_path in pairs:
        image, mask = read_image(image_path), read_image(mask_path)
        if mask.ndim == 3:
            mask = np.asarray(Image.fromarray(mask).convert("L"))
        mask = binarize_mask(mask, mask_path)
        if mask.shape != image.shape[:2]:
            raise DataError(f"{mask_path} is {mask.shape[1]}x{mask.shape[0]} but its image {image_path} is "
                            f"{image.shape[1]}x{image.shape[0]}; a mask must have its image's size")
        if size is not None:
            image, mask = resize_case(image, mask, size)
        images.append(image)
        masks.append(mask)
    if any(im.ndim == 3 for im in images):  # a mix of gray and RGB images is read as RGB
        images = [np.repeat(im[..., None], 3, axis=2) if im.ndim == 2 else im for im in images]
    return FolderData(images, masks, [name for name, _, _ in pairs])
