"""What a task (a dataset and how this project trains on it) is, and what every task shares.

A `Task` is a small record: its name, the folder of its data under a data root, how to check that folder and what
was expected there, how to load the train / validation / test splits, and its presets (`TrainConfig`s; the tile comes from
`unet_repro.geometry.training_tile`). `unet_repro.tasks.TASKS` registers them; the entry points never know a dataset's facts themselves.

The data root of a task is found in this order: ``--data-root`` (the task's folder itself), ``$UNET_REPRO_DATA``
(a folder holding ``isbi2012/``, ``ph2/``), the repository's ``datasets/`` (when running from a checkout).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np

from ..data.root import DATA_ENV, REPO_DATASETS
from ..errors import DataError, DataNotFoundError
from ..training.config import TrainConfig



@dataclass
class Images:
    """N images with their binary labels (None for an unlabelled test set) and names.

    ``images``: N arrays (H, W) or (H, W, C) uint8 (a stack (N, H, W[, C]) when all share a size); ``labels``: N
    arrays (H, W) uint8 in {0, 1} (foreground = 1: cells for ISBI, lesions for PH2); ``names``: N strings.
    """

    images: np.ndarray | list[np.ndarray]
    labels: np.ndarray | list[np.ndarray] | None
    names: list[str]

    def __len__(self) -> int:
        return len(self.names)

    def subset(self, index: Sequence[int]) -> Images:
        pick = list(index)

        def take(a):
            return a[pick] if isinstance(a, np.ndarray) else [a[i] for i in pick]
        return Images(take(self.images), None if self.labels is None else take(self.labels),
                      [self.names[i] for i in pick])


@dataclass
class Splits:
    """The images a run trains on, validates on each epoch, and is tested on once (``test`` may be unlabelled or
    None), and a description of the split for the run's records (e.g. the names in each part)."""

    train: Images
    val: Images
    test: Images | None
    description: dict = field(default_factory=dict)


@dataclass(frozen=True)
class DataOptions:
    """How to read and split a task's data (the data flags of the entry points; each task uses its own)."""

    size: int | None = None  # resize every image to size x size (PH2, own data); None: native size
    split_seed: int = 0  # seed of a random split (PH2, own data)
    val_slices: int = 5  # ISBI: the last N training slices are held out
    images: Path | None = None  # own data: folder of images
    masks: Path | None = None  # own data: folder of masks, paired with the images by file name
    val_fraction: float = 0.2  # own data
    test_fraction: float = 0.2  # own data
    mask_kind: str | None = None  # own data: "binary", "instances", "classes"; None: decided from the masks
    classes: int | None = None  # own data: K of class masks (the --classes of the run); None: from the masks
    normalization: str | None = None  # how gray values become inputs (the run's, unet_repro.data.intensity)
    border_width: int = 1  # own instance labels: width of the separation borders drawn between touching objects


@dataclass(frozen=True)
class DataInfo:
    """What a task's `check` learnt of its data: the image shape the run will see (H, W, C) (the largest one when
    sizes differ), how many labelled images there are, what the masks are (their kind and K), and the lines that say
    what was read (printed first by a run)."""

    shape: tuple[int, int, int]
    count: int
    source: str  # where it was read from, for the run's records
    mask_kind: str = "binary"
    classes: int | None = None
    normalization: str | None = None
    lines: tuple[str, ...] = ()


@dataclass(frozen=True)
class Task:
    """A dataset and how this project trains on it. See the module docstring."""

    name: str
    title: str
    data_dir: str | None  # folder name under a data root ("isbi2012"); None: the task's flags say where
    expected: str  # what its folder must hold, for messages
    how_to_get: str  # where to get it, for messages
    presets: Mapping[str, TrainConfig]
    default_preset: str
    data_flags: tuple[str, ...]  # the DataOptions fields its commands offer as flags
    check: Callable[[Path | None, DataOptions], DataInfo]  # raises DataNotFoundError / DataError, naming the file
    load: Callable[[Path | None, DataOptions], Splits]
    data_defaults: Mapping[str, object] = field(default_factory=dict)  # its own defaults of DataOptions fields

    def preset(self, name: str) -> TrainConfig:
        return self.presets[name]


def find_data_root(task: Task, given: Path | None = None) -> Path | None:
    """The task's data folder: `given` (``--data-root``), else ``$UNET_REPRO_DATA/<data_dir>``, else the
    repository's ``datasets/<data_dir>``. A task without a data folder returns None."""
    if task.data_dir is None:
        return None
    if given is not None:
        return Path(given)
    env = os.environ.get(DATA_ENV)
    if env:
        return Path(env) / task.data_dir
    return REPO_DATASETS / task.data_dir


def missing_data(task: Task, root: Path, what: str | None = None) -> DataNotFoundError:
    """The error for a task's data that is not at `root`: where it was looked for, what was expected, how to get
    it and how to point the code at it."""
    return DataNotFoundError(
        f"{task.title} data not found at {root}" + (f" ({what})" if what else "") + f"; expected {task.expected}. "
        f"{task.how_to_get} Then pass --data-root DIR (the folder itself) or set {DATA_ENV} to the folder that holds "
        f"{task.data_dir}/ (see datasets/README.md)")
