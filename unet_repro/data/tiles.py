"""Training tiles as in the paper: random windows of the mirror-padded images with the label and weight-map tiles at
their centre (`TileDataset`), and the sample ids each process of a run takes per epoch (`EpochSampler`)."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from ..weightmap import PAPER_SIGMA, PAPER_W0
from .intensity import normalize
from .targets import training_targets, weight_maps


def mirror_pad(a: np.ndarray, top: int, bottom: int, left: int, right: int) -> np.ndarray:
    """Pad the first two axes by mirroring at the border (no edge repeat, like cv2.BORDER_REFLECT_101);
    works for pads larger than the image, as overlap-tile prediction of small images needs."""
    pad = [(top, bottom), (left, right)] + [(0, 0)] * (a.ndim - 2)
    return np.pad(a, pad, mode="reflect")


class TileDataset(torch.utils.data.Dataset):
    """Random training tiles as in the paper: an input tile of ``tile_in`` px cut from the mirror-padded slice and
    the label and weight-map tiles of ``tile_out`` px at its centre (572 -> 388 for the paper's U-Net: 92 px of
    mirrored context on each side).

    With ``weighted`` (a loss that uses the paper's weight map) the weight map of each label is computed once
    (`unet_repro.data.targets.weight_maps`) and then only cut and deformed along with the image; without, no
    weight map is computed and items have no ``weight``. Sample ``i`` of epoch ``e`` is a pure function of ``(seed, e, i)`` (`sample`): the slice, the
    position and the augmentation all draw from a generator seeded with them, so a resumed run, another number of
    workers or another number of data-parallel processes sees the same tiles.

    Indexing: ``ds[i]`` is sample ``i`` of the epoch set with `set_epoch`; an index past the epoch counts on into
    the following ones, ``ds[k * samples_per_epoch + i]`` being sample ``i`` of epoch ``set epoch + k``. So the
    global sample ids ``e * samples_per_epoch + i`` that `EpochSampler` yields address every epoch without
    `set_epoch`, and one DataLoader (with persistent workers, whose copies of the dataset never see `set_epoch`)
    serves a whole run.

    The labels are read as their ``kind`` says (`unet_repro.data.targets`: binary masks, instance labels, class
    masks); what is cut and deformed is the training target of each.

    Items: ``image`` (C, tile_in, tile_in) float32, ``label`` (1, tile_out, tile_out) float32 (in {0, 1}, or class
    indices), and with ``weighted`` ``weight`` (1, tile_out, tile_out) float32.
    """

    def __init__(self, images: np.ndarray | Sequence[np.ndarray], labels: np.ndarray | Sequence[np.ndarray],
                 tile_in: int = 572, tile_out: int = 388, samples_per_epoch: int = 100, augment=None,
                 w0: float = PAPER_W0, sigma: float = PAPER_SIGMA, seed: int = 0, weighted: bool = True,
                 kind: str = "binary") -> None:
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        if (tile_in - tile_out) % 2 or tile_in < tile_out:
            raise ValueError(f"tile_in ({tile_in}) - tile_out ({tile_out}) must be even and >= 0")
        self.tile_in, self.tile_out, self.margin = tile_in, tile_out, (tile_in - tile_out) // 2
        self.samples_per_epoch, self.augment, self.seed, self.epoch = samples_per_epoch, augment, seed, 0
        weights = weight_maps(labels, w0, sigma, kind) if weighted else [None] * len(labels)
        self.images, self.labels, self.weights, self.sizes = [], [], [], []
        for img, lab, w in zip(images, training_targets(labels, kind), weights):
            h, w_ = lab.shape
            if img.shape[:2] != (h, w_):
                raise ValueError(f"image {img.shape[:2]} and label {lab.shape} differ in size")
            # Pad once: mirrored context all round, plus enough to cut a whole tile from an image smaller than it.
            m, extra_y, extra_x = self.margin, max(0, tile_out - h), max(0, tile_out - w_)
            self.images.append(mirror_pad(img, m, m + extra_y, m, m + extra_x))
            self.labels.append(mirror_pad(lab.astype(np.uint8), m, m + extra_y, m, m + extra_x))
            self.weights.append(None if w is None else mirror_pad(w.astype(np.float32), m, m + extra_y, m, m + extra_x))
            self.sizes.append((max(h, tile_out), max(w_, tile_out)))

    def __len__(self) -> int:
        return self.samples_per_epoch

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        epochs_on, i = divmod(int(index), self.samples_per_epoch)
        return self.sample(self.epoch + epochs_on, i)

    def sample(self, epoch: int, index: int) -> dict[str, torch.Tensor]:
        """Sample `index` of `epoch`: a pure function of ``(seed, epoch, index)``."""
        rng = np.random.default_rng((self.seed, int(epoch), int(index)))
        k = int(rng.integers(len(self.images)))
        h, w = self.sizes[k]
        y, x = int(rng.integers(h - self.tile_out + 1)), int(rng.integers(w - self.tile_out + 1))
        window = np.s_[y:y + self.tile_in, x:x + self.tile_in]
        image, label = self.images[k][window], self.labels[k][window]
        weight = None if self.weights[k] is None else self.weights[k][window]
        if self.augment is not None:
            image, label, weight = self.augment(image, label, weight, seed=int(rng.integers(2**31)))
        m, o = self.margin, self.tile_out
        image = normalize(np.ascontiguousarray(image))
        image = image[None] if image.ndim == 2 else image.transpose(2, 0, 1)
        item = {"image": torch.from_numpy(np.ascontiguousarray(image)),
                "label": torch.from_numpy(np.ascontiguousarray(label[m:m + o, m:m + o], dtype=np.float32)[None])}
        if weight is not None:
            item["weight"] = torch.from_numpy(np.ascontiguousarray(weight[m:m + o, m:m + o], dtype=np.float32)[None])
        return item


class EpochSampler(torch.utils.data.Sampler[int]):
    """The global sample ids of one epoch that one process of a data-parallel run takes.

    With ``n = samples_per_epoch`` and ``W = world_size`` process ``rank`` takes samples ``rank, rank + W,
    rank + 2W, ...`` of epoch ``e`` (`set_epoch`), as the ids ``e * n + i`` that `TileDataset` reads as sample
    ``i`` of epoch ``e``. The W processes together see each sample of the epoch once, the same samples one process
    sees with ``W = 1``, so the tiles stay a pure function of (seed, epoch, index) whatever W is. Interleaving
    (rather than contiguous blocks) puts the W tiles of one synchronous step next to each other in the epoch:
    pass ``p`` of the W processes covers samples ``p W .. p W + W - 1``, which one process with a W times larger
    batch would put in one batch. ``n`` must be a multiple of W.
    """

    def __init__(self, samples_per_epoch: int, rank: int = 0, world_size: int = 1) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, {world_size}), got {rank}")
        if samples_per_epoch % world_size:
            raise ValueError(f"samples_per_epoch ({samples_per_epoch}) must be a multiple of world_size "
                             f"({world_size}) so that every process takes as many samples")
        self.samples_per_epoch, self.rank, self.world_size, self.epoch = samples_per_epoch, rank, world_size, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __iter__(self):
        start = self.epoch * self.samples_per_epoch
        return iter(range(start + self.rank, start + self.samples_per_epoch, self.world_size))

    def __len__(self) -> int:
        return self.samples_per_epoch // self.world_size
