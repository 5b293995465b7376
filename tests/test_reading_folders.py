"""Folders of images and masks paired by name, never by position: own data (`unet_repro.data.folder`,
`unet_repro.tasks.folder`) and ISBI-2012 slice folders (`unet_repro.data.isbi`), each case written in its real file
format; plus the intensity rules and resizing on own data."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import tifffile
from conftest import synthetic_em, write_stack
from PIL import Image

from unet_repro.data.folder import load_folder, pair_files
from unet_repro.data.isbi import load_isbi, read_stack
from unet_repro.errors import DataError
from unet_repro.tasks import folder as folder_task
from unet_repro.tasks import isbi as isbi_task
from unet_repro.tasks.base import DataOptions

REPO = Path(__file__).resolve().parents[1]
RNG = np.random.default_rng(3)


def blobs(seed: int, size: int = 32) -> np.ndarray:
    """A 0/255 mask of a few rectangles."""
    r = np.random.default_rng(seed)
    m = np.zeros((size, size), np.uint8)
    for _ in range(3):
        y, x = r.integers(0, size - 8, 2)
        m[y:y + 6, x:x + 7] = 255
    return m


def make(root: Path, n: int = 3, size: int = 32) -> tuple[Path, Path]:
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i in range(n):
        Image.fromarray(RNG.integers(0, 256, (size, size)).astype(np.uint8)).save(root / "images" / f"c{i}.png")
        Image.fromarray(blobs(i, size)).save(root / "masks" / f"c{i}.png")
    return root / "images", root / "masks"


def one_line_error(fn, *args, **kw) -> str:
    with pytest.raises(DataError) as e:
        fn(*args, **kw)
    msg = str(e.value)
    assert "\n" not in msg, msg
    return msg


# -- pairing own data ----------------------------------------------------------------------------------------------

def test_hidden_and_stray_files_are_named(tmp_path):
    images, masks = make(tmp_path)
    (masks / ".DS_Store").write_bytes(b"x")
    (images / "._c0.png").write_bytes(b"x")
    msg = one_line_error(pair_files, images, masks)
    assert "._c0.png" in msg
    (images / "._c0.png").unlink()
    assert ".DS_Store" in one_line_error(pair_files, images, masks)


def test_two_masks_for_one_image_are_refused(tmp_path):
    images, masks = make(tmp_path)
    Image.fromarray(blobs(0)).save(masks / "c1_mask.png")
    msg = one_line_error(pair_files, images, masks)
    assert "two masks for the image c1.png" in msg and "c1.png and c1_mask.png" in msg


def test_unpaired_files_are_named(tmp_path):
    images, masks = make(tmp_path)
    (masks / "c2.png").rename(masks / "c9.png")
    msg = one_line_error(pair_files, images, masks)
    assert "no mask for c2.png" in msg and "no image for c9.png" in msg


def test_mask_of_another_size_and_the_image_as_mask_are_refused(tmp_path):
    images, masks = make(tmp_path)
    Image.fromarray(blobs(1, 30)).save(masks / "c1.png")
    msg = one_line_error(load_folder, images, masks)
    assert "c1.png is 30x30 but its image" in msg and "is 32x32" in msg
    (images / "c1.png").replace(masks / "c1.png")
    Image.open(masks / "c1.png").save(images / "c1.png")
    assert "c1.png equals its image" in one_line_error(load_folder, images, masks)


def test_multi_page_images_pair_with_multi_page_masks_page_by_page(tmp_path):
    images, masks = make(tmp_path, n=2)
    stack = RNG.integers(0, 65536, (4, 32, 32)).astype(np.uint16)
    labels = np.stack([blobs(10 + k) // 255 for k in range(4)])
    tifffile.imwrite(images / "s.tif", stack, photometric="minisblack")
    tifffile.imwrite(masks / "s.tif", labels, photometric="minisblack")
    data = load_folder(images, masks, rule="percentile")
    assert data.names == ["c0", "c1", "s.tif[0]", "s.tif[1]", "s.tif[2]", "s.tif[3]"]
    assert data.files == ["c0.png", "c1.png", "s.tif", "s.tif", "s.tif", "s.tif"]
    for k in range(4):
        assert np.array_equal(data.masks[2 + k], labels[k])
    tifffile.imwrite(masks / "s.tif", labels[:3], photometric="minisblack")
    msg = one_line_error(load_folder, images, masks)
    assert "s.tif has 3 page(s) but its image" in msg and "has 4" in msg


def test_gray_and_rgb_images_mix_as_rgb_other_mixes_are_refused(tmp_path):
    images, masks = make(tmp_path)
    rgb = RNG.integers(0, 256, (32, 32, 3)).astype(np.uint8)
    Image.fromarray(rgb).save(images / "c1.png")
    gray = np.asarray(Image.open(images / "c0.png"))
    data = load_folder(images, masks)
    assert data.channels == 3 and np.array_equal(data.images[1], rgb)
    assert np.array_equal(data.images[0], np.dstack([gray] * 3))
    tifffile.imwrite(images / "c2.tif", np.zeros((2, 32, 32), np.uint8), metadata={"axes": "CYX"})
    (images / "c2.png").unlink()
    assert "differ in channels" in one_line_error(load_folder, images, masks)


# -- intensity on own data -----------------------------------------------------------------------------------------

def test_16_bit_images_under_both_rules(tmp_path):
    images, masks = make(tmp_path)
    twelve_bit = [RNG.integers(0, 4096, (32, 32)).astype(np.uint16) for _ in range(3)]
    for i, a in enumerate(twelve_bit):
        (images / f"c{i}.png").unlink()
        tifffile.imwrite(images / f"c{i}.tif", a)
    data = load_folder(images, masks)  # "range"
    assert all(np.allclose(g, a / 65535.0, atol=1e-7) for g, a in zip(data.images, twelve_bit))
    data = load_folder(images, masks, rule="percentile")
    for g, a in zip(data.images, twelve_bit):
        lo, hi = percentile_by_hand(a, 1), percentile_by_hand(a, 99.8)
        assert g.dtype == np.float32 and np.allclose(g, (a - lo) / (hi - lo), atol=1e-5)


def percentile_by_hand(values: np.ndarray, q: float) -> float:
    """The linear-interpolation percentile written out: position q/100 * (n - 1) in the sorted values."""
    v = np.sort(values.ravel()).astype(np.float64)
    pos = q / 100 * (len(v) - 1)
    lo = int(np.floor(pos))
    return v[lo] + (pos - lo) * (v[min(lo + 1, len(v) - 1)] - v[lo])


def test_uint8_images_under_range_are_read_as_before(tmp_path):
    images, masks = make(tmp_path)
    data = load_folder(images, masks)
    for i, g in enumerate(data.images):
        assert g.dtype == np.uint8 and np.array_equal(g, np.asarray(Image.open(images / f"c{i}.png")))
        assert np.array_equal(data.masks[i], blobs(i) // 255)


def test_range_rule_refuses_floats_outside_0_1_and_int_images(tmp_path):
    images, masks = make(tmp_path)
    (images / "c0.png").unlink()
    tifffile.imwrite(images / "c0.tif", RNG.random((32, 32)).astype(np.float32) * 4000)
    msg = one_line_error(load_folder, images, masks)
    assert "c0.tif" in msg and "--normalization percentile" in msg
    assert load_folder(images, masks, rule="percentile").images[0].dtype == np.float32
    tifffile.imwrite(images / "c0.tif", RNG.integers(0, 9, (32, 32)).astype(np.int32))
    assert "int32" in one_line_error(load_folder, images, masks)


# -- resizing ------------------------------------------------------------------------------------------------------

def test_resizing_masks_never_invents_values(tmp_path):
    images, masks = make(tmp_path)
    data = load_folder(images, masks, size=16)  # binary: 2x2 area average, then >= 0.5
    for i, m in enumerate(data.masks):
        by_hand = (blobs(i) / 255).reshape(16, 2, 16, 2).mean(axis=(1, 3)) >= 0.5
        assert np.array_equal(m, by_hand.astype(np.uint8))
    labels = [np.kron(RNG.integers(0, 300, (8, 8)), np.ones((4, 4), np.int64)).astype(np.uint16) for _ in range(3)]
    for i, lab in enumerate(labels):
        tifffile.imwrite(masks / f"c{i}.tif", lab)
        (masks / f"c{i}.png").unlink()
    data = load_folder(images, masks, size=16, kind="instances")
    for m, lab in zip(data.masks, labels):
        assert m.dtype == np.int32 and set(np.unique(m)) <= set(np.unique(lab))
        assert np.array_equal(m, lab[::2, ::2])  # exact 2x: nearest takes one pixel of each 2x2 block


# -- the folder task -----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class WithReading(DataOptions):
    """DataOptions as it will be once the reading flags exist."""

    mask_kind: str | None = None
    classes: int | None = None
    normalization: str | None = None


def test_folder_task_reads_once_and_records_what_it_read(tmp_path):
    images, masks = make(tmp_path, n=6)
    options = WithReading(images=images, masks=masks, split_seed=1, normalization="percentile")
    info = folder_task.check(None, options)
    assert info.shape == (32, 32, 1) and info.count == 6
    splits = folder_task.load(None, options)
    d = splits.description
    assert d["mask_kind"] == "binary" and d["classes"] == 2 and d["normalization"] == "percentile"
    assert d["split_unit"] == "image" and sorted(d["train"] + d["val"] + d["test"]) == [f"c{i}" for i in range(6)]
    assert any(line.startswith("masks: binary") for line in d["reading"])
    assert splits.train.images[0].dtype == np.float32  # the percentile rule applied to whole images
    plain = folder_task.load(None, DataOptions(images=images, masks=masks, split_seed=1))  # fields absent: defaults
    assert plain.description["normalization"] == "range" and plain.train.images[0].dtype == np.uint8


def test_folder_task_keeps_the_pages_of_a_stack_together(tmp_path):
    images, masks = make(tmp_path, n=5)
    for name in ("s", "t"):
        tifffile.imwrite(images / f"{name}.tif", RNG.integers(0, 256, (3, 32, 32)).astype(np.uint8),
                         photometric="minisblack")
        tifffile.imwrite(masks / f"{name}.tif", np.stack([blobs(k) for k in range(3)]), photometric="minisblack")
    splits = folder_task.load(None, DataOptions(images=images, masks=masks, split_seed=0))
    assert splits.description["split_unit"] == "file"
    for part in ("train", "val", "test"):
        names = splits.description[part]
        for stack in ("s.tif", "t.tif"):
            pages = [n for n in names if n.startswith(stack)]
            assert pages in ([], [f"{stack}[{k}]" for k in range(3)])


# -- ISBI slice folders --------------------------------------------------------------------------------------------

def slice_folders(root: Path, n: int = 8) -> tuple[np.ndarray, np.ndarray]:
    images, labels = synthetic_em(n=n, size=24, cells=4, seed=5)
    for name, stack in (("train-volume", images), ("train-labels", labels)):
        (root / name).mkdir(parents=True)
        for i, s in enumerate(stack):
            Image.fromarray(s).save(root / name / f"slice_{i}.png")
    return images, labels


def test_isbi_slice_folders_pair_by_name(tmp_path):
    images, labels = slice_folders(tmp_path)
    data = load_isbi(tmp_path)
    assert np.array_equal(data.images, images) and np.array_equal(data.labels, labels // 255)
    (tmp_path / "train-labels" / "slice_3.png").unlink()
    Image.fromarray(labels[0]).save(tmp_path / "train-labels" / "slice_9.png")
    msg = one_line_error(load_isbi, tmp_path)
    assert "no label for slice_3.png" in msg and "no image for slice_9.png" in msg
    opts = DataOptions(val_slices=2)
    assert "slice_3.png" in one_line_error(isbi_task.check, tmp_path, opts)  # before a run folder is made


def test_isbi_hidden_file_in_a_slice_folder_is_named(tmp_path):
    slice_folders(tmp_path)
    (tmp_path / "train-labels" / "._slice_1.png").write_bytes(b"x")
    assert "._slice_1.png" in one_line_error(load_isbi, tmp_path)
    assert "._slice_1.png" in one_line_error(read_stack, tmp_path / "train-labels")


@pytest.mark.parametrize("values,words", [((0, 100), "{0, 100}"), ((1, 2), "{1, 2}"), (None, "image stack")])
def test_isbi_labels_that_are_not_binary_are_refused_with_their_values(tmp_path, values, words):
    images, labels = synthetic_em(n=3, size=24, cells=4)
    write_stack(tmp_path / "train-volume.tif", images)
    bad = images if values is None else np.where(labels > 0, values[1], values[0]).astype(np.uint8)
    write_stack(tmp_path / "train-labels.tif", bad)
    msg = one_line_error(load_isbi, tmp_path)
    assert "train-labels.tif" in msg and words in msg and "0 (membrane) and 255 (cell), or 0 and 1" in msg
    assert words in one_line_error(isbi_task.check, tmp_path, DataOptions(val_slices=1))


def test_isbi_zero_one_labels_read_like_zero_255(tmp_path):
    images, labels = synthetic_em(n=3, size=24, cells=4)
    write_stack(tmp_path / "train-volume.tif", images)
    write_stack(tmp_path / "train-labels.tif", labels // 255)
    assert np.array_equal(load_isbi(tmp_path).labels, labels // 255)


def test_shipped_isbi_stacks_read_exactly_as_the_files_hold_them():
    root = REPO / "datasets" / "isbi2012"
    data = load_isbi(root)
    assert np.array_equal(data.images, tifffile.imread(root / "train-volume.tif"))
    assert np.array_equal(data.labels, (tifffile.imread(root / "train-labels.tif") == 255).astype(np.uint8))


def test_read_image_for_prediction_gives_one_plane_in_its_dtype(tmp_path):
    from unet_repro.data.folder import read_image
    a = RNG.integers(0, 65536, (9, 11)).astype(np.uint16)
    Image.fromarray(a).save(tmp_path / "a.png")
    got = read_image(tmp_path / "a.png")
    assert got.dtype == np.uint16 and np.array_equal(got, a)
    tifffile.imwrite(tmp_path / "s.tif", np.zeros((3, 9, 11), np.uint8), photometric="minisblack")
    assert "3 pages" in one_line_error(read_image, tmp_path / "s.tif")
