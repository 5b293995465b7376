"""What a probability map becomes for a user who measures cells: a mask, instance labels, and the ImageJ TIFFs that
hold them (written by ``predict``, read back by ``evaluate``).

From a network's probabilities (`unet_repro.inference.predict_tiled`):

* one output channel, P(foreground) (H, W): the **mask** is ``P > threshold`` as uint8 0/1 (class 1 = foreground,
  as `unet_repro.training.validate.predicted_classes` decides it); the **labels** are the mask's 4-connected
  components (`unet_repro.instances.predicted_instances`): one background pixel of border, straight or diagonal,
  keeps two touching objects apart, as the separation borders of the training target taught the network.
* K output channels, soft-max probabilities (K, H, W): the **mask** is the most probable class 0..K-1 (no
  threshold); the **labels** are the objects of every foreground class (:func:`class_objects`): the 4-connected
  components of each class 1..K-1 on its own, so that two touching objects of different classes stay two, each
  object of one class; numbered class 1's first (raster order), then class 2's, ...

Objects of fewer than ``min_size`` pixels (specks) are left out of the labels; the mask keeps every pixel (it is the
pixel decision; the labels are the objects).

Files (:func:`write_imagej`): float32 probabilities, uint8 masks and uint16 labels as ImageJ hyperstacks, axes
``YX`` for one image, ``ZYX`` for the pages of a stack (in their order), with a channel axis ``C`` (one channel per
class) for K-class probabilities. Each carries its display range (probabilities 0-1, the mask 0-1 or 0..K-1, labels
0..N) so that Fiji shows a 0/1 mask black and white; napari and `unet_repro.data.images.read_image_file` read the
values as they are. Labels are numbered per page (a page is a 2-D image) and must fit 16 bits: an image of more
than 65535 objects is refused (`DataError`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import tifffile

from .errors import DataError
from .files import atomic_write
from .instances import predicted_instances
from .training.validate import predicted_classes

__all__ = ["OUTPUTS", "class_objects", "output_name", "segment", "write_imagej"]

#: What ``predict`` writes for an input ``<name>.<ext>``: ``<name>_<output>.tif`` for each.
OUTPUTS: tuple[str, ...] = ("prob", "mask", "labels")
MAX_LABEL = np.iinfo(np.uint16).max


def output_name(stem: str, output: str) -> str:
    """``x_prob.tif``, ``x_mask.tif``, ``x_labels.tif`` for an input named ``x.<ext>``."""
    return f"{stem}_{output}.tif"


def class_objects(classes: np.ndarray, min_size: int = 0) -> np.ndarray:
    """Instance labels of a class mask: the 4-connected components of each foreground class 1..K-1 on its own
    (objects of fewer than `min_size` pixels dropped), numbered 1..N, class 1's first, each class's in raster order.
    For a 0/1 mask this is `unet_repro.instances.predicted_instances`.

    Shapes: (H, W) integer class indices (0 = background) -> (H, W) int32.
    """
    classes = np.asarray(classes)
    labels = np.zeros(classes.shape, np.int32)
    count = 0
    for c in np.unique(classes[classes != 0]):
        objects = predicted_instances(classes == c, min_size)
        labels[objects != 0] = objects[objects != 0] + count
        count += int(objects.max())
    return labels


def segment(prob: np.ndarray, threshold: float = 0.5, min_size: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(mask, labels) of a probability map by the rules of the module docstring.

    Shapes: (H, W) P(foreground) or (K, H, W) class probabilities -> ((H, W) uint8 mask, (H, W) int32 labels).
    """
    mask = predicted_classes(prob, threshold)
    labels = predicted_instances(mask, min_size) if prob.ndim == 2 else class_objects(mask, min_size)
    return mask, labels


def _as_stored(pages: Sequence[np.ndarray], output: str, name: str) -> np.ndarray:
    if output == "prob":
        return np.stack(pages).astype(np.float32, copy=False)
    if output == "mask":
        return np.stack(pages).astype(np.uint8, copy=False)
    top = max(int(p.max()) for p in pages)
    if top > MAX_LABEL:
        raise DataError(f"{name}: {top} objects in one image do not fit 16-bit labels (at most {MAX_LABEL}); raise "
                        f"--min-size or --threshold, or predict smaller images")
    return np.stack(pages).astype(np.uint16)


def write_imagej(path: Path | str, pages: Sequence[np.ndarray], output: str, stack: bool,
                 classes: int | None = None) -> None:
    """Write the `output` ("prob", "mask" or "labels") of one input as an ImageJ hyperstack TIFF, atomically.

    `pages`: one array per page, (H, W), or (K, H, W) for K-class probabilities; `stack`: the input was a
    multi-page stack (axes ZYX / ZCYX even for one page), else one image (YX / CYX). `classes`: K of a K-class
    network (the mask's display range 0..K-1), None for one output channel.
    """
    path = Path(path)
    data = _as_stored(pages, output, path.name)
    if not stack:
        data = data[0]
    axes = ("Z" if stack else "") + ("C" if data.ndim == (4 if stack else 3) else "") + "YX"
    metadata: dict = {"axes": axes}
    if output == "prob":
        metadata.update({"min": 0.0, "max": 1.0})
        if "C" in axes:
            metadata["Ranges"] = (0.0, 1.0) * data.shape[axes.index("C")]
    else:
        top = (classes - 1 if classes else 1) if output == "mask" else max(int(data.max()), 1)
        metadata.update({"min": 0.0, "max": float(top)})
    with atomic_write(path) as f:
        tifffile.imwrite(f, data, imagej=True, metadata=metadata)
