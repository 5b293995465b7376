
import numpy as np
import pytest
import tifffile
import torch
from conftest import real_data_root, synthetic_em, write_stack
from PIL import Image

from unet_repro.models import UNet
from unet_repro.data import TileDataset, load_isbi, read_stack


def test_reads_official_layout(isbi_root):
    data = load_isbi(isbi_root)
    assert data.images.shape == (4, 96, 96) and data.images.dtype == np.uint8
    assert set(np.unique(data.labels)) == {0, 1}
    raw = tifffile.imread(isbi_root / "train-labels.tif")
    assert np.array_equal(data.labels, (raw == 255).astype(np.uint8))  # cell = 1, membrane = 0
    assert load_isbi(isbi_root, "test").labels is None


def test_reads_folder_of_png_slices(tmp_path):
    images, labels = synthetic_em(n=3, size=40)
    for name, stack in (("train-volume", images), ("train-labels", labels)):
        (tmp_path / name).mkdir()
        for i, s in enumerate(stack):
            Image.fromarray(s).save(tmp_path / name / f"{i:02d}.png")
    data = load_isbi(tmp_path)
    assert np.array_equal(data.images, images)
    assert np.array_equal(data.labels, labels // 255)


def test_png_slices_are_read_in_natural_order(tmp_path):
    for i in range(12):
        Image.fromarray(np.full((4, 4), i, np.uint8)).save(tmp_path / f"{i}.png")
    assert list(read_stack(tmp_path)[:, 0, 0]) == list(range(12))


def test_missing_file_is_named(tmp_path):
    write_stack(tmp_path / "train-volume.tif", np.zeros((2, 8, 8), np.uint8))
    with pytest.raises(FileNotFoundError, match="train-labels.tif"):
        load_isbi(tmp_path)
    with pytest.raises(FileNotFoundError, match="datasets/README.md"):
        load_isbi(tmp_path / "nowhere")


def test_label_count_mismatch_is_named(tmp_path):
    write_stack(tmp_path / "train-volume.tif", np.zeros((3, 8, 8), np.uint8))
    write_stack(tmp_path / "train-labels.tif", np.zeros((2, 8, 8), np.uint8))
    with pytest.raises(ValueError, match=r"train-labels.tif holds 2 label slices .* 3 images"):
        load_isbi(tmp_path)


def test_slices_of_different_sizes_are_named(tmp_path):
    folder = tmp_path / "train-volume"
    folder.mkdir()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(folder / "a.png")
    Image.fromarray(np.zeros((8, 9), np.uint8)).save(folder / "b.png")
    with pytest.raises(ValueError, match=r"b.png: slice is 9x8"):
        read_stack(folder)
    path = tmp_path / "mixed.tif"
    with tifffile.TiffWriter(path) as tw:
        tw.write(np.zeros((8, 8), np.uint8))
        tw.write(np.zeros((9, 8), np.uint8))
    with pytest.raises(ValueError, match=r"mixed.tif: page 1"):
        read_stack(path)


def test_unreadable_file_is_named(tmp_path):
    bad = tmp_path / "train-volume.tif"
    bad.write_bytes(b"not a tiff")
    with pytest.raises(ValueError, match="train-volume.tif: cannot be read"):
        read_stack(bad)


def test_tiles_have_context_and_match_labels(isbi_root):
    data = load_isbi(isbi_root)
    # A size-preserving check of the geometry: with no augmentation the centre of the input tile is the label tile.
    ds = TileDataset(data.images, data.labels, tile_in=92, tile_out=60, samples_per_epoch=8, seed=3)
    for i in range(len(ds)):
        item = ds[i]
        assert item["image"].shape == (1, 92, 92) and item["label"].shape == (1, 60, 60)
        assert item["weight"].shape == (1, 60, 60) and item["image"].dtype == torch.float32
        centre = item["image"][0, 16:76, 16:76]
        # membranes are dark (60) and cells bright (180) in the synthetic images
        agree = ((centre > 120 / 255).float() == item["label"][0]).float().mean()
        assert agree > 0.9
        assert torch.all(item["weight"] >= 1)


def test_tiles_are_mirror_padded_at_the_border():
    image = np.arange(64 * 64, dtype=np.float32).reshape(64, 64) / 4096
    label = np.ones((64, 64), np.uint8)
    label[:, 30:32] = 0
    ds = TileDataset([image], [label], tile_in=84, tile_out=64, samples_per_epoch=1)
    tile = ds[0]["image"][0].numpy()
    assert np.array_equal(tile[10:74, 10:74], image)
    assert np.array_equal(tile[9, 10:74], image[1])  # mirrored, edge not repeated
    assert np.array_equal(tile[10:74, 9], image[:, 1])


def test_weight_maps_are_computed_once_and_samples_are_reproducible(isbi_root, monkeypatch):
    from collections import OrderedDict

    from unet_repro.data import targets
    from unet_repro.training import evaluate

    calls = []
    original = targets.border_weight_map
    monkeypatch.setattr(targets, "_cache", OrderedDict())  # a fresh process
    monkeypatch.setattr(targets, "border_weight_map", lambda *a, **k: calls.append(1) or original(*a, **k))
    data = load_isbi(isbi_root)
    ds = TileDataset(data.images, data.labels, tile_in=92, tile_out=60, samples_per_epoch=20, seed=5)
    assert len(calls) == 4
    first = [ds[i]["image"] for i in range(5)]
    # the same labels validated (every epoch) and scored: no map computed again; another w0: computed
    model = UNet(widths=(4, 8, 16))
    for _ in range(2):
        evaluate(model, data.images[:2], data.labels[:2], loss="weighted_bce", device="cpu")
    assert len(calls) == 4
    evaluate(model, data.images[:1], data.labels[:1], loss="weighted_bce", w0=3.0, device="cpu")
    assert len(calls) == 5
    # a loss without weight map: none computed, tiles without a weight
    plain = TileDataset(data.images, data.labels, tile_in=92, tile_out=60, samples_per_epoch=2, seed=5, weighted=False,
                        w0=7.0)
    assert len(calls) == 5 and "weight" not in plain[0]
    assert all(torch.equal(a, ds[i]["image"]) for i, a in enumerate(first))
    ds.set_epoch(1)
    assert not all(torch.equal(a, ds[i]["image"]) for i, a in enumerate(first))


@pytest.mark.realdata
def test_real_isbi_stacks():
    data = load_isbi(real_data_root("isbi2012"))
    assert data.images.shape == (30, 512, 512) and data.labels.shape == (30, 512, 512)
    fraction = data.labels.mean()
    assert 0.6 < fraction < 0.9  # most pixels are cell interior, membranes are thin
    test = load_isbi(real_data_root("isbi2012"), "test")
    assert test.images.shape == (30, 512, 512)
    ds = TileDataset(data.images[:2], data.labels[:2], samples_per_epoch=2)
    item = ds[0]
    assert item["image"].shape == (1, 572, 572) and item["label"].shape == (1, 388, 388)
