"""Per-class IoU and Dice of K-class masks against a direct per-class loop written here, both empty-class
conventions, the pooled and per-image aggregates, and the binary case against `metrics.segmentation`."""
from __future__ import annotations

import math

import numpy as np
import pytest

from unet_repro.errors import DataError
from unet_repro.metrics import CLASS_MEANS, class_confusion_matrix, class_report, class_scores, dice, iou

rng = np.random.default_rng(0)


def random_masks(n_classes, n=6, shape=(12, 12)):
    """Pairs of class masks; each image uses a random subset of the classes, so some are absent from truth,
    prediction or both."""
    pairs = []
    for _ in range(n):
        present = [c for c in range(n_classes) if rng.random() < 0.6] or [0]
        truth = rng.choice(present, shape)
        pred = np.where(rng.random(shape) < 0.7, truth, rng.choice(present + [rng.integers(n_classes)], shape))
        pairs.append((truth.astype(rng.choice([np.uint8, np.int32, np.int64])), pred.astype(np.uint16)))
    return pairs


def direct(truth, pred, n_classes, ignore_empty):
    """Per-class IoU and Dice from one boolean mask per class, with the empty rules spelled out."""
    ious, dices = [], []
    for c in range(n_classes):
        t, p = truth == c, pred == c
        inter, union, sizes = np.sum(t & p), np.sum(t | p), np.sum(t) + np.sum(p)
        if ignore_empty and not t.any():
            ious.append(math.nan), dices.append(math.nan)
        elif union == 0:
            ious.append(1.0), dices.append(1.0)
        else:
            ious.append(inter / union), dices.append(2 * inter / sizes)
    return ious, dices


def mean_of_present(values):
    kept = [v for v in values if not math.isnan(v)]
    return sum(kept) / len(kept) if kept else math.nan


def expected_scores(truth, pred, n_classes, ignore_empty):
    ious, dices = direct(truth, pred, n_classes, ignore_empty)
    return {"iou": ious, "dice": dices, "mean_iou_foreground": mean_of_present(ious[1:]),
            "mean_iou_all": mean_of_present(ious), "mean_dice_foreground": mean_of_present(dices[1:]),
            "mean_dice_all": mean_of_present(dices)}


def assert_same(actual, expected):
    assert actual.keys() == expected.keys()
    for key, value in expected.items():
        np.testing.assert_allclose(actual[key], value, rtol=1e-12, equal_nan=True, err_msg=key)


def test_confusion_matrix_counts_pixels():
    truth = np.array([[0, 1, 1], [2, 2, 0]])
    pred = np.array([[0, 1, 2], [2, 0, 0]])
    expected = np.zeros((3, 3), int)
    for a, b in zip(truth.ravel(), pred.ravel()):
        expected[a, b] += 1
    np.testing.assert_array_equal(class_confusion_matrix(truth, pred, 3), expected)


def test_hand_case():
    truth = np.array([[0, 1, 1], [2, 2, 0]], np.uint8)
    pred = np.array([[0, 1, 2], [2, 0, 0]], np.uint8)
    s = class_scores(class_confusion_matrix(truth, pred, 4))
    # class 0: 2 of 3 pixels / 3 in union; class 1: 1 / 2; class 2: 1 / 3; class 3 absent everywhere -> NaN
    np.testing.assert_allclose(s["iou"], [2 / 3, 1 / 2, 1 / 3, np.nan], equal_nan=True)
    np.testing.assert_allclose(s["dice"], [4 / 5, 2 / 3, 2 / 4, np.nan], equal_nan=True)
    assert s["mean_iou_foreground"] == pytest.approx((1 / 2 + 1 / 3) / 2)
    assert s["mean_iou_all"] == pytest.approx((2 / 3 + 1 / 2 + 1 / 3) / 3)
    s = class_scores(class_confusion_matrix(truth, pred, 4), ignore_empty=False)
    assert s["iou"][3] == s["dice"][3] == 1.0
    assert s["mean_iou_foreground"] == pytest.approx((1 / 2 + 1 / 3 + 1) / 3)


@pytest.mark.parametrize("n_classes", [2, 3, 5])
@pytest.mark.parametrize("ignore_empty", [True, False])
def test_per_image_scores_equal_the_direct_loop(n_classes, ignore_empty):
    for truth, pred in random_masks(n_classes, n=10):
        assert_same(class_scores(class_confusion_matrix(truth, pred, n_classes), ignore_empty),
                    expected_scores(truth, pred, n_classes, ignore_empty))


def test_class_absent_from_truth_but_predicted():
    truth, pred = np.zeros((2, 2), np.uint8), np.array([[0, 1], [0, 0]], np.uint8)
    assert math.isnan(class_scores(class_confusion_matrix(truth, pred, 2))["iou"][1])  # MONAI ignore_empty=True
    assert class_scores(class_confusion_matrix(truth, pred, 2), ignore_empty=False)["iou"][1] == 0.0


def test_all_classes_nan_gives_nan_means_without_warnings(recwarn):
    s = class_scores(np.zeros((3, 3), np.int64))
    assert all(math.isnan(s[name]) for name in CLASS_MEANS)
    assert not recwarn.list


@pytest.mark.parametrize("n_classes", [2, 4])
@pytest.mark.parametrize("ignore_empty", [True, False])
def test_report_pooled_and_image_mean(n_classes, ignore_empty):
    pairs = random_masks(n_classes, n=5)
    report = class_report([t for t, _ in pairs], [p for _, p in pairs], n_classes, ignore_empty)
    assert (report["n_classes"], report["ignore_empty"]) == (n_classes, ignore_empty)
    per_image = [expected_scores(t, p, n_classes, ignore_empty) for t, p in pairs]
    for actual, expected in zip(report["per_image"], per_image):
        assert_same(actual, expected)
    # pooled: the pixels of all images as one image
    all_truth = np.concatenate([t.ravel() for t, _ in pairs])[None]
    all_pred = np.concatenate([p.ravel() for _, p in pairs])[None]
    assert_same(report["pooled"], expected_scores(all_truth, all_pred, n_classes, ignore_empty))
    # image mean: per class over the images where it is defined; class means: mean of the per-image means
    expected_mean = {name: [mean_of_present([s[name][c] for s in per_image]) for c in range(n_classes)]
                     for name in ("iou", "dice")}
    expected_mean.update({name: mean_of_present([s[name] for s in per_image]) for name in CLASS_MEANS})
    assert_same(report["image_mean"], expected_mean)


def test_binary_masks_match_the_binary_metrics():
    for _ in range(20):
        truth, pred = rng.random((10, 10)) < rng.uniform(0, 0.6), rng.random((10, 10)) < rng.uniform(0, 0.6)
        truth[:, :rng.integers(0, 11)] = False  # sometimes an empty truth
        s = class_scores(class_confusion_matrix(truth, pred, 2), ignore_empty=False)
        assert s["iou"][1] == pytest.approx(iou(pred, truth))
        assert s["dice"][1] == pytest.approx(dice(pred, truth))
        assert s["iou"][0] == pytest.approx(iou(~pred, ~truth))
        assert s["mean_iou_foreground"] == s["iou"][1]


@pytest.mark.parametrize("bad, message", [
    (np.full((3, 3), 2, np.uint8), r"0\.\.1"),
    (np.full((3, 3), 255, np.uint8), r"mask > 0"),
    (np.full((3, 3), -1, np.int32), r"0\.\.1"),
    (np.zeros((3, 3), np.float32), "integer class indices"),
    (np.zeros((1, 3, 3), np.uint8), "2-D class mask"),
])
def test_bad_masks_are_refused(bad, message):
    good = np.zeros(bad.shape[-2:], np.uint8)
    with pytest.raises(DataError, match=message):
        class_confusion_matrix(good, bad, 2)
    with pytest.raises(DataError, match=r"pred\[1\]"):
        class_report([good, good], [good, bad], 2)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="n_classes"):
        class_confusion_matrix(np.zeros((2, 2), np.uint8), np.zeros((2, 2), np.uint8), 1)
    with pytest.raises(DataError, match="same shape"):
        class_confusion_matrix(np.zeros((2, 2), np.uint8), np.zeros((2, 3), np.uint8), 2)
    with pytest.raises(ValueError, match="as many"):
        class_report([np.zeros((2, 2), np.uint8)], [], 2)
