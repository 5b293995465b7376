"""Masks as annotation tools write them (`unet_repro.data.masks`, through `unet_repro.data.folder.load_folder`):
binary, instance and class masks in their real file formats, each set read pixel for pixel as the kind it is, or
refused in one line naming the files and the flag to pass."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from unet_repro.data.folder import load_folder
from unet_repro.data.masks import read_mask_file, read_mask_set
from unet_repro.errors import DataError, UsageError

SIZE = 64


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def squares(n: int, seed: int, size: int = SIZE, side: int = 6) -> np.ndarray:
    """Instance labels 1..n: n separate squares on a grid (so each label is one region), int32."""
    out = np.zeros((size, size), np.int32)
    per_row = size // (side + 2)
    cells = rng(seed).permutation(per_row * per_row)[:n]
    for k, c in enumerate(cells, start=1):
        y, x = divmod(int(c), per_row)
        out[y * (side + 2) + 1:y * (side + 2) + 1 + side, x * (side + 2) + 1:x * (side + 2) + 1 + side] = k
    return out


def class_mask(seed: int, classes: int = 3) -> np.ndarray:
    """Classes 1..classes-1 as several separate squares each (as cells of two kinds are), uint8."""
    labels = squares(12, seed)
    return np.where(labels > 0, 1 + labels % (classes - 1), 0).astype(np.uint8)


def write_set(root: Path, masks: list[np.ndarray], suffix: str = ".png", writer=None) -> tuple[Path, Path]:
    """Random gray images and the given masks, as images/case_i.png and masks/case_i<suffix>."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i, m in enumerate(masks):
        h, w = m.shape[:2]
        Image.fromarray(rng(100 + i).integers(0, 256, (h, w)).astype(np.uint8)).save(root / "images" / f"case_{i}.png")
        path = root / "masks" / f"case_{i}{suffix}"
        if writer is not None:
            writer(path, m)
        elif suffix in (".tif", ".tiff"):
            tifffile.imwrite(path, m)
        else:
            Image.fromarray(m).save(path)
    return root / "images", root / "masks"


def refused(*words: str, fn=load_folder, **kw) -> str:
    with pytest.raises(DataError) as e:
        fn(**kw)
    msg = str(e.value)
    assert "\n" not in msg, msg
    for w in words:
        assert w in msg, msg
    return msg


# -- binary --------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("foreground", [1, 100, 255])
def test_binary_masks_with_any_foreground_value(tmp_path, foreground):
    masks = [((squares(5, s) > 0) * foreground).astype(np.uint8) for s in range(3)]
    data = load_folder(*write_set(tmp_path, masks))
    assert data.kind == "binary" and data.classes == 2
    for got, m in zip(data.masks, masks):
        assert got.dtype == np.uint8 and np.array_equal(got, (m == foreground).astype(np.uint8))
    assert any(f"binary (every mask holds 0 and at most one other value, {foreground})" in line for line in data.lines)


@pytest.mark.parametrize("foreground", [1, 255])
def test_jpeg_masks_are_read_by_the_lossy_rule(tmp_path, foreground):
    truth = [np.kron(rng(s).integers(0, 2, (8, 8)), np.ones((8, 8), np.int64)).astype(np.uint8) for s in range(3)]
    # A blob not aligned to the 8x8 blocks, whose edges JPEG blurs.
    for t in truth:
        t[20:37, 5:29] = 1
    data = load_folder(*write_set(tmp_path, [t * foreground for t in truth], ".jpg",
                                  writer=lambda p, m: Image.fromarray(m).save(p, quality=90)))
    assert data.kind == "binary"
    for got, t in zip(data.masks, truth):
        assert (got != t).mean() < 0.02  # only JPEG's ringing in the 8x8 blocks an edge crosses may differ
        assert got[~edge_blocks(t)].tolist() == t[~edge_blocks(t)].tolist()  # in the other blocks, exact
    assert any("JPEG mask(s) read by the lossy rule" in line for line in data.lines)


def edge_blocks(mask: np.ndarray) -> np.ndarray:
    """The pixels of JPEG's 8x8 blocks that hold both foreground and background."""
    h, w = mask.shape
    blocks = mask.reshape(h // 8, 8, w // 8, 8)
    mixed = blocks.min(axis=(1, 3)) != blocks.max(axis=(1, 3))
    return np.kron(mixed, np.ones((8, 8), bool))


def test_jpeg_that_is_not_near_binary_is_refused(tmp_path):
    noise = [rng(s).integers(0, 256, (SIZE, SIZE)).astype(np.uint8) for s in range(2)]
    refused("case_0.jpg", "near-binary", **dict(zip(("images_dir", "masks_dir"),
                                                    write_set(tmp_path, noise, ".jpg"))))


def test_red_on_black_and_palette_masks(tmp_path):
    truth = [squares(5, s) > 0 for s in range(3)]

    def red(path, m):
        rgb = np.zeros((*m.shape, 3), np.uint8)
        rgb[m] = (255, 0, 0)
        Image.fromarray(rgb).save(path)

    data = load_folder(*write_set(tmp_path / "red", truth, writer=red))
    assert data.kind == "binary" and all(np.array_equal(g, t) for g, t in zip(data.masks, truth))
    assert any("(255, 0, 0) -> 1" in line for line in data.lines)

    def palette(path, m):
        im = Image.frombytes("P", m.shape[::-1], m.astype(np.uint8).tobytes())
        im.putpalette([0, 0, 0, 0, 255, 0] + [0] * 762)  # index 1 is drawn green
        im.save(path)

    data = load_folder(*write_set(tmp_path / "pal", truth, writer=palette))
    assert data.kind == "binary" and all(np.array_equal(g, t) for g, t in zip(data.masks, truth))


def test_gray_valued_rgb_masks_read_as_gray(tmp_path):
    truth = [(squares(5, s) > 0).astype(np.uint8) * 255 for s in range(2)]
    data = load_folder(*write_set(tmp_path, truth, writer=lambda p, m: Image.fromarray(np.dstack([m] * 3)).save(p)))
    assert data.kind == "binary" and all(np.array_equal(g, t // 255) for g, t in zip(data.masks, truth))


def test_a_stray_value_in_a_binary_mask_is_refused_not_read_one_way(tmp_path):
    masks = [(squares(5, s) > 0).astype(np.uint8) for s in range(3)]
    masks[1][0, 0] = 2
    folders = dict(zip(("images_dir", "masks_dir"), write_set(tmp_path, masks)))
    refused("case_1.png", "1 pixel(s) of value 2", "--mask-kind", **folders)
    forced = load_folder(**folders, kind="binary")  # foreground = nonzero
    assert forced.masks[1][0, 0] == 1 and forced.masks[1].sum() == (masks[1] > 0).sum()
    classes = load_folder(**folders, kind="classes")
    assert classes.classes == 3 and np.array_equal(classes.masks[1], masks[1])


def test_masks_with_different_single_values_are_refused(tmp_path):
    masks = [(squares(5, 0) > 0).astype(np.uint8), (squares(5, 1) > 0).astype(np.uint8) * 2]
    refused("{0, 1}", "{0, 2}", "--mask-kind binary", **dict(zip(("images_dir", "masks_dir"),
                                                                 write_set(tmp_path, masks))))


def test_empty_and_full_mask_sets_are_refused(tmp_path):
    empty = [np.zeros((SIZE, SIZE), np.uint8)] * 3
    refused("none of the 3 masks", "case_0.png", **dict(zip(("images_dir", "masks_dir"),
                                                            write_set(tmp_path / "e", empty))))
    full = [np.full((SIZE, SIZE), 255, np.uint8)] * 3
    refused("every pixel", "case_0.png", **dict(zip(("images_dir", "masks_dir"), write_set(tmp_path / "f", full))))


# -- instances -----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype,suffix", [(np.uint8, ".png"), (np.uint16, ".png"), (np.uint16, ".tif"),
                                          (np.uint8, ".tif")])
def test_instance_labels_keep_every_object(tmp_path, dtype, suffix):
    masks = [squares(200, s, size=128, side=4).astype(dtype) for s in range(2)]
    data = load_folder(*write_set(tmp_path, masks, suffix))
    assert data.kind == "instances" and data.classes is None
    for got, m in zip(data.masks, masks):
        assert got.dtype == np.int32 and np.array_equal(got, m)
        assert len(np.unique(got)) == 201
    assert any("objects per image min 200, median 200, max 200" in line for line in data.lines)


def test_32_bit_and_float_instance_tiffs(tmp_path):
    big = [squares(6, s).astype(np.uint32) * 100_000 for s in range(2)]
    data = load_folder(*write_set(tmp_path / "u32", big, ".tif"))
    assert data.kind == "instances" and all(np.array_equal(g, m) for g, m in zip(data.masks, big))
    floats = [squares(6, s).astype(np.float32) for s in range(2)]  # label images as some tools save them
    data = load_folder(*write_set(tmp_path / "f32", floats, ".tif"))
    assert data.kind == "instances" and all(np.array_equal(g, m) for g, m in zip(data.masks, floats))
    fractions = [m / 7 for m in floats]
    refused("case_0.tif", "fractional", **dict(zip(("images_dir", "masks_dir"),
                                                  write_set(tmp_path / "p", fractions, ".tif"))))


# -- classes -------------------------------------------------------------------------------------------------------

def test_class_masks_read_as_classes(tmp_path):
    masks = [class_mask(s) for s in range(3)]
    data = load_folder(*write_set(tmp_path, masks))
    assert data.kind == "classes" and data.classes == 3
    assert all(g.dtype == np.uint8 and np.array_equal(g, m) for g, m in zip(data.masks, masks))
    counts = sum(np.bincount(m.ravel(), minlength=3) for m in masks)
    expected = ", ".join(f"{c}: {n / counts.sum():.1%}" for c, n in enumerate(counts))
    assert any(f"class pixel fractions {expected}" in line for line in data.lines)


def test_ambiguous_masks_are_refused_and_read_when_forced(tmp_path):
    # Two labels per mask, each one region: two objects, or one region of each of two classes?
    masks = [squares(2, s).astype(np.uint8) for s in range(3)]
    folders = dict(zip(("images_dir", "masks_dir"), write_set(tmp_path, masks)))
    refused("case_0.png holds values {0, 1, 2} (classes or instances?",
            "--mask-kind classes or --mask-kind instances", **folders)
    assert load_folder(**folders, kind="classes").classes == 3
    inst = load_folder(**folders, kind="instances")
    assert inst.kind == "instances" and all(np.array_equal(g, m) for g, m in zip(inst.masks, masks))
    assert load_folder(**folders, n_classes=3).kind == "classes"


def test_class_checks(tmp_path):
    masks = [class_mask(s) for s in range(3)]
    folders = dict(zip(("images_dir", "masks_dir"), write_set(tmp_path, masks)))
    refused("class(es) {3} of 0..3 never appear", **folders, kind="classes", n_classes=4)
    gap = [np.where(m == 2, 3, m).astype(np.uint8) for m in masks]  # classes 0, 1, 3: where is 2?
    refused("class(es) {2} of 0..3 never appear", **dict(zip(("images_dir", "masks_dir"),
                                                            write_set(tmp_path / "gap", gap))))
    with pytest.raises(UsageError):
        load_folder(**folders, kind="instances", n_classes=3)
    refused("holds value 2, not a class of 0..1", **folders, n_classes=2)


def test_coloured_class_masks_map_colours_in_rgb_order(tmp_path):
    masks = [class_mask(s) for s in range(3)]
    colours = np.array([[0, 0, 0], [255, 0, 0], [0, 255, 0]], np.uint8)  # class 1 red, class 2 green
    data = load_folder(*write_set(tmp_path, masks, writer=lambda p, m: Image.fromarray(colours[m]).save(p)))
    # Ascending (R, G, B): black -> 0, green (0, 255, 0) -> 1, red (255, 0, 0) -> 2, the same in every mask.
    expected = [np.choose(m, [0, 2, 1]) for m in masks]
    assert data.kind == "classes" and all(np.array_equal(g, e) for g, e in zip(data.masks, expected))
    no_black = [np.where(m[..., None] > 0, colours[2], colours[1]) for m in masks]  # green on red
    folders = write_set(tmp_path / "nb", no_black, writer=lambda p, m: Image.fromarray(m).save(p))
    refused("no black", **dict(zip(("images_dir", "masks_dir"), folders)))


def test_jpeg_masks_cannot_be_forced_to_labels(tmp_path):
    masks = [(squares(5, s) > 0).astype(np.uint8) * 255 for s in range(2)]
    folders = dict(zip(("images_dir", "masks_dir"), write_set(tmp_path, masks, ".jpg")))
    refused("lossy", "instances", **folders, kind="instances")


# -- single files --------------------------------------------------------------------------------------------------

def test_a_mask_file_with_several_channels_or_transparency_is_refused(tmp_path):
    tifffile.imwrite(tmp_path / "c.tif", np.zeros((2, 8, 8), np.uint8), metadata={"axes": "CYX"})
    with pytest.raises(DataError, match="c.tif.*2 channels"):
        read_mask_file(tmp_path / "c.tif")
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., 3] = 255
    rgba[0, 0, 3] = 10
    Image.fromarray(rgba).save(tmp_path / "a.png")
    with pytest.raises(DataError, match="a.png.*transparent"):
        read_mask_file(tmp_path / "a.png")
    Image.fromarray(np.full((8, 8), -1, np.int32)).save(tmp_path / "n.tif")
    with pytest.raises(DataError, match="n.tif.*negative"):
        read_mask_file(tmp_path / "n.tif")


def test_read_mask_set_directly():
    from unet_repro.data.masks import RawMask
    raw = [RawMask(f"m{i}.png", (squares(5, i) > 0).astype(np.uint8) * 255) for i in range(2)]
    ms = read_mask_set(raw)
    assert ms.kind == "binary" and ms.names == ["m0.png", "m1.png"]
    with pytest.raises(UsageError):
        read_mask_set(raw, kind="blobs")


def test_jpeg_of_a_zero_one_mask_in_memory_is_thresholded_between_its_levels():
    from unet_repro.data.masks import RawMask
    truth = np.zeros((SIZE, SIZE), np.uint8)
    truth[8:40, 16:48] = 1
    buf = io.BytesIO()
    Image.fromarray(truth).save(buf, format="JPEG", quality=95)
    gray = np.asarray(Image.open(io.BytesIO(buf.getvalue())))
    assert gray.max() <= 3  # a 0/1 JPEG: thresholding at 127 would read it as all background
    ms = read_mask_set([RawMask("m.jpg", gray, lossy=True)])
    assert np.array_equal(ms.masks[0], truth)
