"""PH2 dermoscopy lesions (Mendonça et al. 2013): the baselines' benchmark.

200 RGB images with lesion masks, resized to ``size`` x ``size`` (256 by default) and split 100 / 50 / 50 with a
seed, as the studies this project compares with do. The data folder holds PH2 in its original layout or in the
prepared layout of ``datasets/prepare_ph2.py`` (`unet_repro.data.ph2`); both give the same arrays and split. PH2 is
not shipped (research terms): see datasets/README.md.
"""
from __future__ import annotations

import math
from pathlib import Path

from ..data.ph2 import IMAGES_DIR, MANIFEST, case_names, is_prepared, load_ph2, split_ph2
from ..training.config import TrainConfig
from .base import DataInfo, DataOptions, Images, Splits, Task, missing_data

SPLIT_SIZES = (100, 50, 50)
DEFAULT_SIZE = 256


def _preset(**kw) -> TrainConfig:
    # One epoch = 100 training images in batches of 8 (sampled with replacement by seed, like every run here).
    base = dict(model="unet_same", loss="bce", in_channels=3, widths=(), dropout=0.0, padding="same",
                optimizer="adam", momentum=0.9, batch_size=8, accumulate=1,
                steps_per_epoch=math.ceil(SPLIT_SIZES[0] / 8), monitor="iou")
    return TrainConfig(**{**base, **kw})


PRESETS = {
    # Narrow networks (base width 8) and a very short schedule, so that the whole grid of experiments.ph2 (35 runs)
    # fits in about half an hour on 2 CPU cores: it shows the pipeline, not the architectures' potential.
    "quick": _preset(base_width=8, epochs=3, patience=0, lr=1e-3),
    # The best cell of the quick grid (unet_same + Tversky) trained to convergence on 2 CPU cores: twice as wide,
    # 40 epochs with a cosine decay, about 9 minutes a seed in bf16 (README, "PH2 on CPU").
    "cpu": _preset(model="unet_same", loss="tversky", base_width=16, epochs=40, patience=0, lr=1e-3,
                   schedule="cosine"),
    # Full-width networks, long training with early stopping: for a GPU.
    "full": _preset(base_width=64, epochs=150, patience=20, lr=1e-4),
}


def check(root: Path | None, options: DataOptions) -> DataInfo:
    """PH2 is there in either layout, with enough cases: a prepared layout's manifest, size and file list are
    checked here, its files' checksums when they are read; the original layout's cases are checked, by name, when
    they are read."""
    if root is None or not (is_prepared(root) or (Path(root) / IMAGES_DIR).is_dir()):
        raise missing_data(TASK, root, f"no '{IMAGES_DIR}' folder and no {MANIFEST}")
    size = options.size or DEFAULT_SIZE
    names = case_names(root, size)
    if len(names) < sum(SPLIT_SIZES):
        raise missing_data(TASK, root, f"{len(names)} IMDxxx cases, the protocol needs {sum(SPLIT_SIZES)}")
    return DataInfo(shape=(size, size, 3), count=len(names), source=str(root))


def load(root: Path | None, options: DataOptions) -> Splits:
    """The seeded 100 / 50 / 50 split of the resized cases (the names in each part: ``description``)."""
    data = load_ph2(root, size=options.size or DEFAULT_SIZE)
    everything = Images(data.images, data.masks, list(data.names))
    split = split_ph2(data.names, seed=options.split_seed, sizes=SPLIT_SIZES)
    index = {n: i for i, n in enumerate(data.names)}
    parts = {k: everything.subset([index[n] for n in names]) for k, names in split.items()}
    return Splits(parts["train"], parts["val"], parts["test"], split)


TASK = Task(
    name="ph2",
    title="PH2",
    data_dir="ph2",
    expected="'PH2 Dataset images/IMDxxx/...' (the original PH2 layout, 200 cases) or the prepared layout of "
             "datasets/prepare_ph2.py (manifest.json, images/, masks/)",
    how_to_get="PH2 is not shipped (research terms): download PH2Dataset.rar from the ADDI project "
               "(www.fc.up.pt/addi/ph2 database.html) and unpack it.",
    presets=PRESETS,
    default_preset="quick",
    data_flags=("size", "split_seed"),
    check=check,
    load=load,
    data_defaults={"size": DEFAULT_SIZE},
)
