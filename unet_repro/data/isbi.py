"""ISBI-2012 EM segmentation data: reading the stacks and cutting the paper's training tiles.

Layout of a data root (the official one, see ``datasets/README.md``)::

    train-volume.tif   30 x 512 x 512 uint8, multi-page TIFF
    train-labels.tif   30 x 512 x 512 uint8, cell = 255, membrane = 0
    test-volume.tif    30 x 512 x 512 uint8 (labels are not public)

Each stack may instead be a folder of the same name holding one PNG (or TIFF) per slice, read in natural
file-name order (2.png before 10.png). Two folders (images and labels) are paired by file name (without extension),
not by position: a slice without its label, a label without its slice, and hidden or non-slice files (.DS_Store,
._01.png, Thumbs.db) are refused by name. A TIFF stack and a folder pair by position (page k with the k-th file).

Labels must be binary-valued: 0 (membrane) and 255 (cell) as shipped, or 0 and 1; any other values (0/100, 1/2,
gray values, the image stack given as labels) are refused with the values found. They are read as cell = 1,
membrane = 0.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image

from ..errors import DataError, DataNotFoundError
from .images import list_image_files, open_tiff, some_names
from .masks import values_text

SLICE_SUFFIXES = (".png", ".tif", ".tiff")
LABEL_VALUES = ({0, 255}, {0, 1})


def find_stack(root: Path | str, name: str) -> Path:
    """The TIFF file ``root/name.tif`` (or ``.tiff``) or the folder ``root/name/`` of slices."""
    root = Path(root)
    for candidate in (root / f"{name}.tif", root / f"{name}.tiff", root / name):
        if candidate.exists():
            return candidate
    raise DataNotFoundError(f"{root / (name + '.tif')} not found (nor a folder {root / name}/ of PNG slices); "
                            f"see datasets/README.md for how to get ISBI-2012 and lay it out")


def natural_key(path: Path) -> list:
    """Sort key that puts 2.png before 10.png."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path.name)]


def slice_files(folder: Path | str) -> list[Path]:
    """The slice images of a folder in natural file-name order; `DataError` naming hidden and non-slice files and
    two slices of one name (01.png and 01.tif)."""
    folder = Path(folder)
    files = sorted(list_image_files(folder, "slice images", SLICE_SUFFIXES), key=natural_key)
    stems: dict[str, Path] = {}
    for f in files:
        if f.stem in stems:
            raise DataError(f"{folder} holds two slices named {f.stem}: {stems[f.stem].name} and {f.name}; keep one")
        stems[f.stem] = f
    return files


def pair_slice_folders(images: Path, labels: Path) -> tuple[list[Path], list[Path]]:
    """The image slices (natural order) and their label slices in the same order, paired by file name without
    extension; `DataError` naming slices without labels and labels without slices."""
    image_files, label_files = slice_files(images), slice_files(labels)
    by_stem = {f.stem: f for f in label_files}
    lonely_images = [f.name for f in image_files if f.stem not in by_stem]
    lonely_labels = sorted(set(by_stem) - {f.stem for f in image_files})
    if lonely_images or lonely_labels:
        parts = ([f"no label for {some_names(lonely_images)} in {labels}"] if lonely_images else []) + \
                ([f"no image for {some_names([by_stem[s].name for s in lonely_labels])} in {images}"]
                 if lonely_labels else [])
        raise DataError("image and label slices are paired by file name: " + "; ".join(parts))
    return image_files, [by_stem[f.stem] for f in image_files]


def read_stack(path: Path | str, files: list[Path] | None = None) -> np.ndarray:
    """Read a multi-page TIFF or a folder of single-slice images (in natural file-name order, or the given
    `files` of it) into a (N, H, W) uint8 array."""
    path = Path(path)
    if not path.exists():
        raise DataNotFoundError(f"{path} not found")
    if path.is_dir():
        files = slice_files(path) if files is None else files
        slices = [read_slice(f) for f in files]
        for f, s in zip(files, slices):
            if s.shape != slices[0].shape:
                raise DataError(f"{f}: slice is {s.shape[1]}x{s.shape[0]} but {files[0].name} is "
                                 f"{slices[0].shape[1]}x{slices[0].shape[0]}; all slices must have one size")
        return np.stack(slices)
    with open_tiff(path) as pages:
        shapes = [p.shape for p in pages.pages]
        if len(set(shapes)) > 1:
            bad = next(i for i, s in enumerate(shapes) if s != shapes[0])
            raise DataError(f"{path}: page {bad} is {shapes[bad]} but page 0 is {shapes[0]}; all slices must have "
                            f"one size")
        try:
            stack = pages.asarray()
        except Exception as e:  # a truncated file opens but its pixels cannot be read
            raise DataError(f"{path}: the TIFF is truncated or damaged ({e}); re-download or rebuild it") from None
    if stack.ndim == 2:
        stack = stack[None]
    if stack.ndim != 3:
        raise DataError(f"{path}: expected a stack of gray-value slices (N x H x W), got shape {stack.shape}")
    return _to_uint8(stack, path)


def read_slice(path: Path) -> np.ndarray:
    """One slice image as (H, W) uint8 (colour converted to gray, as before)."""
    try:
        with Image.open(path) as im:
            a = np.asarray(im.convert("L") if im.mode not in ("L", "I;16", "I", "F", "1") else im)
    except Exception as e:
        raise DataError(f"{path}: cannot be read as an image ({e})") from None
    return _to_uint8(a, path)


def _to_uint8(a: np.ndarray, path: Path) -> np.ndarray:
    if a.dtype == np.uint8:
        return a
    if a.dtype == bool:
        return a.astype(np.uint8) * 255
    raise DataError(f"{path}: expected 8-bit gray values, got dtype {a.dtype}; convert it to 8-bit")


@dataclass
class ISBIData:
    """Images (N, H, W) uint8 and, for the training split, labels (N, H, W) uint8 with cell = 1, membrane = 0."""

    images: np.ndarray
    labels: np.ndarray | None

    def __iter__(self):  # unpacks as `images, labels = data`
        return iter((self.images, self.labels))


def load_isbi(root: Path | str, split: str = "train") -> ISBIData:
    """Read ``train-volume`` + ``train-labels`` (split="train") or ``test-volume`` (split="test") under `root`."""
    root = Path(root)
    if not root.is_dir():
        raise DataNotFoundError(f"ISBI-2012 data folder {root} not found; expected train-volume.tif, "
                                f"train-labels.tif and test-volume.tif there (see datasets/README.md, or pass "
                                f"--data-root / set UNET_REPRO_DATA)")
    if split == "test":
        return ISBIData(read_stack(find_stack(root, "test-volume")), None)
    if split != "train":
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    image_path, label_path = find_stack(root, "train-volume"), find_stack(root, "train-labels")
    if image_path.is_dir() and label_path.is_dir():
        image_files, label_files = pair_slice_folders(image_path, label_path)
        images, labels = read_stack(image_path, image_files), read_stack(label_path, label_files)
    else:
        images, labels = read_stack(image_path), read_stack(label_path)
    if len(images) != len(labels):
        raise DataError(f"{label_path} holds {len(labels)} label slices but {image_path} holds {len(images)} images; "
                        f"each image slice needs its label slice")
    if images.shape[1:] != labels.shape[1:]:
        raise DataError(f"{label_path}: label slices are {labels.shape[2]}x{labels.shape[1]} but the images in "
                        f"{image_path} are {images.shape[2]}x{images.shape[1]}")
    return ISBIData(images, read_labels(labels, label_path))


def read_labels(labels: np.ndarray, path: Path) -> np.ndarray:
    """ISBI labels (0/255 as shipped, or 0/1) as cell = 1, membrane = 0; `DataError` with the values found for any
    other values, and for labels that are all cell or all membrane."""
    values = np.flatnonzero(np.bincount(labels.ravel(), minlength=256))
    found = set(values.tolist())
    if not any(found <= allowed for allowed in LABEL_VALUES):
        like = " (gray values: was the image stack given as labels?)" if len(found) > 8 else ""
        raise DataError(f"{path}: label values {values_text(values)}{like}; ISBI labels are 0 (membrane) and 255 "
                        f"(cell), or 0 and 1: convert them to cell = 255, membrane = 0")
    if len(found) == 1:
        raise DataError(f"{path}: every label pixel is {'cell' if values[0] else 'membrane'} (value {values[0]}); "
                        f"expected cells = 255 (or 1) and membranes = 0")
    return (labels != 0).astype(np.uint8)
