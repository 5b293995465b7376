"""Per-image overlap metrics of binary masks: hand cases, identities, empty-mask conventions, ISIC / COCO thresholds."""
from __future__ import annotations

import numpy as np
import pytest

from unet_repro.metrics import (
    COCO_IOU_THRESHOLDS,
    Confusion,
    confusion,
    dice,
    iou,
    iou_threshold_sweep,
    pixel_accuracy,
    segmentation_report,
    sensitivity,
    specificity,
    thresholded_jaccard,
    thresholded_jaccard_per_image,
)

rng = np.random.default_rng(0)


def _random_pairs(n=20, shape=(16, 16)):
    return [(rng.random(shape) < rng.uniform(0.05, 0.9), rng.random(shape) < rng.uniform(0.05, 0.9))
            for _ in range(n)]


def test_confusion_hand_case():
    pred = np.array([[1, 1, 0], [0, 1, 0]])
    truth = np.array([[1, 0, 0], [1, 1, 0]])
    assert confusion(pred, truth) == Confusion(tp=2, fp=1, fn=1, tn=2)
    assert iou(pred, truth) == pytest.approx(2 / 4)
    assert dice(pred, truth) == pytest.approx(4 / 6)
    assert pixel_accuracy(pred, truth) == pytest.approx(4 / 6)
    assert sensitivity(pred, truth) == pytest.approx(2 / 3)
    assert specificity(pred, truth) == pytest.approx(2 / 3)


def test_perfect_prediction():
    truth = np.zeros((8, 8), bool)
    truth[2:5, 1:7] = True
    for f in (iou, dice, pixel_accuracy, sensitivity, specificity):
        assert f(truth, truth) == 1.0


def test_half_overlap_iou_one_third_dice_one_half():
    # two 4x4 squares overlapping in a 4x2 strip: |P & T| = 8, |P | T| = 24
    pred, truth = np.zeros((6, 8), bool), np.zeros((6, 8), bool)
    pred[1:5, 0:4] = True
    truth[1:5, 2:6] = True
    assert confusion(pred, truth) == Confusion(8, 8, 8, 48 - 24)
    assert iou(pred, truth) == pytest.approx(1 / 3)
    assert dice(pred, truth) == pytest.approx(1 / 2)
    assert sensitivity(pred, truth) == pytest.approx(1 / 2)
    assert specificity(pred, truth) == pytest.approx(24 / 32)
    assert pixel_accuracy(pred, truth) == pytest.approx(32 / 48)


def test_empty_mask_conventions():
    empty, full = np.zeros((4, 4), bool), np.ones((4, 4), bool)
    some = empty.copy()
    some[0, 0] = True
    # both empty: perfect
    assert iou(empty, empty) == dice(empty, empty) == 1.0
    assert sensitivity(empty, empty) == specificity(empty, empty) == pixel_accuracy(empty, empty) == 1.0
    # empty prediction of a non-empty truth: total miss
    assert iou(empty, some) == dice(empty, some) == sensitivity(empty, some) == 0.0
    assert specificity(empty, some) == 1.0
    # prediction with no truth: IoU/Dice 0, sensitivity 1 by convention (nothing to find), specificity penalises
    assert iou(some, empty) == dice(some, empty) == 0.0
    assert sensitivity(some, empty) == 1.0
    assert specificity(some, empty) == pytest.approx(15 / 16)
    # truth all foreground: specificity 1 by convention
    assert specificity(some, full) == 1.0
    assert sensitivity(some, full) == pytest.approx(1 / 16)


def test_input_forms():
    truth = np.zeros((5, 5), np.uint8)
    truth[1:3, 1:4] = 255  # 0/255 PNG-style mask
    pred = (truth > 0).astype(np.float32)  # 0/1 floats
    assert iou(pred, truth) == 1.0
    assert iou(truth > 0, truth) == 1.0
    with pytest.raises(ValueError, match="binary"):
        iou(pred * 0.7, truth)
    with pytest.raises(ValueError, match="same shape"):
        iou(pred, truth[:4])


def test_against_independent_set_formulas_and_identities():
    for pred, truth in _random_pairs():
        inter = np.logical_and(pred, truth).sum()
        union = np.logical_or(pred, truth).sum()
        j, d = iou(pred, truth), dice(pred, truth)
        assert j == pytest.approx(inter / union)
        assert d == pytest.approx(2 * inter / (pred.sum() + truth.sum()))
        assert d == pytest.approx(2 * j / (1 + j))  # per-image identity
        assert pixel_accuracy(pred, truth) == pytest.approx(np.mean(pred == truth))
        assert sensitivity(pred, truth) == pytest.approx(pred[truth].mean())
        assert specificity(pred, truth) == pytest.approx((~pred)[~truth].mean())
        # Dice is the F1 score of the foreground class: harmonic mean of precision and recall
        precision, recall = pred[truth].sum() / pred.sum(), sensitivity(pred, truth)
        assert d == pytest.approx(2 * precision * recall / (precision + recall))
        assert sum(confusion(pred, truth)) == pred.size


def test_thresholded_jaccard_zeroes_values_below_065():
    ious = np.array([0.9, 0.65, 0.6499, 0.3, 1.0, 0.0])
    np.testing.assert_array_equal(thresholded_jaccard_per_image(ious), [0.9, 0.65, 0.0, 0.0, 1.0, 0.0])
    assert thresholded_jaccard(ious) == pytest.approx((0.9 + 0.65 + 1.0) / 6)
    assert thresholded_jaccard(0.64) == 0.0 and thresholded_jaccard(0.8) == pytest.approx(0.8)
    assert thresholded_jaccard(ious, threshold=0.5) == pytest.approx((0.9 + 0.65 + 0.6499 + 1.0) / 6)
    # exactly 13/20 = 0.65 from masks is kept (>=)
    pred, truth = np.zeros(20, bool), np.zeros(20, bool)
    pred[:13], truth[:20] = True, True
    assert thresholded_jaccard(iou(pred, truth)) == pytest.approx(0.65)
    # never above the plain mean IoU
    assert thresholded_jaccard(ious) <= ious.mean()


def test_iou_threshold_sweep_coco_style():
    np.testing.assert_allclose(COCO_IOU_THRESHOLDS, [0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95])
    assert 0.7 in COCO_IOU_THRESHOLDS and 0.9 in COCO_IOU_THRESHOLDS  # exact, not 0.7000000000000002
    ious = np.array([0.7, 0.96, 0.4, 0.52])
    sweep = iou_threshold_sweep(ious)
    # hand: 0.7 passes 0.50..0.70 (5 of 10), 0.96 all 10, 0.4 none, 0.52 only 0.50 (1)
    np.testing.assert_allclose(sweep.per_image, [0.5, 1.0, 0.0, 0.1])
    np.testing.assert_allclose(sweep.fraction, [3 / 4, 2 / 4, 2 / 4, 2 / 4, 2 / 4, 1 / 4, 1 / 4, 1 / 4, 1 / 4, 1 / 4])
    assert sweep.mean == pytest.approx((0.5 + 1.0 + 0.0 + 0.1) / 4)
    assert sweep.mean == pytest.approx(sweep.per_image.mean())
    custom = iou_threshold_sweep(ious, thresholds=[0.5])
    assert custom.mean == pytest.approx(3 / 4)
    # different from the ISIC thresholded Jaccard on the same values
    assert not np.isclose(sweep.mean, thresholded_jaccard(ious))


def test_segmentation_report():
    pairs = _random_pairs(7)
    preds, truths = [p for p, _ in pairs], [t for _, t in pairs]
    report = segmentation_report(preds, truths)
    assert set(report) == {"iou", "dice", "pixel_accuracy", "sensitivity", "specificity", "thresholded_jaccard",
                           "iou_sweep"}
    for name, f in [("iou", iou), ("dice", dice), ("pixel_accuracy", pixel_accuracy), ("sensitivity", sensitivity),
                    ("specificity", specificity)]:
        values = [f(p, t) for p, t in pairs]
        assert report[name]["per_image"] == pytest.approx(values)
        assert report[name]["mean"] == pytest.approx(np.mean(values))
        assert report[name]["std"] == pytest.approx(np.std(values))
        assert isinstance(report[name]["mean"], float) and isinstance(report[name]["per_image"][0], float)
    ious = [iou(p, t) for p, t in pairs]
    assert report["thresholded_jaccard"]["mean"] == pytest.approx(thresholded_jaccard(ious))
    assert report["iou_sweep"]["mean"] == pytest.approx(iou_threshold_sweep(ious).mean)
    # stacked arrays, (N, H, W) or (N, 1, H, W), give the same; ddof=1 gives the sample std
    stacked = segmentation_report(np.stack(preds), np.stack(truths).astype(np.uint8) * 255, ddof=1)
    assert stacked["iou"]["per_image"] == pytest.approx(ious)
    assert stacked["iou"]["std"] == pytest.approx(np.std(ious, ddof=1))
    channel = segmentation_report(np.stack(preds)[:, None], np.stack(truths)[:, None])
    assert channel["dice"]["per_image"] == pytest.approx(report["dice"]["per_image"])


def test_segmentation_report_errors():
    with pytest.raises(ValueError, match="2 predictions but 1"):
        segmentation_report([np.zeros((2, 2))] * 2, [np.zeros((2, 2))])
    with pytest.raises(ValueError, match="no images"):
        segmentation_report([], [])
    with pytest.raises(ValueError, match=r"\(N, H, W\)"):
        segmentation_report(np.zeros((2, 2)), np.zeros((2, 2)))


def test_pooled_scores_sum_the_counts_over_images_first():
    from unet_repro.metrics import pooled_scores
    a_pred, a_true = np.array([[1, 1], [0, 0]]), np.array([[1, 0], [0, 0]])   # tp 1, fp 1, fn 0, tn 2
    b_pred, b_true = np.array([[0, 0], [0, 1]]), np.array([[1, 1], [0, 1]])   # tp 1, fp 0, fn 2, tn 1
    s = pooled_scores([a_pred, b_pred], [a_true, b_true])                      # tp 2, fp 1, fn 2, tn 3
    assert s["iou"] == pytest.approx(2 / 5) and s["dice"] == pytest.approx(4 / 7)
    assert s["iou_background"] == pytest.approx(3 / 6) and s["pixel_error"] == pytest.approx(3 / 8)
