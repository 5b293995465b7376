"""`evaluate`: predictions scored against truth of every mask kind, checked against a case computed by hand and
against the metrics modules called directly; --pred and --checkpoint give the same scores; every user mistake is
one line and changes no file."""
from __future__ import annotations

import csv
import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pytest
import tifffile
from conftest import synthetic_em
from PIL import Image
from scipy import ndimage
from test_predict import tiny_checkpoint

from experiments import evaluate, predict
from unet_repro.cli import evaluate as cli_evaluate
from unet_repro.metrics import (class_report, object_report, pixel_error, rand_error, v_rand_v_info,
                                warping_error)
from unet_repro.prediction import write_imagej
from unet_repro.training import load_trained


@pytest.fixture(scope="module")
def binary_ckpt(tmp_path_factory) -> Path:
    return tiny_checkpoint(tmp_path_factory.mktemp("binary"))


@pytest.fixture(scope="module")
def class_ckpt(tmp_path_factory) -> Path:
    return tiny_checkpoint(tmp_path_factory.mktemp("classes"), classes=3)


def write_prediction(folder: Path, name: str, masks: list[np.ndarray], labels: list[np.ndarray],
                     classes: int | None = None) -> None:
    """A prediction as predict writes it: <name>_mask.tif and <name>_labels.tif (a stack for several pages)."""
    folder.mkdir(parents=True, exist_ok=True)
    stack = len(masks) > 1
    write_imagej(folder / f"{name}_mask.tif", masks, "mask", stack, classes)
    write_imagej(folder / f"{name}_labels.tif", labels, "labels", stack)


def rows(out: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(open(out / "per_image.csv")))


def summary(out: Path) -> dict:
    return json.loads((out / "summary.json").read_text())


def fails(args: list[str], capsys) -> tuple[int, str]:
    with pytest.raises(SystemExit) as e:
        evaluate.main(args)
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return e.value.code, err


def files(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


# -- a case computed by hand ----------------------------------------------------------------------------------------

def hand_case(tmp_path: Path) -> tuple[Path, Path]:
    """Truth: two objects (3x3 and 2x3 pixels) in an 8x8 binary 0/255 PNG. Prediction: the first object's left
    two columns (IoU 6/9), the second's lower row (IoU 3/6) and one stray pixel."""
    truth = np.zeros((8, 8), np.uint8)
    truth[1:4, 1:4] = 255
    truth[5:7, 5:8] = 255
    (tmp_path / "truth").mkdir()
    Image.fromarray(truth).save(tmp_path / "truth" / "cell.png")
    labels = np.zeros((8, 8), np.int32)
    labels[1:4, 1:3] = 1
    labels[6, 5:8] = 2
    labels[0, 7] = 3
    write_prediction(tmp_path / "pred", "cell", [(labels > 0).astype(np.uint8)], [labels])
    return tmp_path / "pred", tmp_path / "truth"


def test_a_case_computed_by_hand(tmp_path):
    pred, truth = hand_case(tmp_path)
    evaluate.main(["--pred", str(pred), "--truth", str(truth), "--out", str(tmp_path / "out")])
    (row,) = rows(tmp_path / "out")
    # pixels: TP 9, FP 1, FN 6 of the foreground; the background TP 48, FP 6, FN 1
    expected = {"iou": 9 / 16, "dice": 18 / 25, "iou_class0": 48 / 55, "dice_class0": 96 / 103, "iou_class1": 9 / 16,
                # objects at IoU >= 0.5: both true objects found (IoU 2/3 and 1/2), one stray
                "n_true": 2, "n_pred": 3, "tp": 2, "fp": 1, "fn": 0, "precision": 2 / 3, "recall": 1.0, "f1": 0.8,
                "ap_50": 2 / 3, "mean_matched_iou": (2 / 3 + 1 / 2) / 2,
                # AP over 0.50:0.95: 2/3 at 0.5, 1/4 at 0.55-0.65 (only the first object), 0 from 0.7
                "ap_50_95": (2 / 3 + 3 / 4) / 10}
    for key, value in expected.items():
        assert float(row[key]) == pytest.approx(value), key
    s = summary(tmp_path / "out")
    assert s["kind"] == "binary" and s["images"] == 1
    assert s["pixels"]["pooled"]["mean_iou_foreground"] == pytest.approx(9 / 16)
    assert s["objects"]["pooled"]["at_threshold"]["f1"] == pytest.approx(0.8)
    assert s["objects"]["pooled"]["mean_over_thresholds"]["average_precision"] == pytest.approx((2 / 3 + 3 / 4) / 10)
    report = (tmp_path / "out" / "evaluation.md").read_text()
    assert re.search(r"\| IoU \(foreground\) \| 0\.5625 \| 0\.5625 \|", report)
    assert "| cell | 0.5625 | 0.7200 | 2 / 3 | 0.6667 | 1.0000 | 0.8000 | 0.6667 | 0.1417 |" in report
    assert (tmp_path / "out" / "worst.png").stat().st_size > 0


# -- against the metrics modules ------------------------------------------------------------------------------------

def instance_case(rng: np.random.Generator, size: int = 48) -> tuple[np.ndarray, np.ndarray]:
    """True instance labels (touching squares of values 1..9) and a prediction: shifted, one object lost, one
    invented, two merged."""
    truth = np.zeros((size, size), np.uint16)
    for i in range(9):
        r, c = divmod(i, 3)
        truth[4 + 14 * r:4 + 14 * r + rng.integers(8, 14), 4 + 14 * c:4 + 14 * c + rng.integers(8, 14)] = 10 * (i + 1)
    pred = np.roll(truth, (1, rng.integers(0, 3)), axis=(0, 1)).astype(np.int32) // 10
    pred[pred == 5] = 0
    pred[pred == 2] = 3
    pred[0:3, 0:3] = 11
    return truth, pred


def test_instance_truth_and_a_stack_agree_with_the_metrics_modules(tmp_path):
    rng = np.random.default_rng(7)
    cases = [instance_case(rng) for _ in range(3)]
    (tmp_path / "truth").mkdir()
    Image.fromarray(cases[0][0]).save(tmp_path / "truth" / "a.png")  # 16-bit PNG labels
    tifffile.imwrite(tmp_path / "truth" / "b_mask.tif", np.stack([cases[1][0], cases[2][0]]))  # a 2-page stack
    write_prediction(tmp_path / "pred", "a", [(cases[0][1] > 0).astype(np.uint8)], [cases[0][1]])
    write_prediction(tmp_path / "pred", "b", [(c[1] > 0).astype(np.uint8) for c in cases[1:]],
                     [c[1] for c in cases[1:]])
    evaluate.main(["--pred", str(tmp_path / "pred"), "--truth", str(tmp_path / "truth"), "--out",
                   str(tmp_path / "out")])
    truths, preds = [c[0] for c in cases], [c[1] for c in cases]
    pixels = class_report([(t > 0).astype(np.uint8) for t in truths], [(p > 0).astype(np.uint8) for p in preds], 2)
    objects = object_report(truths, preds)
    got = rows(tmp_path / "out")
    assert [r["image"] for r in got] == ["a", "b[0]", "b[1]"]
    for r, px, ob in zip(got, pixels["per_image"], objects["per_image"]):
        assert float(r["iou"]) == pytest.approx(px["iou"][1]) and float(r["dice"]) == pytest.approx(px["dice"][1])
        assert int(r["n_true"]) == ob["n_true"] == 9 and int(r["n_pred"]) == ob["n_pred"]
        for key, name in (("precision", "precision"), ("recall", "recall"), ("f1", "f1"),
                          ("ap_50", "average_precision"), ("tp", "tp"), ("fp", "fp"), ("fn", "fn")):
            assert float(r[key]) == pytest.approx(ob["at_threshold"][name]), key
        assert float(r["ap_50_95"]) == pytest.approx(ob["mean_over_thresholds"]["average_precision"])
    s = summary(tmp_path / "out")
    assert s["kind"] == "instances" and s["n_classes"] == 2
    assert s["pixels"]["pooled"]["iou"] == pytest.approx(pixels["pooled"]["iou"])
    assert s["objects"]["pooled"]["at_threshold"]["f1"] == pytest.approx(objects["pooled"]["at_threshold"]["f1"])
    assert s["objects"]["image_mean"]["mean_over_thresholds"]["average_precision"] == \
        pytest.approx(objects["image_mean"]["mean_over_thresholds"]["average_precision"])
    assert 0 < float(got[0]["f1"]) < 1  # the case has hits and misses


def test_isbi_metrics_agree_with_the_challenge_functions(tmp_path):
    _, labels = synthetic_em(n=2, size=64, seed=2)
    truth = (labels > 0).astype(np.uint8)
    pred = [ndimage.binary_erosion(t).astype(np.uint8) for t in truth]  # thicker membranes
    pred[1][20:24, :] = 0  # a cut through the cells: splits
    (tmp_path / "truth").mkdir()
    tifffile.imwrite(tmp_path / "truth" / "em.tif", labels)
    write_prediction(tmp_path / "pred", "em", pred, [ndimage.label(p)[0] for p in pred])
    evaluate.main(["--pred", str(tmp_path / "pred"), "--truth", str(tmp_path / "truth"), "--out", str(tmp_path / "out"),
                   "--isbi"])
    got = rows(tmp_path / "out")
    for r, p, t in zip(got, pred, truth):
        v_rand, v_info = v_rand_v_info(p, t)
        assert float(r["pixel_error"]) == pytest.approx(pixel_error(p, t))
        assert float(r["rand_error"]) == pytest.approx(rand_error(p, t))
        assert float(r["warping_error"]) == pytest.approx(warping_error(p, t))
        assert float(r["v_rand"]) == pytest.approx(v_rand) and float(r["v_info"]) == pytest.approx(v_info)
    tp = sum(int((p & t).sum()) for p, t in zip(pred, truth))
    wrong = sum(int((p != t).sum()) for p, t in zip(pred, truth))
    isbi = summary(tmp_path / "out")["isbi"]
    assert isbi["pixel_error"]["value"] == pytest.approx(1 - 2 * tp / (2 * tp + wrong))  # pooled over the stack
    assert float(got[1]["warping_error"]) > 0 and not isbi["pixel_error"]["degenerate"]


def test_class_truth_with_a_checkpoint_agrees_with_the_metrics_modules(class_ckpt, tmp_path):
    images, labels = synthetic_em(n=2, size=64, seed=9)
    classes = [np.where(lab > 0, 1 + (np.arange(64) >= 32), 0).astype(np.uint8) for lab in labels]
    (tmp_path / "images").mkdir()
    (tmp_path / "truth").mkdir()
    for i, (image, c) in enumerate(zip(images, classes)):
        Image.fromarray(image).save(tmp_path / "images" / f"c{i}.png")
        Image.fromarray(c).save(tmp_path / "truth" / f"c{i}.png")
    evaluate.main(["--checkpoint", str(class_ckpt), "--images", str(tmp_path / "images"), "--truth",
                   str(tmp_path / "truth"), "--out", str(tmp_path / "out"), "--mask-kind", "classes",
                   "--device", "cpu"])
    trained = load_trained(class_ckpt, device="cpu")
    preds = [trained.predict(image).argmax(axis=0) for image in images]

    def objects(mask: np.ndarray) -> np.ndarray:  # every class's 4-connected components, class by class
        out = np.zeros(mask.shape, np.int64)
        for c in (1, 2):
            comp = ndimage.label(mask == c)[0]
            out[comp > 0] = comp[comp > 0] + 1000 * c
        return out

    pixels = class_report(classes, preds, 3)
    obj = object_report([objects(c) for c in classes], [objects(p) for p in preds])
    got = rows(tmp_path / "out")
    for r, px, ob in zip(got, pixels["per_image"], obj["per_image"]):
        for c in range(3):
            assert float(r[f"iou_class{c}"] or "nan") == pytest.approx(px["iou"][c], nan_ok=True)
        assert int(r["n_true"]) == ob["n_true"] and int(r["n_pred"]) == ob["n_pred"]
        assert float(r["f1"]) == pytest.approx(ob["at_threshold"]["f1"])
    s = summary(tmp_path / "out")
    assert s["kind"] == "classes" and s["n_classes"] == 3
    assert s["pixels"]["pooled"]["dice"] == pytest.approx(pixels["pooled"]["dice"])


def test_predict_then_evaluate_equals_evaluate_with_the_checkpoint(binary_ckpt, tmp_path):
    images, labels = synthetic_em(n=3, size=64, seed=11)
    (tmp_path / "images").mkdir()
    (tmp_path / "truth").mkdir()
    Image.fromarray(images[0]).save(tmp_path / "images" / "one.png")
    tifffile.imwrite(tmp_path / "images" / "two.tif", images[1:], photometric="minisblack")
    Image.fromarray(labels[0]).save(tmp_path / "truth" / "one_mask.png")
    tifffile.imwrite(tmp_path / "truth" / "two.tif", labels[1:])
    predict.main(["--checkpoint", str(binary_ckpt), "--out", str(tmp_path / "pred"), "--device", "cpu",
                  "--min-size", "3", str(tmp_path / "images")])
    evaluate.main(["--pred", str(tmp_path / "pred"), "--truth", str(tmp_path / "truth"), "--images",
                   str(tmp_path / "images"), "--out", str(tmp_path / "a")])
    evaluate.main(["--checkpoint", str(binary_ckpt), "--images", str(tmp_path / "images"), "--truth",
                   str(tmp_path / "truth"), "--out", str(tmp_path / "b"), "--min-size", "3", "--device", "cpu"])
    assert rows(tmp_path / "a") == rows(tmp_path / "b") and len(rows(tmp_path / "a")) == 3
    a, b = summary(tmp_path / "a"), summary(tmp_path / "b")
    assert a["pixels"] == b["pixels"] and a["objects"] == b["objects"]


# -- mistakes --------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("case,code,words", [
    ("unpaired prediction", 1, "no masks for other in"), ("unpaired truth", 1, "no prediction for extra.png"),
    ("size", 1, "cell.png is 8x8 but its prediction cell is 9x8"), ("no predictions", 1, "holds no predictions"),
    ("labels missing", 1, "cell_labels.tif is missing beside cell_mask.tif"),
    ("both", 2, "either --pred DIR"), ("neither", 2, "either --pred DIR"),
    ("threshold with pred", 2, "--threshold applies only when predicting"),
    ("isbi with instances", 2, "--isbi scores binary EM masks"),
    ("class beyond the truth", 1, "the predicted mask holds class 2"),
    ("pages", 1, "has 2 page(s) but its prediction"), ("kind", 2, "--mask-kind: invalid choice: 'sideways'")])
def test_every_mistake_is_one_line_and_writes_nothing(tmp_path, capsys, case, code, words):
    pred, truth = hand_case(tmp_path)
    out = ["--out", str(tmp_path / "out")]
    args = ["--pred", str(pred), "--truth", str(truth), *out]
    if case == "unpaired prediction":
        write_prediction(pred, "other", [np.zeros((8, 8), np.uint8)], [np.zeros((8, 8), np.int32)])
    elif case == "unpaired truth":
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(truth / "extra.png")
    elif case == "size":
        write_prediction(pred, "cell", [np.zeros((8, 9), np.uint8)], [np.zeros((8, 9), np.int32)])
    elif case == "no predictions":
        args = ["--pred", str(truth), "--truth", str(truth), *out]
    elif case == "labels missing":
        (pred / "cell_labels.tif").unlink()
    elif case == "both":
        args += ["--checkpoint", "x.pt"]
    elif case == "neither":
        args = ["--truth", str(truth), *out]
    elif case == "threshold with pred":
        args += ["--threshold", "0.3"]
    elif case == "isbi with instances":
        labels = np.zeros((8, 8), np.uint16)
        for i in range(4):
            labels[2 * i, :3] = i + 1
        Image.fromarray(labels).save(truth / "cell.png")
        args += ["--isbi"]
    elif case == "class beyond the truth":
        write_prediction(pred, "cell", [np.full((8, 8), 2, np.uint8)], [np.ones((8, 8), np.int32)], classes=3)
    elif case == "pages":
        (truth / "cell.png").unlink()
        tifffile.imwrite(truth / "cell.tif", np.full((2, 8, 8), 255, np.uint8) * (np.arange(8) < 4).astype(np.uint8))
    elif case == "kind":
        args += ["--mask-kind", "sideways"]
    before = files(tmp_path)
    got, err = fails(args, capsys)
    assert got == code and words in err, err
    assert files(tmp_path) == before and not (tmp_path / "out").exists()


def test_existing_files_are_kept_unless_overwrite(tmp_path, capsys):
    pred, truth = hand_case(tmp_path)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "summary.json").write_text("mine")
    before = files(tmp_path)
    code, err = fails(["--pred", str(pred), "--truth", str(truth), "--out", str(tmp_path / "out")], capsys)
    assert code == 2 and "summary.json" in err and "--overwrite" in err and files(tmp_path) == before
    evaluate.main(["--pred", str(pred), "--truth", str(truth), "--out", str(tmp_path / "out"), "--overwrite"])
    assert summary(tmp_path / "out")["images"] == 1


def test_a_network_of_other_classes_than_the_truth_is_refused_before_it_runs(class_ckpt, tmp_path, capsys):
    images, labels = synthetic_em(n=1, size=48)
    (tmp_path / "images").mkdir()
    (tmp_path / "truth").mkdir()
    Image.fromarray(images[0]).save(tmp_path / "images" / "a.png")
    Image.fromarray(labels[0]).save(tmp_path / "truth" / "a.png")
    code, err = fails(["--checkpoint", str(class_ckpt), "--images", str(tmp_path / "images"), "--truth",
                       str(tmp_path / "truth"), "--out", str(tmp_path / "out"), "--device", "cpu"], capsys)
    assert code == 1 and "predicts 3 classes but the truth masks are binary" in err
    assert not (tmp_path / "out").exists()


def test_every_flag_has_help_with_its_default_and_the_usage_names_the_module():
    parser = cli_evaluate.build_parser()
    assert parser.format_usage().startswith("usage: python -m experiments.evaluate")
    for action in parser._actions:
        if action.dest != "help":
            assert action.help and re.search(r"default|required", action.help), action.option_strings
