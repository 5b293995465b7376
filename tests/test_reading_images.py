"""Images as instruments and tools write them (`unet_repro.data.images`) and the intensity rules
(`unet_repro.data.intensity`): every case is written in its real file format and either read pixel for pixel as
written or refused in one line naming the file."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import tifffile
from PIL import Image

from unet_repro.data.images import describe_images, list_image_files, read_image_file
from unet_repro.data.intensity import RULES, normalize
from unet_repro.errors import DataError, UsageError

RNG = np.random.default_rng(7)


def refused(path: Path, *words: str, palette: str = "rgb") -> str:
    """The one-line DataError of reading `path`, which names the file (and `words`)."""
    with pytest.raises(DataError) as e:
        read_image_file(path, palette=palette)
    msg = str(e.value)
    assert "\n" not in msg and path.name in msg, msg
    for w in words:
        assert w in msg, msg
    return msg


def one(path: Path, **kw) -> np.ndarray:
    f = read_image_file(path, **kw)
    assert f.pages == 1
    return f.planes[0]


# -- PNG ---------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_gray_png_8_and_16_bit(tmp_path, dtype):
    a = RNG.integers(0, np.iinfo(dtype).max, (20, 30), endpoint=True).astype(dtype)
    Image.fromarray(a).save(tmp_path / "g.png")
    got = one(tmp_path / "g.png")
    assert got.dtype == dtype and np.array_equal(got, a)


def test_rgb_png_8_bit_and_16_bit(tmp_path):
    a8 = RNG.integers(0, 256, (12, 9, 3)).astype(np.uint8)
    Image.fromarray(a8).save(tmp_path / "c8.png")
    assert np.array_equal(one(tmp_path / "c8.png"), a8)
    a16 = RNG.integers(0, 65536, (12, 9, 3)).astype(np.uint16)
    cv2.imwrite(str(tmp_path / "c16.png"), a16[..., ::-1])  # OpenCV writes BGR
    got = one(tmp_path / "c16.png")
    assert got.dtype == np.uint16 and np.array_equal(got, a16)  # not reduced to 8 bits as Pillow would


def test_rgba_png_opaque_alpha_is_dropped_and_a_varying_alpha_is_refused(tmp_path):
    rgb = RNG.integers(0, 256, (10, 11, 3)).astype(np.uint8)
    rgba = np.dstack([rgb, np.full((10, 11), 255, np.uint8)])
    Image.fromarray(rgba).save(tmp_path / "opaque.png")
    f = read_image_file(tmp_path / "opaque.png")
    assert np.array_equal(f.planes[0], rgb) and "alpha dropped" in f.converted
    rgba[3, 4, 3] = 0
    Image.fromarray(rgba).save(tmp_path / "hole.png")
    refused(tmp_path / "hole.png", "transparent", "1 pixels")
    la = np.dstack([rgb[..., 0], np.full((10, 11), 255, np.uint8)])
    Image.fromarray(la, "LA").save(tmp_path / "la.png")
    assert np.array_equal(one(tmp_path / "la.png"), rgb[..., 0])


def test_rgba_16_bit_png(tmp_path):
    a = RNG.integers(0, 65536, (6, 7, 4)).astype(np.uint16)
    a[..., 3] = 65535
    cv2.imwrite(str(tmp_path / "c.png"), a[..., [2, 1, 0, 3]])
    assert np.array_equal(one(tmp_path / "c.png"), a[..., :3])


def test_palette_png_gives_colours_for_images_and_indices_for_masks(tmp_path):
    index = RNG.integers(0, 4, (8, 9)).astype(np.uint8)
    colours = np.array([[0, 0, 0], [200, 10, 10], [10, 200, 10], [1, 2, 3]], np.uint8)
    im = Image.frombytes("P", (9, 8), index.tobytes())
    im.putpalette(colours.ravel().tolist())
    im.save(tmp_path / "p.png")
    assert np.array_equal(one(tmp_path / "p.png"), colours[index])
    assert np.array_equal(one(tmp_path / "p.png", palette="index"), index)


def test_one_bit_png_reads_as_0_255(tmp_path):
    a = RNG.integers(0, 2, (9, 16)).astype(bool)
    Image.fromarray(a).save(tmp_path / "b.png")
    got = one(tmp_path / "b.png")
    assert got.dtype == np.uint8 and np.array_equal(got, a.astype(np.uint8) * 255)


def test_animated_png_is_refused(tmp_path):
    frames = [Image.fromarray(np.full((4, 4), v, np.uint8)) for v in (0, 100)]
    frames[0].save(tmp_path / "anim.png", save_all=True, append_images=frames[1:])
    refused(tmp_path / "anim.png", "2 frames")


def test_broken_file_is_named(tmp_path):
    (tmp_path / "x.png").write_bytes(b"not a png")
    refused(tmp_path / "x.png", "cannot be read")
    (tmp_path / "x.tif").write_bytes(b"not a tiff")
    refused(tmp_path / "x.tif", "cannot be read")


# -- TIFF --------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.uint32, np.float32])
def test_gray_tiff_keeps_its_dtype(tmp_path, dtype):
    a = (RNG.random((13, 17)) * 70000).astype(dtype)
    tifffile.imwrite(tmp_path / "g.tif", a)
    got = one(tmp_path / "g.tif")
    assert got.dtype == dtype and np.array_equal(got, a)


def test_multi_page_tiff_is_a_stack_of_images(tmp_path):
    stack = RNG.integers(0, 65536, (5, 8, 9)).astype(np.uint16)
    tifffile.imwrite(tmp_path / "s.tif", stack, photometric="minisblack")
    f = read_image_file(tmp_path / "s.tif")
    assert f.pages == 5 and f.names() == [f"s.tif[{k}]" for k in range(5)]
    for k in range(5):
        assert np.array_equal(f.planes[k], stack[k])
    # Pages written one by one (as Pillow or a loop of writes does) are read the same way.
    Image.fromarray(stack[0].astype(np.uint8)).save(tmp_path / "p.tif", save_all=True,
                                                     append_images=[Image.fromarray(s.astype(np.uint8))
                                                                    for s in stack[1:]])
    f = read_image_file(tmp_path / "p.tif")
    assert f.pages == 5 and all(np.array_equal(f.planes[k], stack[k].astype(np.uint8)) for k in range(5))


def test_channel_axes_move_last(tmp_path):
    cyx = RNG.integers(0, 4096, (2, 8, 9)).astype(np.uint16)
    tifffile.imwrite(tmp_path / "cyx.tif", cyx, metadata={"axes": "CYX"})
    assert np.array_equal(one(tmp_path / "cyx.tif"), cyx.transpose(1, 2, 0))
    yxc = RNG.integers(0, 4096, (8, 9, 2)).astype(np.uint16)
    tifffile.imwrite(tmp_path / "yxc.tif", yxc, photometric="minisblack", planarconfig="contig",
                     metadata={"axes": "YXC"})
    assert np.array_equal(one(tmp_path / "yxc.tif"), yxc)


def test_hyperstack_pages_become_images_with_their_channels(tmp_path):
    zcyx = RNG.integers(0, 4096, (3, 2, 8, 9)).astype(np.uint16)
    tifffile.imwrite(tmp_path / "h.tif", zcyx, imagej=True, metadata={"axes": "ZCYX"})
    f = read_image_file(tmp_path / "h.tif")
    assert f.pages == 3 and f.channels == 2
    for z in range(3):
        assert np.array_equal(f.planes[z], zcyx[z].transpose(1, 2, 0))
    tzyx = RNG.integers(0, 255, (2, 3, 8, 9)).astype(np.uint8)
    tifffile.imwrite(tmp_path / "t.tif", tzyx, imagej=True, metadata={"axes": "TZYX"})
    f = read_image_file(tmp_path / "t.tif")
    assert f.pages == 6 and all(np.array_equal(f.planes[3 * t + z], tzyx[t, z]) for t in range(2) for z in range(3))


def test_rgb_tiff(tmp_path):
    rgb = RNG.integers(0, 256, (8, 9, 3)).astype(np.uint8)
    tifffile.imwrite(tmp_path / "c.tif", rgb, photometric="rgb")
    assert np.array_equal(one(tmp_path / "c.tif"), rgb)
    Image.fromarray(rgb).save(tmp_path / "pil.tif")
    assert np.array_equal(one(tmp_path / "pil.tif"), rgb)
    rgba = np.dstack([rgb, RNG.integers(0, 256, (8, 9)).astype(np.uint8)])
    tifffile.imwrite(tmp_path / "a.tif", rgba, photometric="rgb", extrasamples=["unassalpha"])
    refused(tmp_path / "a.tif", "transparent")


def test_palette_tiff(tmp_path):
    index = RNG.integers(0, 3, (8, 9)).astype(np.uint8)
    colours = np.array([[0, 0, 0], [255, 0, 0], [0, 128, 255]], np.uint8)
    im = Image.frombytes("P", (9, 8), index.tobytes())
    im.putpalette(colours.ravel().tolist())
    im.save(tmp_path / "p.tif")
    assert np.array_equal(one(tmp_path / "p.tif"), colours[index])
    assert np.array_equal(one(tmp_path / "p.tif", palette="index"), index)


def test_lzw_tiff_is_read_without_extra_codecs(tmp_path):
    stack = [RNG.integers(0, 65536, (8, 9)).astype(np.uint16) for _ in range(3)]
    Image.fromarray(stack[0]).save(tmp_path / "lzw.tif", compression="tiff_lzw", save_all=True,
                                   append_images=[Image.fromarray(s) for s in stack[1:]])
    f = read_image_file(tmp_path / "lzw.tif")
    assert f.pages == 3 and all(np.array_equal(p, s) for p, s in zip(f.planes, stack))


def test_tiff_that_cannot_be_read_with_certainty_is_refused(tmp_path):
    tifffile.imwrite(tmp_path / "white.tif", np.zeros((4, 5), np.uint8), photometric="miniswhite")
    refused(tmp_path / "white.tif", "MINISWHITE")
    tifffile.imwrite(tmp_path / "lambda.tif", np.zeros((3, 4, 5), np.uint8), photometric="minisblack",
                     metadata={"axes": "EYX"})
    refused(tmp_path / "lambda.tif", "'E'", "lambda")
    with tifffile.TiffWriter(tmp_path / "two.tif") as tw:
        tw.write(np.zeros((8, 8), np.uint8))
        tw.write(np.zeros((9, 8), np.uint8))
    refused(tmp_path / "two.tif", "2 image series")
    tifffile.imwrite(tmp_path / "cs.tif", np.zeros((2, 4, 5, 3), np.uint8), photometric="rgb",
                     metadata={"axes": "CYXS"})
    refused(tmp_path / "cs.tif", "two channel axes")


# -- JPEG, BMP ---------------------------------------------------------------------------------------------------

def test_jpeg_and_bmp(tmp_path):
    # Flat 8x8 blocks survive JPEG exactly, so the pixels can be compared with what was written.
    blocks = RNG.integers(0, 256, (3, 4)).astype(np.uint8)
    gray = np.kron(blocks, np.ones((8, 8), np.uint8))
    Image.fromarray(gray).save(tmp_path / "g.jpg", quality=100)
    assert np.abs(one(tmp_path / "g.jpg").astype(int) - gray).max() <= 1
    rgb = RNG.integers(0, 256, (10, 11, 3)).astype(np.uint8)
    Image.fromarray(rgb).save(tmp_path / "c.bmp")
    Image.fromarray(rgb[..., 0]).save(tmp_path / "g.bmp")
    assert np.array_equal(one(tmp_path / "c.bmp"), rgb) and np.array_equal(one(tmp_path / "g.bmp"), rgb[..., 0])


# -- folders and what was read ------------------------------------------------------------------------------------

def test_hidden_and_other_files_are_named_not_skipped(tmp_path):
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "a.png")
    assert list_image_files(tmp_path, "images") == [tmp_path / "a.png"]
    for junk in (".DS_Store", "._a.png", "Thumbs.db", "notes.txt"):
        (tmp_path / junk).write_bytes(b"x")
    with pytest.raises(DataError) as e:
        list_image_files(tmp_path, "images")
    msg = str(e.value)
    assert "\n" not in msg and all(j in msg for j in (".DS_Store", "._a.png", "Thumbs.db", "notes.txt"))


def test_describe_images_says_pages_channels_and_dtypes(tmp_path):
    tifffile.imwrite(tmp_path / "s.tif", np.zeros((4, 8, 9), np.uint16), photometric="minisblack")
    Image.fromarray(np.zeros((6, 5, 3), np.uint8)).save(tmp_path / "c.png")
    lines = describe_images([read_image_file(tmp_path / "s.tif"), read_image_file(tmp_path / "c.png")])
    assert lines[0].startswith("images: 5 from 2 file(s); 5x6 to 9x8;")
    assert "uint16 (1)" in lines[0] and "RGB (1)" in lines[0] and "s.tif (4 pages" in lines[1]


# -- intensity rules ---------------------------------------------------------------------------------------------

def test_range_rule_is_todays_scaling_for_uint8_and_float():
    a = RNG.integers(0, 256, (7, 9)).astype(np.uint8)
    assert np.array_equal(normalize(a), a.astype(np.float32) / 255.0)  # bit for bit what training has used
    assert normalize(a).dtype == np.float32
    f = RNG.random((4, 5)).astype(np.float32)
    assert np.array_equal(normalize(f), f)


def test_range_rule_for_16_bit_and_other_dtypes():
    a = np.array([[0, 1, 65535, 32768]], np.uint16)
    assert np.allclose(normalize(a, "range"), [[0, 1 / 65535, 1, 32768 / 65535]], rtol=1e-7, atol=0)
    with pytest.raises(DataError, match="percentile"):
        normalize(a.astype(np.int32), "range")
    with pytest.raises(UsageError, match="percentile"):
        normalize(a, "minmax")


def percentile_by_hand(values: np.ndarray, q: float) -> float:
    """The linear-interpolation percentile written out: position q/100 * (n - 1) in the sorted values."""
    v = np.sort(values.ravel()).astype(np.float64)
    pos = q / 100 * (len(v) - 1)
    lo = int(np.floor(pos))
    return v[lo] + (pos - lo) * (v[min(lo + 1, len(v) - 1)] - v[lo])


def test_percentile_rule_is_per_image_over_all_channels_unclipped():
    a = RNG.integers(100, 4000, (20, 30, 3)).astype(np.uint16)
    lo, hi = percentile_by_hand(a, 1), percentile_by_hand(a, 99.8)
    got = normalize(a, "percentile")
    assert got.dtype == np.float32 and got.shape == a.shape
    assert np.allclose(got, (a - lo) / (hi - lo), atol=1e-6)
    assert got.min() < 0 and got.max() > 1  # not clipped
    # Channels are scaled together: a pixel's channel ratios (after the common offset) survive.
    assert np.allclose(got[..., 0] * (hi - lo) + lo, a[..., 0], atol=1e-2)


def test_percentile_rule_guards_flat_images():
    assert not normalize(np.full((5, 5), 7, np.uint16), "percentile").any()
    sparse = np.zeros((50, 50), np.uint16)
    sparse[0, :3] = (10, 20, 40)  # fewer bright pixels than 0.2 %: percentiles 1 and 99.8 are both 0
    got = normalize(sparse, "percentile")
    assert np.allclose(got, sparse / 40.0)


def test_rules_are_a_registry_of_named_functions():
    assert set(RULES) == {"range", "percentile"}
    for rule in RULES.values():
        assert "rule" in rule.__doc__
