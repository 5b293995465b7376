"""ISBI-2012 EM membranes: the paper's first experiment (Table 1).

30 training slices of 512 x 512 with labels (cells = 1, membranes = 0) and 30 unlabelled test slices. A run holds out
the last ``val_slices`` training slices for validation; cross-validation folds are made by `experiments.isbi`.
The stacks ship with the repository under ``datasets/isbi2012/`` (see ``datasets/isbi2012/README.md``).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..data.isbi import find_stack, load_isbi, open_tiff, pair_slice_folders, read_labels, read_slice, read_stack, \
    slice_files
from ..errors import DataError, DataNotFoundError
from ..training.config import TrainConfig
from .base import DataInfo, DataOptions, Images, Splits, Task, missing_data

STACKS = ("train-volume", "train-labels", "test-volume")

PRESETS = {
    # The paper: full widths, one 572x572 tile per pass (the tile rule), SGD with momentum 0.99, w0=10, sigma=5 (the
    # defaults of unet_repro.weightmap), elastic deformation + shift/rotation/gray values, dropout 0.5, constant
    # learning rate. Meant for a GPU. The paper gives no learning rate: run `python -m experiments.lr_range_test
    # --preset paper` on your GPU before a long run.
    "paper": TrainConfig(widths=(64, 128, 256, 512, 1024), optimizer="sgd", lr=0.001, momentum=0.99, dropout=0.5,
                         augment=True, epochs=60, steps_per_epoch=250, accumulate=1, patience=15),
    # The best held-out result that 2 CPU cores reach in about 150 minutes (bf16 where native). Chosen from measured
    # figures (README, "The cpu preset"): the paper's method at half the paper's widths (a 2.1 s bf16 step of the full
    # network would allow only ~4,000 tiles; this one takes 0.53 s, so 15,000 tiles), lr 0.002 (the LR range test
    # suggests 0.018 and diverges at 0.033; with momentum 0.99 a tenth of that trained stably in a 1,500-tile pilot)
    # decayed by a cosine to 0 over the 60 epochs, since the budget is fixed in advance.
    "cpu": TrainConfig(widths=(32, 64, 128, 256, 512), optimizer="sgd", lr=0.002, momentum=0.99, dropout=0.5,
                       augment=True, schedule="cosine", epochs=60, steps_per_epoch=250, accumulate=1, patience=0),
    # The same method with a 4x narrower network and a short run on 2 CPU cores. 36 epochs of 70 tiles at a constant
    # 0.001: held-out Rand error 0.145 (12 epochs: 0.34); of the schedules tried, 26 epochs at 0.0015 gave 0.210 and a
    # cosine from 0.002 over 30 epochs 0.373 (README, "The quick preset"; results/isbi_quick/). Its first 12 epochs
    # are those of the earlier 12-epoch preset, bit for bit.
    "quick": TrainConfig(widths=(16, 32, 64, 128, 256), optimizer="sgd", lr=0.001, momentum=0.99, dropout=0.5,
                         augment=True, epochs=36, steps_per_epoch=70, accumulate=1, patience=0),
}


def _shape(path: Path) -> tuple[int, ...]:
    """(N, H, W) of a stack without reading its pixels (a folder of slices: N and the first slice's size)."""
    if path.is_dir():
        files = slice_files(path)
        return (len(files), *read_slice(files[0]).shape)
    with open_tiff(path) as f:
        return (len(f.pages), *f.pages[0].shape)


def check(root: Path | None, options: DataOptions) -> DataInfo:
    """The stacks are there, readable, gray-valued, of one size, as many labels as images (two slice folders:
    paired by name), the labels binary-valued, and enough slices to hold out ``options.val_slices``."""
    if root is None or not Path(root).is_dir():
        raise missing_data(TASK, Path(root))
    try:
        paths = {name: find_stack(root, name) for name in STACKS[:2]}
    except DataNotFoundError as e:
        raise missing_data(TASK, Path(root), str(e).split(";")[0]) from None
    shapes = {name: _shape(p) for name, p in paths.items()}
    images, labels = shapes["train-volume"], shapes["train-labels"]
    if len(images) != 3:
        raise DataError(f"{paths['train-volume']}: expected gray-value slices (N x H x W), got pages of shape "
                        f"{images[1:]}; convert the stack to 8-bit gray")
    if images != labels:
        raise DataError(f"{paths['train-labels']} is {labels[0]} x {labels[2]}x{labels[1]} but "
                        f"{paths['train-volume']} is {images[0]} x {images[2]}x{images[1]}; each image slice "
                        f"needs its label slice of the same size")
    if paths["train-volume"].is_dir() and paths["train-labels"].is_dir():
        pair_slice_folders(paths["train-volume"], paths["train-labels"])
    read_labels(read_stack(paths["train-labels"]), paths["train-labels"])  # a few MB: refused before a run starts
    if not 0 < options.val_slices < images[0]:
        raise DataError(f"--val-slices must be between 1 and {images[0] - 1} ({paths['train-volume']} holds "
                        f"{images[0]} slices), got {options.val_slices}")
    return DataInfo(shape=(images[1], images[2], 1), count=images[0], source=str(root))


def load(root: Path | None, options: DataOptions) -> Splits:
    """The first N - ``val_slices`` labelled slices to train on, the last ``val_slices`` to validate on, and the
    unlabelled test stack (when present)."""
    data = load_isbi(root)
    n = len(data.images)
    everything = Images(data.images, data.labels, [f"slice {i:02d}" for i in range(n)])
    cut = n - options.val_slices
    try:
        test = load_isbi(root, "test").images
        test_set = Images(test, None, [f"test slice {i:02d}" for i in range(len(test))])
    except DataNotFoundError:
        test_set = None
    return Splits(everything.subset(range(cut)), everything.subset(range(cut, n)), test_set,
                  {"train_slices": list(range(cut)), "val_slices": list(range(cut, n))})


def load_all(root: Path) -> Images:
    """All labelled training slices (for cross-validation folds)."""
    data = load_isbi(root)
    return Images(data.images, data.labels, [f"slice {i:02d}" for i in range(len(data.images))])


def load_test(root: Path) -> np.ndarray:
    """The unlabelled test stack (30 x 512 x 512 uint8)."""
    return load_isbi(root, "test").images


TASK = Task(
    name="isbi",
    title="ISBI-2012",
    data_dir="isbi2012",
    expected="train-volume.tif and train-labels.tif (and test-volume.tif): the official ISBI-2012 stacks",
    how_to_get="They ship with the repository in datasets/isbi2012/; elsewhere get them from the challenge "
               "(datasets/README.md).",
    presets=PRESETS,
    default_preset="quick",
    data_flags=("val_slices",),
    check=check,
    load=load,
)
