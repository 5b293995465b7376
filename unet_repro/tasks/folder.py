"""Your own data: a folder of images and a folder of masks paired by file name (see `unet_repro.data.folder`),
split at random with a seed into train / validation / test (``val_fraction``, ``test_fraction`` of the images, at
least one each), trained like ISBI-2012: random tiles with mirrored context, the paper's U-Net and weight map by
default, any registered model and loss on request."""
from __future__ import annotations

from pathlib import Path

from PIL import Image

from ..data.folder import load_folder, pair_files
from ..data.split import seeded_split
from ..errors import DataError, UsageError
from ..training.config import TrainConfig
from .base import DataInfo, DataOptions, Images, Splits, Task

PRESETS = {
    # The paper's method with the quick preset's narrow network: minutes to an hour on a CPU, depending on the data.
    "quick": TrainConfig(widths=(16, 32, 64, 128, 256), tile=572, optimizer="sgd", lr=0.001, momentum=0.99,
                         dropout=0.5, epochs=20, steps_per_epoch=50, patience=0),
    # The paper's network and settings, for a GPU.
    "paper": TrainConfig(widths=(64, 128, 256, 512, 1024), tile=572, optimizer="sgd", lr=0.001, momentum=0.99,
                         dropout=0.5, epochs=60, steps_per_epoch=250, patience=15),
}


def split_sizes(n: int, val_fraction: float, test_fraction: float) -> tuple[int, int, int]:
    """Train / val / test counts of `n` images: the fractions rounded, at least one image each."""
    if not (0 < val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise UsageError(f"--val-fraction ({val_fraction}) and --test-fraction ({test_fraction}) must be in [0, 1) "
                         f"with a sum below 1")
    n_val = max(1, round(n * val_fraction))
    n_test = max(1, round(n * test_fraction)) if test_fraction > 0 else 0
    if n - n_val - n_test < 1:
        raise DataError(f"{n} image(s) cannot be split into training, validation"
                        f"{' and test' if n_test else ''} images; add images or lower the fractions")
    return n - n_val - n_test, n_val, n_test


def _need_folders(options: DataOptions) -> tuple[Path, Path]:
    if options.images is None or options.masks is None:
        raise UsageError("the folder task needs --images DIR and --masks DIR (images and masks paired by file name)")
    return Path(options.images), Path(options.masks)


def check(root: Path | None, options: DataOptions) -> DataInfo:
    """Every image has its mask (by name), the split is possible, and the images' largest size and channels."""
    images_dir, masks_dir = _need_folders(options)
    pairs = pair_files(images_dir, masks_dir)
    split_sizes(len(pairs), options.val_fraction, options.test_fraction)
    height = width = channels = 1
    for name, image_path, _ in pairs:
        try:
            with Image.open(image_path) as im:
                w, h = im.size
                c = 1 if im.mode in ("L", "1", "I;16", "I", "F") else 3
        except Exception as e:  # PIL raises several types for broken files
            raise DataError(f"{image_path}: cannot be read as an image ({e})") from None
        height, width, channels = max(height, h), max(width, w), max(channels, c)
    if options.size:
        height = width = options.size
    return DataInfo(shape=(height, width, channels), count=len(pairs), source=f"{images_dir} + {masks_dir}")


def load(root: Path | None, options: DataOptions) -> Splits:
    images_dir, masks_dir = _need_folders(options)
    data = load_folder(images_dir, masks_dir, size=options.size)
    sizes = split_sizes(len(data.names), options.val_fraction, options.test_fraction)
    split = seeded_split(data.names, options.split_seed, sizes)
    everything = Images(data.images, data.masks, data.names)
    index = {n: i for i, n in enumerate(data.names)}
    parts = {k: everything.subset([index[n] for n in names]) for k, names in split.items()}
    return Splits(parts["train"], parts["val"], parts["test"] if split["test"] else None, split)


TASK = Task(
    name="folder",
    title="your own data",
    data_dir=None,
    expected="a folder of images and a folder of masks with the same file names",
    how_to_get="Point --images and --masks at your folders.",
    presets=PRESETS,
    default_preset="quick",
    data_flags=("images", "masks", "size", "split_seed", "val_fraction", "test_fraction"),
    check=check,
    load=load,
)
