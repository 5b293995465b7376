"""`predict`: many inputs in one call (files, folders, globs, TIFF stacks; 8 and 16-bit, gray and RGB refused by
name) into ImageJ TIFFs, the mask and labels consistent with the probabilities, K-class outputs, and nothing
written over anything without --overwrite. Tiny networks (widths 4, 8, 16) trained for one step."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from conftest import synthetic_em
from PIL import Image
from scipy import ndimage

from experiments import predict
from unet_repro.data.images import read_image_file
from unet_repro.errors import DataError
from unet_repro.prediction import class_objects, write_imagej
from unet_repro.training import TrainConfig, load_trained, train

SHIPPED = Path(__file__).resolve().parents[1] / "datasets" / "isbi2012"


def tiny_checkpoint(folder: Path, classes: int | None = None, widths: tuple[int, ...] = (4, 8, 16)) -> Path:
    """best.pt of a network of `widths` trained for one step on synthetic EM (binary masks, or for `classes` the
    cells split into classes 1..K-1 by column)."""
    images, labels = synthetic_em(n=3, size=64)
    masks = (labels // 255).astype(np.uint8)
    if classes:
        columns = np.broadcast_to(np.arange(64) * (classes - 1) // 64 + 1, masks.shape[1:])
        masks = (masks * columns).astype(np.uint8)
    cfg = TrainConfig(widths=widths, classes=classes, mask_kind="classes" if classes else "binary", epochs=1,
                      steps_per_epoch=1, device="cpu", checkpoint_every=0, workers=0, augment=False)
    train(cfg, list(images[:2]), list(masks[:2]), list(images[2:]), list(masks[2:]), folder)
    return folder / "best.pt"


@pytest.fixture(scope="module")
def binary_ckpt(tmp_path_factory) -> Path:
    return tiny_checkpoint(tmp_path_factory.mktemp("binary"))


@pytest.fixture(scope="module")
def class_ckpt(tmp_path_factory) -> Path:
    return tiny_checkpoint(tmp_path_factory.mktemp("classes"), classes=3)


@pytest.fixture(scope="module")
def smallest_ckpt(tmp_path_factory) -> Path:
    """One level (widths 2, 4): 30 slices of 512 x 512 in a few seconds."""
    return tiny_checkpoint(tmp_path_factory.mktemp("smallest"), widths=(2, 4))


def fails(args: list[str], capsys) -> tuple[int, str]:
    """Run predict, which must fail with one `error:` line; its exit code and the line."""
    with pytest.raises(SystemExit) as e:
        predict.main(args)
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return e.value.code, err


def files(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def imagej(path: Path) -> tuple[np.ndarray, str, dict]:
    """The array, series axes and ImageJ metadata of a TIFF (which must be an ImageJ hyperstack)."""
    with tifffile.TiffFile(path) as tf:
        assert tf.is_imagej, path
        return tf.asarray(), tf.series[0].axes, tf.imagej_metadata


def same_objects(labels: np.ndarray, components: np.ndarray) -> bool:
    """Whether two label images hold the same objects, whatever their numbers."""
    if not np.array_equal(labels > 0, components > 0):
        return False
    pairs = set(zip(labels[labels > 0].tolist(), components[components > 0].tolist()))
    return len(pairs) == len(np.unique(labels[labels > 0])) == len(np.unique(components[components > 0]))


def ckpt_args(ckpt: Path, out: Path) -> list[str]:
    return ["--checkpoint", str(ckpt), "--out", str(out), "--device", "cpu"]


# -- many inputs, one call ------------------------------------------------------------------------------------------

def test_files_folders_globs_and_stacks_in_one_call(binary_ckpt, tmp_path, capsys):
    images, _ = synthetic_em(n=5, size=64, seed=4)
    src = tmp_path / "in"
    (src / "folder").mkdir(parents=True)
    (src / "globbed").mkdir()
    Image.fromarray(images[0]).save(src / "gray.png")
    Image.fromarray(images[1].astype(np.uint16) * 257).save(src / "folder" / "sixteen.png")
    tifffile.imwrite(src / "folder" / "stack.tif", images[2:5], photometric="minisblack")
    Image.fromarray(images[3]).save(src / "globbed" / "g1.png")
    Image.fromarray(images[4]).save(src / "globbed" / "g2.bmp")  # not matched by *.png
    assert read_image_file(src / "folder" / "sixteen.png").dtype == np.uint16
    out = tmp_path / "out"
    capsys.readouterr()
    predict.main([*ckpt_args(binary_ckpt, out), str(src / "gray.png"), str(src / "folder"),
                  str(src / "globbed" / "*.png")])
    stdout = capsys.readouterr().out
    names = {"gray": images[0], "sixteen": images[1].astype(np.uint16) * 257, "stack": images[2:5],
             "g1": images[3]}
    assert set(os.listdir(out)) == {f"{n}_{o}.tif" for n in names for o in ("prob", "mask", "labels")}
    trained = load_trained(binary_ckpt, device="cpu")
    for name, pixels in names.items():
        assert sum(f"{name}." in line and "->" in line for line in stdout.splitlines()) == 1, stdout  # one line each
        prob, axes, meta = imagej(out / f"{name}_prob.tif")
        mask, mask_axes, mask_meta = imagej(out / f"{name}_mask.tif")
        labels, label_axes, _ = imagej(out / f"{name}_labels.tif")
        stack = pixels.ndim == 3
        assert axes == mask_axes == label_axes == ("ZYX" if stack else "YX")
        assert prob.dtype == np.float32 and mask.dtype == np.uint8 and labels.dtype == np.uint16
        assert meta["min"] == 0 and meta["max"] == 1 and mask_meta["max"] == 1
        pages = pixels if stack else pixels[None]
        expected = np.stack([trained.predict(p) for p in pages])
        assert np.allclose(prob.reshape(expected.shape), expected, atol=1e-6), name  # each page in its place
        assert np.array_equal(mask, (prob > 0.5).astype(np.uint8))
        for m, lab in zip(mask.reshape(pages.shape), labels.reshape(pages.shape)):
            assert same_objects(lab, ndimage.label(m)[0])  # scipy's default 2-D structure: 4-connected


def test_mask_and_labels_follow_the_threshold_and_min_size(binary_ckpt, tmp_path):
    image = synthetic_em(n=1, size=96, seed=3)[0][0]
    Image.fromarray(image).save(tmp_path / "em.png")
    prob = load_trained(binary_ckpt, device="cpu").predict(image)
    threshold, min_size = float(np.quantile(prob, 0.55)), 6
    predict.main([*ckpt_args(binary_ckpt, tmp_path / "out"), str(tmp_path / "em.png"), "--threshold", str(threshold),
                  "--min-size", str(min_size)])
    mask = tifffile.imread(tmp_path / "out" / "em_mask.tif")
    labels = tifffile.imread(tmp_path / "out" / "em_labels.tif")
    assert np.array_equal(mask, (prob > threshold).astype(np.uint8))  # every pixel, specks included
    components, n = ndimage.label(prob > threshold)
    sizes = np.bincount(components.ravel())
    big = [i for i in range(1, n + 1) if sizes[i] >= min_size]
    assert len(big) >= 2 and len(big) < n  # the case has objects and specks to drop
    assert same_objects(labels, np.where(np.isin(components, big), components, 0))
    assert sorted(np.unique(labels).tolist()) == list(range(len(big) + 1))  # numbered 1..N


@pytest.mark.slow
def test_the_isbi_test_stack_in_one_call_into_three_stacks(smallest_ckpt, tmp_path):
    stack = tifffile.imread(SHIPPED / "test-volume.tif")
    predict.main([*ckpt_args(smallest_ckpt, tmp_path), str(SHIPPED / "test-volume.tif")])
    arrays = {}
    for output, dtype in (("prob", np.float32), ("mask", np.uint8), ("labels", np.uint16)):
        arrays[output], axes, meta = imagej(tmp_path / f"test-volume_{output}.tif")
        assert arrays[output].shape == (30, 512, 512) and arrays[output].dtype == dtype and axes == "ZYX"
        assert meta["slices"] == 30 and meta["images"] == 30
    trained = load_trained(smallest_ckpt, device="cpu")
    for k in (0, 29):
        assert np.allclose(arrays["prob"][k], trained.predict(stack[k]), atol=1e-6)
    assert np.array_equal(arrays["mask"], (arrays["prob"] > 0.5).astype(np.uint8))
    for k in (0, 13, 29):  # numbered per page
        assert arrays["labels"][k].max() == ndimage.label(arrays["mask"][k])[1]


def test_the_old_single_image_form_still_works(binary_ckpt, tmp_path, monkeypatch):
    image = synthetic_em(n=1, size=64)[0][0]
    Image.fromarray(image).save(tmp_path / "one.png")
    monkeypatch.chdir(tmp_path)
    predict.main(["--checkpoint", str(binary_ckpt), "--image", "one.png", "--device", "cpu"])  # --out: predictions
    assert tifffile.imread(tmp_path / "predictions" / "one_prob.tif").shape == (64, 64)


# -- K classes ------------------------------------------------------------------------------------------------------

def test_k_class_outputs_one_channel_per_class_the_most_probable_class_and_objects(class_ckpt, tmp_path):
    images, _ = synthetic_em(n=3, size=64, seed=5)
    Image.fromarray(images[0]).save(tmp_path / "one.png")
    tifffile.imwrite(tmp_path / "two.tif", images[1:], photometric="minisblack")
    predict.main([*ckpt_args(class_ckpt, tmp_path / "out"), str(tmp_path / "one.png"), str(tmp_path / "two.tif")])
    trained = load_trained(class_ckpt, device="cpu")
    for name, pages, axes in (("one", images[:1], "CYX"), ("two", images[1:], "ZCYX")):
        prob, prob_axes, prob_meta = imagej(tmp_path / "out" / f"{name}_prob.tif")
        mask, _, mask_meta = imagej(tmp_path / "out" / f"{name}_mask.tif")
        labels, _, _ = imagej(tmp_path / "out" / f"{name}_labels.tif")
        assert prob_axes == axes and prob.shape[-3:] == (3, 64, 64) and prob_meta["channels"] == 3
        assert mask_meta["max"] == 2  # the display range of classes 0..2
        prob = prob.reshape(len(pages), 3, 64, 64)
        assert np.allclose(prob, np.stack([trained.predict(p) for p in pages]), atol=1e-6)
        assert np.allclose(prob.sum(axis=1), 1.0, atol=1e-5)
        mask, labels = mask.reshape(len(pages), 64, 64), labels.reshape(len(pages), 64, 64)
        assert np.array_equal(mask, prob.argmax(axis=1))
        for m, lab in zip(mask, labels):
            per_class = np.zeros(m.shape, np.int64)
            for c in (1, 2):
                comp, n = ndimage.label(m == c)
                per_class[comp > 0] = comp[comp > 0] + 1000 * c
            assert same_objects(lab, per_class)


def test_class_objects_keep_touching_objects_of_two_classes_apart():
    classes = np.array([[1, 1, 2, 2, 0],
                        [1, 1, 2, 2, 0],
                        [0, 0, 0, 0, 1],
                        [2, 0, 0, 0, 1]], np.uint8)
    expected = np.array([[1, 1, 3, 3, 0],
                         [1, 1, 3, 3, 0],
                         [0, 0, 0, 0, 2],
                         [4, 0, 0, 0, 2]])
    assert np.array_equal(class_objects(classes), expected)  # class 1's objects first, each class in raster order
    kept = np.array([[1, 1, 2, 2, 0],
                     [1, 1, 2, 2, 0],
                     [0, 0, 0, 0, 0],
                     [0, 0, 0, 0, 0]])
    assert np.array_equal(class_objects(classes, min_size=3), kept)  # specks of 2 and 1 pixels dropped


def test_labels_beyond_16_bits_are_refused(tmp_path):
    labels = np.arange(70000, dtype=np.int32).reshape(280, 250)
    with pytest.raises(DataError, match="do not fit 16-bit labels"):
        write_imagej(tmp_path / "x_labels.tif", [labels], "labels", stack=False)
    assert not list(tmp_path.iterdir())


# -- nothing over anything, every mistake one line ------------------------------------------------------------------

@pytest.fixture
def two_images(tmp_path) -> Path:
    images, _ = synthetic_em(n=2, size=48)
    (tmp_path / "in").mkdir()
    for i, image in enumerate(images):
        Image.fromarray(image).save(tmp_path / "in" / f"im{i}.png")
    return tmp_path / "in"


def test_an_existing_output_is_kept_unless_overwrite(binary_ckpt, two_images, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "im1_mask.tif").write_bytes(b"mine")
    code, err = fails([*ckpt_args(binary_ckpt, out), str(two_images)], capsys)
    assert code == 2 and "im1_mask.tif" in err and "--overwrite" in err
    assert files(out) == {"im1_mask.tif": hashlib.sha256(b"mine").hexdigest()}  # nothing else written either
    predict.main([*ckpt_args(binary_ckpt, out), str(two_images), "--overwrite"])
    assert tifffile.imread(out / "im1_mask.tif").shape == (48, 48) and len(files(out)) == 6


def test_an_output_never_replaces_an_input(binary_ckpt, two_images, tmp_path, capsys):
    tifffile.imwrite(two_images / "im0_prob.tif", np.zeros((48, 48), np.uint8))
    before = files(two_images)
    code, err = fails([*ckpt_args(binary_ckpt, two_images), str(two_images), "--overwrite"], capsys)
    assert code == 2 and "im0_prob.tif would replace an input" in err and files(two_images) == before


def test_two_inputs_of_one_name_are_refused(binary_ckpt, two_images, tmp_path, capsys):
    (tmp_path / "b").mkdir()
    Image.open(two_images / "im0.png").save(tmp_path / "b" / "im0.tif")
    code, err = fails([*ckpt_args(binary_ckpt, tmp_path / "out"), str(two_images), str(tmp_path / "b")], capsys)
    assert code == 2 and "im0.png and" in err and "b/im0.tif" in err and "separate --out" in err
    assert not (tmp_path / "out").exists()


def test_an_image_of_other_channels_is_refused_before_anything_is_written(binary_ckpt, two_images, tmp_path, capsys):
    Image.fromarray(np.zeros((40, 40, 3), np.uint8) + 50).save(two_images / "rgb.png")
    code, err = fails([*ckpt_args(binary_ckpt, tmp_path / "out"), str(two_images)], capsys)
    assert code == 1 and "rgb.png is RGB" in err and "takes gray images" in err
    assert not (tmp_path / "out").exists()  # im0 and im1 come first, and were not predicted


@pytest.mark.parametrize("case,code,words", [
    ("hidden", 1, ".DS_Store"), ("not an image", 1, "notes.txt is not an image file"),
    ("missing", 1, "missing.png not found"), ("no match", 1, "no file matches"), ("no input", 2, "at least one INPUT"),
    ("out is an image name", 2, "p.png looks like an image file"), ("device", 2, "device (--device) is 'foo'"),
    ("threshold", 2, "--threshold must be in [0, 1)"), ("min size", 2, "--min-size must be"),
    ("tile", 2, "--tile 50 is not a valid input side")])
def test_every_mistake_is_one_line_naming_the_file_or_flag(binary_ckpt, two_images, tmp_path, capsys, case, code,
                                                           words):
    base = ckpt_args(binary_ckpt, tmp_path / "out")
    args = {"hidden": [str(two_images)], "not an image": [str(tmp_path / "notes.txt")],
            "missing": [str(tmp_path / "missing.png")], "no match": [str(tmp_path / "*.jpg")], "no input": [],
            "out is an image name": ["--out", str(tmp_path / "p.png"), str(two_images)],
            "device": ["--device", "foo", str(two_images)], "threshold": ["--threshold", "1.5", str(two_images)],
            "min size": ["--min-size", "-1", str(two_images)], "tile": ["--tile", "50", str(two_images)]}[case]
    if case == "hidden":
        (two_images / ".DS_Store").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("hello")
    got, err = fails([*base, *args], capsys)
    assert got == code and words in err, err
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_device_cuda_without_cuda_is_refused(binary_ckpt, two_images, tmp_path, capsys):
    code, err = fails([*ckpt_args(binary_ckpt, tmp_path / "out"), "--device", "cuda", str(two_images)], capsys)
    assert code == 2 and "no CUDA GPU" in err


def test_threshold_is_refused_for_a_k_class_network(class_ckpt, two_images, tmp_path, capsys):
    code, err = fails([*ckpt_args(class_ckpt, tmp_path / "out"), "--threshold", "0.3", str(two_images)], capsys)
    assert code == 2 and "--threshold applies to one-channel networks" in err and "3 classes" in err


def test_the_batch_benchmark_runs_and_says_what_it_compares(capsys):
    import sys
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import predict_batch
    assert predict_batch.main(["--images", "2", "--size", "64", "--repeats", "1", "--widths", "4,8"]) == 0
    out = capsys.readouterr().out
    assert "round 1: predict" in out and "predict_tiled loop" in out and "ratio" in out
    assert "what predict adds, median per image: read PNG" in out and "write 3 TIFFs" in out
