"""Your own data: a folder of images and a folder of masks paired by file name and read by one rule (see
`unet_repro.data.folder`: images of any bit depth, channels and pages; binary, instance or class masks), split at
random with a seed into train / validation / test (``val_fraction``, ``test_fraction``, at least one each),
trained like ISBI-2012: random tiles with mirrored context, the paper's U-Net and weight map by default, any
registered model and loss on request.

The split keeps the pages of a multi-page file together (neighbouring slices of one stack in training and test
would flatter the test) when there are enough files to split; a single stack (or too few files) is split by page.

The reading options come from `DataOptions` fields read with ``getattr`` (absent fields mean the default):
``mask_kind`` (None: decided from the masks; "binary", "instances", "classes"), ``classes`` (K) and
``normalization`` (the intensity rule, default "range"; see `unet_repro.data.intensity`). `check` reads all the
data (so that every reading error comes before a run folder is made) and `load` reuses what it read.
"""
from __future__ import annotations

from dataclasses import fields
from pathlib import Path

from ..data.folder import FolderData, load_folder
from ..data.images import list_image_files
from ..data.intensity import DEFAULT_RULE
from ..data.split import seeded_split
from ..errors import DataError, UsageError
from ..instances import SEPARATION_WIDTHS, separation_borders
from ..training.config import TrainConfig
from .base import DataInfo, DataOptions, Images, Splits, Task

# Own images are scaled per image by their percentiles (as microscopy tools do: 8-, 12- and 16-bit images alike);
# ISBI-2012 and PH2 keep the dtype's range.
PRESETS = {
    # The paper's method with the quick preset's narrow network: minutes to an hour on a CPU, depending on the data.
    "quick": TrainConfig(widths=(16, 32, 64, 128, 256), optimizer="sgd", lr=0.001, momentum=0.99, dropout=0.5,
                         epochs=20, steps_per_epoch=50, patience=0, normalization="percentile"),
    # The paper's network and settings, for a GPU.
    "paper": TrainConfig(widths=(64, 128, 256, 512, 1024), optimizer="sgd", lr=0.001, momentum=0.99, dropout=0.5,
                         epochs=60, steps_per_epoch=250, patience=15, normalization="percentile"),
}


def split_sizes(n: int, val_fraction: float, test_fraction: float) -> tuple[int, int, int]:
    """Train / val / test counts of `n` images: the fractions rounded, at least one image each."""
    if not (0 < val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise UsageError(f"--val-fraction ({val_fraction}, above 0) and --test-fraction ({test_fraction}, 0 or more) "
                         f"must leave images to train on: their sum must be below 1")
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


def reading_options(options: DataOptions) -> dict:
    """The `load_folder` keywords from the options (fields that `DataOptions` may not have yet read as absent)."""
    return {"kind": getattr(options, "mask_kind", None), "n_classes": getattr(options, "classes", None),
            "rule": getattr(options, "normalization", None) or DEFAULT_RULE, "size": options.size}


_last: tuple[tuple, FolderData] | None = None  # what `check` read, for `load`


def _signature(images_dir: Path, masks_dir: Path, reading: dict) -> tuple:
    """The folders' files (names, sizes, times) and the reading options: equal signatures read equal data."""
    stats = tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns)
                  for d in (images_dir, masks_dir) for p in sorted(Path(d).iterdir()))
    return (str(images_dir.resolve()), str(masks_dir.resolve()), tuple(sorted(reading.items())), stats)


def read_data(options: DataOptions) -> FolderData:
    """The folders read by `load_folder` with the options' reading rules (the last read is reused while the files
    and options are the same)."""
    global _last
    images_dir, masks_dir = _need_folders(options)
    reading = reading_options(options)
    list_image_files(images_dir, "images")  # a missing folder is named before its files are listed
    list_image_files(masks_dir, "masks")
    key = _signature(images_dir, masks_dir, reading)
    if _last is not None and _last[0] == key:
        return _last[1]
    data = load_folder(images_dir, masks_dir, **reading)
    _last = (key, data)
    return data


def split_units(data: FolderData, options: DataOptions) -> tuple[list[str], str]:
    """What the split draws: the image files (the pages of a stack stay together) when there are enough of them
    for the split, else the images (pages); and which of the two."""
    files = sorted(set(data.files))
    if len(files) < len(data.names):
        try:
            split_sizes(len(files), options.val_fraction, options.test_fraction)
            return files, "file"
        except DataError:
            pass
    return list(data.names), "image"


def _info(**values) -> DataInfo:
    """A `DataInfo` with the fields it has (the mask kind and classes once `DataInfo` holds them)."""
    have = {f.name for f in fields(DataInfo)}
    return DataInfo(**{k: v for k, v in values.items() if k in have})


def check(root: Path | None, options: DataOptions) -> DataInfo:
    """Reads everything (pairing, images, masks, the mask kind and the intensity rule) and checks that the split
    is possible; the images' largest size and channels."""
    images_dir, masks_dir = _need_folders(options)
    data = read_data(options)
    units, _ = split_units(data, options)
    split_sizes(len(units), options.val_fraction, options.test_fraction)
    if options.border_width not in SEPARATION_WIDTHS:
        raise UsageError(f"--border-width must be {' or '.join(map(str, SEPARATION_WIDTHS))} (pixels of background "
                         f"drawn between touching objects), got {options.border_width}")
    height = max(im.shape[0] for im in data.images)
    width = max(im.shape[1] for im in data.images)
    return _info(shape=(height, width, data.channels), count=len(data.images), source=f"{images_dir} + {masks_dir}",
                 mask_kind=data.kind, classes=data.classes, normalization=data.rule, lines=tuple(data.lines))


def load(root: Path | None, options: DataOptions) -> Splits:
    """The seeded split of the images (``description``: the names in each part, what a part is made of, the
    mask kind, K, the intensity rule and what was read)."""
    data = read_data(options)
    units, unit = split_units(data, options)
    sizes = split_sizes(len(units), options.val_fraction, options.test_fraction)
    split = seeded_split(units, options.split_seed, sizes)
    everything = Images(data.images, data.masks, data.names)
    member = data.files if unit == "file" else data.names  # the unit each image belongs to
    parts = {}
    for part, chosen in split.items():
        chosen = set(chosen)
        parts[part] = everything.subset([i for i, u in enumerate(member) if u in chosen])
    if data.kind == "instances":  # the paper's training target: background drawn between touching objects
        for part in parts.values():
            part.labels = [separation_borders(m, options.border_width) for m in part.labels]
    description = {k: parts[k].names for k in split} | {
        "split_unit": unit, "mask_kind": data.kind, "classes": data.classes, "normalization": data.rule,
        "reading": list(data.lines)}
    return Splits(parts["train"], parts["val"], parts["test"] if split["test"] else None, description)


TASK = Task(
    name="folder",
    title="your own data",
    data_dir=None,
    expected="a folder of images and a folder of masks with the same file names",
    how_to_get="Point --images and --masks at your folders.",
    presets=PRESETS,
    default_preset="quick",
    data_flags=("images", "masks", "mask_kind", "border_width", "size", "split_seed", "val_fraction",
                "test_fraction"),
    check=check,
    load=load,
)
