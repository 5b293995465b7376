"""One DataLoader with persistent workers for a whole run: the same tiles as without workers, exact resume."""
from dataclasses import replace

import numpy as np
import torch
from conftest import synthetic_em

from unet_repro.data.tiles import EpochSampler, TileDataset
from unet_repro.models import UNet
from unet_repro.training import TrainConfig, load_checkpoint, build_train_loader, train

WIDTHS = (4, 8, 16)


def data():
    images, labels = synthetic_em(n=4, size=64, cells=8, seed=1)
    labels = (labels > 127).astype(np.uint8)
    return images[:3], labels[:3], images[3:], labels[3:]


def test_global_sample_ids_give_the_tiles_of_set_epoch():
    images, labels, _, _ = data()
    ds = TileDataset(images, labels, tile_in=92, tile_out=60, samples_per_epoch=4, seed=2)
    later = ds[2 * 4 + 1]["image"]
    ds.set_epoch(2)
    assert torch.equal(later, ds[1]["image"])


def test_persistent_workers_load_the_same_tiles_every_epoch():
    images, labels, _, _ = data()
    ds = TileDataset(images, labels, tile_in=92, tile_out=60, samples_per_epoch=4, seed=2)
    epochs = {}
    for workers in (0, 2):
        sampler = EpochSampler(4)
        loader = build_train_loader(ds, sampler, TrainConfig(batch_size=2), workers=workers, pin_memory=False)
        assert loader.persistent_workers == (workers > 0)
        epochs[workers] = []
        for epoch in range(2):
            sampler.set_epoch(epoch)
            epochs[workers] += [b["image"] for b in loader]
    assert len(epochs[2]) == 4 and all(torch.equal(a, b) for a, b in zip(epochs[0], epochs[2]))
    assert not torch.equal(epochs[0][0], epochs[0][2])  # epoch 1 is not epoch 0 again


def test_resume_with_persistent_workers_is_bit_identical(tmp_path):
    # Dropout on: the workers' seeds must not shift the global generator that draws its masks.
    cfg = TrainConfig(widths=WIDTHS, tile=UNet(widths=WIDTHS).input_size(28), dropout=0.5, lr=0.01, momentum=0.9,
                      epochs=3, steps_per_epoch=2, patience=0, seed=7, device="cpu", workers=2)
    train(cfg, *data(), tmp_path / "straight")
    train(replace(cfg, epochs=1), *data(), tmp_path / "split")
    train(cfg, *data(), tmp_path / "split", resume=tmp_path / "split" / "last.pt")
    a, b = (load_checkpoint(tmp_path / d / "last.pt")["model"] for d in ("straight", "split"))
    assert all(torch.equal(a[k], b[k]) for k in a)
