"""Object matching of instance label images against a brute-force matcher written here (every one-to-one assignment
enumerated, IoUs from per-pair boolean masks), hand cases, empty images, dtypes and the dataset report."""
from __future__ import annotations

import numpy as np
import pytest

from unet_repro.errors import DataError
from unet_repro.metrics import (
    COCO_IOU_THRESHOLDS,
    OBJECT_RATIOS,
    ObjectCounts,
    match_objects,
    match_overlap,
    object_overlap,
    object_report,
    object_scores,
)

THRESHOLDS = (0.1, 0.3, 0.5, 0.7)
DTYPES = (np.uint8, np.uint16, np.int32, np.uint32, np.int64, np.uint64)


# ------------------------------------------------------------------------------------------- the reference

def brute_iou(truth, pred):
    """Label values and IoU of every (true, predicted) pair, from one boolean mask per pair."""
    t_labels = [v for v in np.unique(truth) if v != 0]
    p_labels = [v for v in np.unique(pred) if v != 0]
    iou = np.zeros((len(t_labels), len(p_labels)))
    for i, a in enumerate(t_labels):
        for j, b in enumerate(p_labels):
            t, p = truth == a, pred == b
            iou[i, j] = np.count_nonzero(t & p) / np.count_nonzero(t | p)
    return t_labels, p_labels, iou


def brute_match(truth, pred, threshold):
    """(most matches, largest summed IoU among those) over all one-to-one assignments of pairs with IoU >= t."""
    _, _, iou = brute_iou(truth, pred)
    n_true, n_pred = iou.shape
    best = (0, 0.0)

    def extend(i, used, n, total):
        nonlocal best
        if i == n_true:
            best = max(best, (n, total))
            return
        extend(i + 1, used, n, total)  # true object i left unmatched
        for j in range(n_pred):
            if j not in used and iou[i, j] >= threshold:
                extend(i + 1, used | {j}, n + 1, total + iou[i, j])

    extend(0, frozenset(), 0, 0.0)
    return best


def brute_scores(tp, n_true, n_pred, sum_iou):
    fp, fn = n_pred - tp, n_true - tp
    if tp == 0:
        return dict(tp=0, fp=fp, fn=fn, precision=0.0, recall=0.0, f1=0.0, average_precision=0.0,
                    mean_matched_iou=0.0)
    return dict(tp=tp, fp=fp, fn=fn, precision=tp / n_pred, recall=tp / n_true, f1=2 * tp / (n_true + n_pred),
                average_precision=tp / (tp + fp + fn), mean_matched_iou=sum_iou / tp)


# ------------------------------------------------------------------------------------ random label images

def paint(rng, shape, n):
    """n random rectangles / discs, later ones over earlier ones (so objects overlap, shrink or vanish)."""
    img = np.zeros(shape, np.int64)
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    for label in range(1, n + 1):
        y, x = rng.integers(0, shape[0]), rng.integers(0, shape[1])
        if rng.random() < 0.5:
            h, w = rng.integers(2, 9, 2)
            img[y:y + h, x:x + w] = label
        else:
            img[(yy - y) ** 2 + (xx - x) ** 2 <= rng.integers(2, 20)] = label
    return img


def strips(rng, shape=(2, 24)):
    """2 to 6 side-by-side column bands, some left as background: two such images overlap in chains (each true band
    meets two or three predicted ones), where the matching with the largest IoU sum is not the one with most pairs."""
    n = rng.integers(2, 7)
    cuts = np.sort(rng.choice(np.arange(1, shape[1]), n - 1, replace=False))
    row = np.zeros(shape[1], np.int64)
    for label, (a, b) in enumerate(zip([0, *cuts], [*cuts, shape[1]]), 1):
        row[a:b] = label if rng.random() < 0.85 else 0
    return np.repeat(row[None], shape[0], axis=0)


def perturb(rng, truth):
    """A prediction made from the truth: shifted, objects split, merged, dropped, and false positives added."""
    pred = np.roll(truth, tuple(rng.integers(-1, 2, 2)), axis=(0, 1))
    labels = [v for v in np.unique(pred) if v]
    if labels and rng.random() < 0.5:  # split one object down a column
        v = rng.choice(labels)
        ys, xs = np.nonzero(pred == v)
        cut = rng.integers(xs.min(), xs.max() + 1)
        pred[(pred == v) & (np.arange(pred.shape[1])[None, :] > cut)] = pred.max() + 1
    if len(labels) >= 2 and rng.random() < 0.5:  # merge two objects
        a, b = rng.choice(labels, 2, replace=False)
        pred[pred == b] = a
    if labels and rng.random() < 0.3:  # drop one
        pred[pred == rng.choice(labels)] = 0
    if rng.random() < 0.4:  # a false positive
        y, x = rng.integers(0, pred.shape[0] - 3), rng.integers(0, pred.shape[1] - 3)
        pred[y:y + 3, x:x + 3] = pred.max() + 1
    return pred


#: Label values to draw from: non-consecutive, up to the largest of each dtype.
LABEL_VALUES = np.array([1, 2, 3, 5, 9, 17, 65, 100, 128, 200, 255, 1000, 65535, 70000, 2**31 - 1, 2**32 - 1, 2**33],
                        dtype=np.uint64)


def relabel(rng, labels, dtype):
    """The same objects under shuffled, non-consecutive label values that fit ``dtype``."""
    values = [v for v in np.unique(labels) if v]
    pool = LABEL_VALUES[LABEL_VALUES <= np.iinfo(dtype).max]
    out = np.zeros(labels.shape, dtype)
    for old, new in zip(values, rng.choice(pool, len(values), replace=False)):
        out[labels == old] = new
    return out


def random_pairs(seed, n):
    rng = np.random.default_rng(seed)
    for _ in range(n):
        if rng.random() < 0.3:
            yield relabel(rng, strips(rng), rng.choice(DTYPES)), relabel(rng, strips(rng), rng.choice(DTYPES))
            continue
        truth = paint(rng, (20, 20), rng.integers(1, 5))
        pred = perturb(rng, truth) if rng.random() < 0.6 else paint(rng, (20, 20), rng.integers(1, 6))
        yield relabel(rng, truth, rng.choice(DTYPES)), relabel(rng, pred, rng.choice(DTYPES))


# ------------------------------------------------------------------------------------------------- tests

def test_iou_matrix_equals_per_pair_masks():
    for truth, pred in random_pairs(seed=1, n=60):
        t_labels, p_labels, expected = brute_iou(truth, pred)
        overlap = object_overlap(truth, pred)
        assert overlap.true_labels.tolist() == [int(v) for v in t_labels]
        assert overlap.pred_labels.tolist() == [int(v) for v in p_labels]
        np.testing.assert_array_equal(overlap.iou_matrix(), expected)
        assert overlap.true_areas.tolist() == [np.count_nonzero(truth == v) for v in t_labels]


def test_iou_matrix_with_many_objects():
    # 225 true 2x2 blocks against 100 predicted 3x3 blocks shifted by one pixel: more (true, predicted) label
    # combinations than pixels, and labels up to 2^32 - 1
    rng = np.random.default_rng(6)
    yy, xx = np.mgrid[:30, :30]
    truth = relabel_many(rng, (yy // 2) * 15 + xx // 2 + 1, np.uint32)
    pred = relabel_many(rng, ((yy + 1) // 3) * 11 + (xx + 1) // 3 + 1, np.uint16)
    pred[:3, :3] = 0  # and some background
    t_labels, p_labels = np.unique(truth[truth > 0]), np.unique(pred[pred > 0])
    t_masks = (truth.ravel()[None, :] == t_labels[:, None]).astype(float)  # one mask per object
    p_masks = (pred.ravel()[None, :] == p_labels[:, None]).astype(float)
    inter = t_masks @ p_masks.T
    expected = inter / (t_masks.sum(1)[:, None] + p_masks.sum(1)[None, :] - inter)
    overlap = object_overlap(truth, pred)
    assert overlap.true_labels.tolist() == t_labels.tolist() and overlap.pred_labels.tolist() == p_labels.tolist()
    np.testing.assert_array_equal(overlap.iou_matrix(), expected)


def relabel_many(rng, labels, dtype):
    """Consecutive labels 1..n to n distinct random values of ``dtype`` (0 stays 0)."""
    values = rng.choice(int(np.iinfo(dtype).max), labels.max(), replace=False) + 1
    return np.concatenate([[0], values]).astype(dtype)[labels]


def test_matching_equals_brute_force_on_random_images():
    n_conflicts = 0  # cases where the candidate pairs at t are not already one-to-one (the assignment is needed)
    for truth, pred in random_pairs(seed=2, n=250):
        t_labels, p_labels, iou = brute_iou(truth, pred)
        overlap = object_overlap(truth, pred)
        for t in THRESHOLDS:
            m = match_overlap(overlap, t)
            n, total = brute_match(truth, pred, t)
            assert len(m.ious) == n, (t, truth, pred)
            assert float(np.sum(m.ious)) == pytest.approx(total, abs=1e-12)
            # a valid one-to-one matching of pairs with IoU >= t, with their true IoUs
            assert len(set(m.true_labels.tolist())) == n and len(set(m.pred_labels.tolist())) == n
            for a, b, value in zip(m.true_labels, m.pred_labels, m.ious):
                expected = iou[t_labels.index(a), p_labels.index(b)]
                assert value == expected and value >= t
            candidates = iou >= t
            n_conflicts += bool((candidates.sum(0) > 1).any() or (candidates.sum(1) > 1).any())
    assert n_conflicts >= 30  # the random images do exercise the assignment


def test_scores_equal_the_formulas_on_random_images():
    for truth, pred in random_pairs(seed=3, n=40):
        _, _, iou = brute_iou(truth, pred)
        for t in THRESHOLDS:
            n, total = brute_match(truth, pred, t)
            assert object_scores(match_objects(truth, pred, t).counts()) == pytest.approx(
                brute_scores(n, iou.shape[0], iou.shape[1], total))


def square_image(shape=(12, 12), **objects):
    """Label image with rectangles ``label=(y0, y1, x0, x1)``; labels given as ``_<value>``."""
    img = np.zeros(shape, np.int32)
    for name, (y0, y1, x0, x1) in objects.items():
        img[y0:y1, x0:x1] = int(name[1:])
    return img


def scores_at(truth, pred, t):
    return object_scores(match_objects(truth, pred, t).counts())


def test_hand_perfect_match():
    truth, pred = square_image(_5=(2, 6, 2, 6)), square_image(_2=(2, 6, 2, 6))
    m = match_objects(truth, pred, 0.9)
    assert (m.true_labels.tolist(), m.pred_labels.tolist(), m.ious.tolist()) == ([5], [2], [1.0])
    assert scores_at(truth, pred, 0.9) == dict(tp=1, fp=0, fn=0, precision=1.0, recall=1.0, f1=1.0,
                                               average_precision=1.0, mean_matched_iou=1.0)


def test_hand_split_object():
    # one 4x4 true object; predicted as a 4x3 part (IoU 12/16) and a 4x1 part (IoU 4/16)
    truth, pred = square_image(_1=(0, 4, 0, 4)), square_image(_7=(0, 4, 0, 3), _8=(0, 4, 3, 4))
    for t in (0.2, 0.5, 0.75):
        m = match_objects(truth, pred, t)
        assert (m.pred_labels.tolist(), m.ious.tolist()) == ([7], [0.75])  # the larger part, also at t = 0.2
        assert scores_at(truth, pred, t) == pytest.approx(dict(tp=1, fp=1, fn=0, precision=0.5, recall=1.0,
                                                               f1=2 / 3, average_precision=0.5, mean_matched_iou=0.75))
    assert scores_at(truth, pred, 0.8)["tp"] == 0


def test_hand_merged_objects():
    # two 4x2 true objects side by side, predicted as one 4x4 object: IoU 0.5 with each
    truth, pred = square_image(_1=(0, 4, 0, 2), _2=(0, 4, 2, 4)), square_image(_9=(0, 4, 0, 4))
    assert scores_at(truth, pred, 0.5) == pytest.approx(dict(tp=1, fp=0, fn=1, precision=1.0, recall=0.5, f1=2 / 3,
                                                             average_precision=0.5, mean_matched_iou=0.5))
    assert scores_at(truth, pred, 0.51)["tp"] == 0


def test_hand_missed_object_and_false_positive():
    truth = square_image(_1=(0, 3, 0, 3), _2=(6, 9, 6, 9))
    missed = square_image(_1=(0, 3, 0, 3))
    assert scores_at(truth, missed, 0.5) == pytest.approx(dict(tp=1, fp=0, fn=1, precision=1.0, recall=0.5,
                                                               f1=2 / 3, average_precision=0.5, mean_matched_iou=1.0))
    extra = square_image(_1=(0, 3, 0, 3), _2=(6, 9, 6, 9), _3=(10, 12, 0, 2))
    assert scores_at(truth, extra, 0.5) == pytest.approx(dict(tp=2, fp=1, fn=0, precision=2 / 3, recall=1.0,
                                                              f1=0.8, average_precision=2 / 3, mean_matched_iou=1.0))


def test_hand_most_matches_beat_the_largest_iou():
    # true A = columns 0..9, B = 10..11; predicted X = 3..11, Y = 0..2 (all rows).
    # IoU: A-X 7/12, A-Y 3/10, B-X 2/9, B-Y 0. At t = 0.2, A-X alone has the larger IoU sum (0.58 > 0.52),
    # but A-Y + B-X is two matches: the one-to-one matching must take those (greedy by IoU would take A-X).
    truth = square_image((3, 12), _1=(0, 3, 0, 10), _2=(0, 3, 10, 12))
    pred = square_image((3, 12), _5=(0, 3, 3, 12), _6=(0, 3, 0, 3))
    m = match_objects(truth, pred, 0.2)
    assert dict(zip(m.true_labels.tolist(), m.pred_labels.tolist())) == {1: 6, 2: 5}
    assert m.ious.tolist() == pytest.approx([3 / 10, 2 / 9])
    m = match_objects(truth, pred, 0.25)  # B-X no longer qualifies: the best single pair
    assert dict(zip(m.true_labels.tolist(), m.pred_labels.tolist())) == {1: 5}


@pytest.mark.parametrize("truth_objects, pred_objects", [(False, False), (False, True), (True, False)])
def test_empty_images(truth_objects, pred_objects):
    empty, full = np.zeros((8, 8), np.uint16), square_image((8, 8), _4=(1, 3, 1, 3), _9=(5, 7, 5, 7))
    truth, pred = (full if truth_objects else empty), (full if pred_objects else empty)
    m = match_objects(truth, pred, 0.5)
    assert len(m.ious) == 0 and m.n_true == 2 * truth_objects and m.n_pred == 2 * pred_objects
    # StarDist's convention: every ratio is 0 without a match, also when there is nothing to find and nothing found
    assert scores_at(truth, pred, 0.5) == dict(tp=0, fp=2 * pred_objects, fn=2 * truth_objects,
                                               **dict.fromkeys(OBJECT_RATIOS, 0.0))


def test_empty_empty_image_moves_the_image_mean_not_the_pooled_scores():
    empty, full = np.zeros((8, 8), np.uint8), square_image((8, 8), _1=(1, 3, 1, 3))
    report = object_report([full, empty], [full, empty])
    assert report["pooled"]["mean_over_thresholds"] == dict.fromkeys(OBJECT_RATIOS, 1.0)
    assert report["image_mean"]["mean_over_thresholds"] == dict.fromkeys(OBJECT_RATIOS, 0.5)


@pytest.mark.parametrize("t_dtype, p_dtype", [(np.uint8, np.uint8), (np.uint16, np.int32), (np.uint32, np.uint16),
                                              (np.int32, np.uint32), (np.uint64, np.int64)])
def test_label_dtypes_and_values_do_not_matter(t_dtype, p_dtype):
    rng = np.random.default_rng(4)
    for _ in range(10):
        truth = paint(rng, (16, 16), 4)
        pred = perturb(rng, truth)
        _, _, iou = brute_iou(truth, pred)
        t2, p2 = relabel(rng, truth, t_dtype), relabel(rng, pred, p_dtype)
        assert (t2.dtype, p2.dtype) == (t_dtype, p_dtype)
        for t in THRESHOLDS:
            n, total = brute_match(truth, pred, t)
            expected = brute_scores(n, *iou.shape, total)
            assert object_scores(match_objects(t2, p2, t).counts()) == pytest.approx(expected)


def test_report_pools_counts_and_averages_ratios():
    pairs = list(random_pairs(seed=5, n=8))
    report = object_report([t for t, _ in pairs], [p for _, p in pairs])
    taus = COCO_IOU_THRESHOLDS.tolist()
    assert report["thresholds"] == taus and report["threshold"] == 0.5
    per_image = []
    for (truth, pred), block in zip(pairs, report["per_image"]):
        _, _, iou = brute_iou(truth, pred)
        counts = [(*brute_match(truth, pred, t), *iou.shape) for t in taus]  # (tp, sum_iou, n_true, n_pred)
        per_image.append(counts)
        expected = [brute_scores(tp, nt, np_, s) for tp, s, nt, np_ in counts]
        assert (block["n_true"], block["n_pred"]) == iou.shape
        for name in expected[0]:
            assert block["by_threshold"][name] == pytest.approx([e[name] for e in expected])
        assert block["at_threshold"] == pytest.approx(expected[0])
    for k, t in enumerate(taus):
        tp, total, n_true, n_pred = (sum(image[k][field] for image in per_image) for field in range(4))
        expected = brute_scores(tp, n_true, n_pred, total)
        for name, value in expected.items():
            assert report["pooled"]["by_threshold"][name][k] == pytest.approx(value)
        for name in OBJECT_RATIOS:
            assert report["image_mean"]["by_threshold"][name][k] == pytest.approx(
                np.mean([block["by_threshold"][name][k] for block in report["per_image"]]))
    for block in (report["pooled"], report["image_mean"], *report["per_image"]):
        for name in OBJECT_RATIOS:
            assert block["mean_over_thresholds"][name] == pytest.approx(np.mean(block["by_threshold"][name]))
            assert block["at_threshold"][name] == block["by_threshold"][name][0]


def test_report_threshold_picks_its_column():
    truth, pred = square_image(_1=(0, 4, 0, 4)), square_image(_7=(0, 4, 0, 3), _8=(0, 4, 3, 4))
    report = object_report([truth], [pred], thresholds=(0.3, 0.8), threshold=0.8)
    assert report["pooled"]["at_threshold"]["tp"] == 0 and report["pooled"]["by_threshold"]["tp"] == [1, 0]
    with pytest.raises(ValueError, match="must be one of the thresholds"):
        object_report([truth], [pred], thresholds=(0.3, 0.8))


def test_counts_add_up():
    assert ObjectCounts(n_true=3, n_pred=5, tp=2, sum_iou=1.5).fp == 3
    assert ObjectCounts(n_true=3, n_pred=5, tp=2, sum_iou=1.5).fn == 1


@pytest.mark.parametrize("bad, message", [
    (np.zeros((4, 4), np.float32), "must hold integers"),
    (np.zeros((4, 4), bool), "must hold integers"),
    (np.full((4, 4), -1, np.int32), "must be >= 0"),
    (np.zeros((2, 4, 4), np.int32), "2-D label image"),
])
def test_bad_label_images_are_refused(bad, message):
    good = np.zeros(bad.shape[-2:], np.int32)
    with pytest.raises(DataError, match=message):
        match_objects(good, bad)
    with pytest.raises(DataError, match=r"pred\[1\]"):
        object_report([good, good], [good, bad])


def test_bad_shapes_and_thresholds_are_refused():
    with pytest.raises(DataError, match="same shape"):
        object_overlap(np.zeros((4, 4), np.int32), np.zeros((4, 5), np.int32))
    for t in (0.0, -0.1, 1.5):
        with pytest.raises(ValueError, match="IoU threshold"):
            match_objects(np.zeros((4, 4), np.int32), np.zeros((4, 4), np.int32), t)
