"""ISBI-2012 challenge metrics on small hand-made cases with known answers (cell = True, membrane = False)."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
from conftest import real_data_root, synthetic_em
from scipy import ndimage
from scipy.stats import entropy
from skimage.measure import label
from skimage.metrics import adapted_rand_error, variation_of_information

from unet_repro.cells import label_cells
from unet_repro.metrics import (
    Mismatch,
    degenerate_thresholds,
    info_f_score,
    is_simple_point,
    pixel_error,
    pixel_mismatch,
    rand_error,
    rand_f_score,
    segment,
    simple_point_lut,
    thin_segment,
    threshold_sweep,
    topological_error,
    topological_errors,
    v_rand_v_info,
    warp_truth,
    warping_error,
    warping_errors,
    warping_mismatches,
)

H, W = 12, 16


def two_cells() -> np.ndarray:
    """Two cells separated by a 1-px vertical membrane at column 7."""
    m = np.ones((H, W), bool)
    m[:, 7] = False
    return m


def four_cells(row: int = 5, col: int = 7) -> np.ndarray:
    """Four cells separated by a 1-px membrane cross."""
    m = np.ones((H, W), bool)
    m[:, col] = False
    m[row, :] = False
    return m


def voronoi_truth(seed: int = 0, size: int = 96, cells: int = 12, width: int = 1) -> np.ndarray:
    """Voronoi cells separated by membranes ``width`` px wide that 4-separate the cells (a pixel is membrane when
    its right or lower neighbour belongs to another region)."""
    rng = np.random.default_rng(seed)
    pts = rng.integers(0, size, (cells, 2))
    yy, xx = np.mgrid[:size, :size]
    region = ((yy[..., None] - pts[:, 0]) ** 2 + (xx[..., None] - pts[:, 1]) ** 2).argmin(-1)
    membrane = np.zeros((size, size), bool)
    membrane[:, :-1] |= region[:, :-1] != region[:, 1:]
    membrane[:-1, :] |= region[:-1, :] != region[1:, :]
    if width > 1:
        membrane = ndimage.binary_dilation(membrane, iterations=width - 1)
    return ~membrane


def all_metrics(pred: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    v_rand, v_info = v_rand_v_info(pred, truth)
    return {"pixel_error": pixel_error(pred, truth), "pixel_mismatch": pixel_mismatch(pred, truth),
            "rand_error": rand_error(pred, truth), "warping_error": warping_error(pred, truth),
            "topological_error": topological_error(pred, truth), "v_rand": v_rand, "v_info": v_info}


PERFECT = {"pixel_error": 0.0, "pixel_mismatch": 0.0, "rand_error": 0.0, "warping_error": 0.0,
           "topological_error": 0.0, "v_rand": 1.0, "v_info": 1.0}


# ------------------------------------------------------------------------------------------ perfect prediction

@pytest.mark.parametrize("truth", [two_cells(), four_cells(), voronoi_truth()], ids=["two", "four", "voronoi"])
def test_perfect_prediction_scores_zero_errors_and_unit_scores(truth: np.ndarray) -> None:
    m = all_metrics(truth.copy(), truth)
    assert m == PERFECT
    assert not warping_mismatches(truth, truth).any()


def test_relabelled_segmentation_is_perfect_for_the_segment_scores() -> None:
    truth = segment(voronoi_truth())
    perm = np.concatenate([[0], 1 + np.random.default_rng(0).permutation(truth.max())])
    assert rand_f_score(perm[truth], truth) == pytest.approx(1.0, abs=1e-12)
    assert info_f_score(perm[truth], truth) == pytest.approx(1.0, abs=1e-12)


def test_segment_uses_4_connectivity_for_cells() -> None:
    m = np.zeros((3, 3), bool)
    m[0, 0] = m[1, 1] = True                 # touching at a corner only
    assert segment(m).max() == 2
    assert segment(np.ones((3, 3), bool)).max() == 1


@pytest.mark.parametrize("k", range(4))
def test_segment_is_the_packages_cell_notion(k: int) -> None:
    """The metrics' cells are `unet_repro.cells.label_cells` (the weight map's too), on EM-like labels whose cells
    touch diagonally (where 4- and 8-connectivity disagree)."""
    mask = synthetic_em()[1][k] > 0
    np.testing.assert_array_equal(segment(mask), label_cells(mask))
    assert segment(mask).max() > label_cells(mask, connectivity=8).max()


# -------------------------------------------------------------------------------------- boundary displacement

@pytest.mark.parametrize("truth,pred", [(two_cells(), np.roll(two_cells(), 1, axis=1)),
                                        (four_cells(5, 7), four_cells(6, 8)),
                                        (four_cells(5, 7), four_cells(4, 8))],
                         ids=["line+1", "cross+1+1", "cross-1+1"])
def test_shifted_membrane_has_zero_warping_error_but_pixel_error(truth: np.ndarray, pred: np.ndarray) -> None:
    assert pixel_error(pred, truth) > 0 and pixel_mismatch(pred, truth) > 0
    assert warping_error(pred, truth) == 0.0 and topological_error(pred, truth) == 0.0
    np.testing.assert_array_equal(warp_truth(pred, truth), pred)   # the warp reaches the prediction exactly
    assert not warping_mismatches(pred, truth).any()


# ----------------------------------------------------------------------------------------- topological errors

def test_extra_membrane_is_a_split() -> None:
    truth = two_cells()
    pred = truth.copy()
    pred[5, 8:] = False                       # cuts the right cell in two
    err, mask = warping_errors(pred, truth)
    kinds = warping_mismatches(pred, truth)
    assert err == pytest.approx(1 / truth.size)  # one pixel of the cut cannot be warped away
    assert mask.sum() == 1 and kinds[mask].tolist() == [Mismatch.SPLIT]
    assert not (kinds == Mismatch.MERGE).any()
    assert rand_error(pred, truth) > 0 and v_rand_v_info(pred, truth)[0] < 1


def test_gap_in_membrane_is_a_merge() -> None:
    truth = two_cells()
    pred = truth.copy()
    pred[5, 7] = True                         # one-pixel gap joins the two cells
    err, mask = warping_errors(pred, truth)
    assert err == pytest.approx(1 / truth.size)
    assert mask[5, 7] and mask.sum() == 1
    assert warping_mismatches(pred, truth)[5, 7] == Mismatch.MERGE
    re = rand_error(pred, truth)
    v_rand, v_info = v_rand_v_info(pred, truth)
    assert re > 0.3                           # one predicted segment for two equal true cells
    assert v_rand < 0.7 and v_info < 0.1      # (V_Info: I(S;T) = 0 when S is a single segment)
    assert pixel_error(pred, truth) < 0.01    # ...while only one pixel is wrong


def test_merge_and_split_errors_add_up() -> None:
    truth = four_cells()
    pred = truth.copy()
    pred[2, 7] = True                         # merge the top two cells
    pred[9, 8:] = False                       # split the bottom-right cell
    kinds = warping_mismatches(pred, truth)
    assert (kinds == Mismatch.MERGE).sum() == 1 and (kinds == Mismatch.SPLIT).sum() == 1
    assert warping_error(pred, truth) == pytest.approx(2 / truth.size)


def test_hole_is_a_topological_mismatch_but_not_a_split_or_merge() -> None:
    truth = two_cells()
    pred = truth.copy()
    pred[4:6, 2:4] = False                    # a 2x2 membrane blob inside the left cell
    kinds = warping_mismatches(pred, truth)
    assert (kinds == Mismatch.HOLE_ADDITION).sum() == 4 and (kinds != 0).sum() == 4
    assert warping_error(pred, truth) == 0.0
    err, mask = topological_errors(pred, truth)
    assert err == pytest.approx(4 / truth.size) and mask[4:6, 2:4].all() and mask.sum() == 4
    assert 0 < rand_error(pred, truth) < 0.05  # 4 singletons: a small Rand penalty
    assert v_rand_v_info(pred, truth) == pytest.approx((1.0, 1.0))  # thinning absorbs the blob


def test_isolated_blob_is_an_object_addition_not_a_split_or_merge() -> None:
    truth = np.ones((H, W), bool)
    truth[:, 5:11] = False                    # a 6-px-wide membrane band
    pred = truth.copy()
    pred[6, 8] = True                         # a one-pixel "cell" inside it
    kinds = warping_mismatches(pred, truth)
    assert kinds[6, 8] == Mismatch.OBJECT_ADDITION and (kinds != 0).sum() == 1
    assert warping_error(pred, truth) == 0.0
    assert topological_error(pred, truth) == pytest.approx(1 / truth.size)
    assert rand_error(pred, truth) == 0.0     # outside the true cells: foreground restriction ignores it


def test_missing_small_cell_is_an_object_deletion() -> None:
    truth = np.zeros((H, W), bool)
    truth[2:5, 2:5] = True
    truth[7:10, 8:14] = True
    pred = truth.copy()
    pred[2:5, 2:5] = False
    kinds = warping_mismatches(pred, truth)
    assert (kinds == Mismatch.OBJECT_DELETION).sum() == 1   # shrunk to one pixel, which cannot vanish
    assert warping_error(pred, truth) == 0.0
    assert topological_error(pred, truth) == pytest.approx(1 / truth.size)


def test_merge_and_split_count_in_both_warping_errors() -> None:
    truth = four_cells()
    pred = truth.copy()
    pred[2, 7] = True                         # merge
    pred[9, 8:] = False                       # split
    assert topological_error(pred, truth) == warping_error(pred, truth) == pytest.approx(2 / truth.size)


# -------------------------------------------------------------------------------------- degenerate predictions

@pytest.mark.parametrize("truth", [four_cells(), voronoi_truth(seed=1, size=64), voronoi_truth(seed=2, width=2)],
                         ids=["four", "voronoi", "voronoi-thick"])
def test_all_membrane_prediction(truth: np.ndarray) -> None:
    """Warping the truth towards all membrane shrinks every (hole-free) true cell to one pixel: the last pixel of
    an object is not simple. Jain's topological error counts those pixels (one per true cell); the challenge's
    split+merge warping error does not (they are OBJECT_DELETION), so it is 0 -- by its definition."""
    pred = np.zeros_like(truth)
    n_cells = segment(truth).max()
    kinds = warping_mismatches(pred, truth)
    assert (kinds == Mismatch.OBJECT_DELETION).sum() == n_cells and (kinds != 0).sum() == n_cells
    assert label_cells(warp_truth(pred, truth)).max() == n_cells       # each cell kept as one pixel
    assert n_cells >= 4 and topological_error(pred, truth) == pytest.approx(n_cells / truth.size)
    assert warping_error(pred, truth) == 0.0


@pytest.mark.parametrize("truth", [four_cells(), voronoi_truth(seed=1, size=64), voronoi_truth(seed=2, width=2)],
                         ids=["four", "voronoi", "voronoi-thick"])
def test_all_cell_prediction(truth: np.ndarray) -> None:
    """Warping the truth towards all cell thins its membranes to lines that cannot be removed without joining two
    cells: MERGE pixels, counted by both warping errors."""
    pred = np.ones_like(truth)
    kinds = warping_mismatches(pred, truth)
    assert (kinds == Mismatch.MERGE).sum() > 0
    assert warping_error(pred, truth) > 0
    assert topological_error(pred, truth) >= warping_error(pred, truth)
    # the warped truth still has all its cells, each a 4-connected component
    assert label_cells(warp_truth(pred, truth)).max() == segment(truth).max()


def test_warp_preserves_the_truth_topology_and_gets_closer_to_the_prediction() -> None:
    truth = voronoi_truth(seed=3, width=2)
    rng = np.random.default_rng(1)
    pred = truth ^ (rng.random(truth.shape) < 0.08)
    warped = warp_truth(pred, truth)
    # outside the image counts as membrane, so count components with a membrane frame around the image
    framed_w, framed_t = np.pad(warped, 1), np.pad(truth, 1)
    assert label(framed_w, connectivity=1).max() == label(framed_t, connectivity=1).max() == 12
    assert label(~framed_w, connectivity=2).max() == label(~framed_t, connectivity=2).max()
    assert (warped != pred).sum() < (truth != pred).sum()
    # it stopped because no remaining mismatch is a simple point (each would change the topology)
    for y, x in zip(*np.nonzero(warped != pred)):
        assert not is_simple_point(framed_w[y:y + 3, x:x + 3]), (y, x)


# ---------------------------------------------------------------------------------- Rand / VI vs scikit-image

def _singletons(pred_seg: np.ndarray, truth_seg: np.ndarray) -> np.ndarray:
    """Give every predicted-boundary pixel inside a true cell its own label (the challenge's convention)."""
    out = pred_seg.astype(np.int64).copy()
    idx = np.flatnonzero((pred_seg == 0) & (truth_seg > 0))
    out.flat[idx] = out.max() + 1 + np.arange(idx.size)
    return out


def _thick_membrane_pred(truth: np.ndarray) -> np.ndarray:
    pred = ~ndimage.binary_dilation(~truth)   # membranes one pixel thicker on each side
    pred[:, 40] = False                       # plus a spurious cut
    return pred


def test_rand_f_score_equals_scikit_image_with_self_pairs_and_singletons() -> None:
    """skimage's adapted Rand counts pairs without self-pairs and treats predicted label 0 as a segment; with the
    boundary pixels made singletons the two differ only by the n self-pairs, which we add back exactly."""
    truth_seg = segment(voronoi_truth(seed=2))
    pred_seg = segment(_thick_membrane_pred(truth_seg > 0))
    single = _singletons(pred_seg, truth_seg)
    fg = truth_seg > 0
    n = fg.sum()
    s_a = np.sum(np.bincount(truth_seg[fg]).astype(float) ** 2)
    s_b = np.sum(np.bincount(single[fg]).astype(float) ** 2)
    are, _, _ = adapted_rand_error(truth_seg, single)
    pairs_ab = (1 - are) * (s_a - n + s_b - n) / 2        # skimage's F = 2 X / (A' + B') with A' = S_A - n ...
    expected = 2 * (pairs_ab + n) / (s_a + s_b)
    assert rand_f_score(pred_seg, truth_seg) == pytest.approx(expected, rel=1e-12)
    assert rand_f_score(single, truth_seg) == pytest.approx(expected, rel=1e-12)


def test_rand_error_close_to_scikit_image_when_the_prediction_has_no_boundary_inside_true_cells() -> None:
    truth = voronoi_truth(seed=4, width=2)
    pred = truth.copy()
    pred[:, 47:50] = True                     # open a vertical cut through the membranes: merges only
    assert not np.any(~pred & truth)
    ours = rand_error(pred, truth)
    skim = adapted_rand_error(segment(truth), segment(pred))[0]
    assert ours > 0.05 and abs(ours - skim) < 0.01 * max(ours, skim)


def test_info_f_score_matches_scikit_image_variation_of_information() -> None:
    """V_Info = (H(S) + H(T) - VI) / (H(S) + H(T)), VI from skimage, entropies from label histograms."""
    truth_seg = segment(voronoi_truth(seed=5))
    pred_seg = segment(_thick_membrane_pred(truth_seg > 0))
    single = _singletons(pred_seg, truth_seg)
    fg = truth_seg > 0
    h_t = entropy(np.bincount(truth_seg[fg]), base=2)
    h_s = entropy(np.bincount(single[fg]), base=2)
    vi = variation_of_information(truth_seg, single, ignore_labels=[0]).sum()
    expected = (h_s + h_t - vi) / (h_s + h_t)
    assert 0.1 < expected < 0.9               # many singletons: why the challenge thins the proposal first
    assert info_f_score(pred_seg, truth_seg) == pytest.approx(expected, rel=1e-9)


def test_thin_segment_keeps_the_cells_and_thins_boundaries_to_watershed_lines() -> None:
    truth = np.ones((H, W), bool)
    truth[:, 5:10] = False                    # 5-px membrane between two cells
    thin = thin_segment(truth)
    assert set(np.unique(thin)) == {0, 1, 2}
    assert (thin == 0).sum() == H             # a single 1-px line
    np.testing.assert_array_equal(thin[truth], segment(truth)[truth])
    # a thick predicted membrane then costs nothing in V_Rand / V_Info if the true one lies on the line
    gt = np.ones((H, W), bool)
    gt[:, 7] = False
    assert v_rand_v_info(truth, gt) == pytest.approx((1.0, 1.0))
    assert pixel_error(truth, gt) > 0.1


# ------------------------------------------------------------------------------------------ simple-point LUT

def _patch(rows: list[str]) -> np.ndarray:
    return np.array([[c == "#" for c in r] for r in rows])


def test_simple_point_lut_basic_configurations() -> None:
    assert not is_simple_point(_patch(["...", ".#.", "..."]))     # isolated pixel
    assert not is_simple_point(_patch(["###", "###", "###"]))     # interior pixel
    assert is_simple_point(_patch(["...", "##.", "..."]))         # end of a line
    assert not is_simple_point(_patch(["...", "###", "..."]))     # middle of a line (deleting splits it)
    assert is_simple_point(_patch(["###", "##.", "..."]))         # straight border pixel
    assert not is_simple_point(_patch(["#..", ".#.", "..."]))     # only a diagonal neighbour: 4-isolated
    assert not is_simple_point(_patch(["#.#", "...", "#.#"]))     # diagonals only: it would be a new 4-component
    assert not is_simple_point(_patch(["...", "#.#", "..."]))     # adding it would merge two cells


def test_simple_point_lut_matches_yokoi_connectivity_number() -> None:
    """Independent characterisation: with 4-connected foreground, p is simple iff the Yokoi connectivity number
    N4 = sum_{k in E,N,W,S} (x_k - x_k x_{k+1} x_{k+2}) equals 1 (neighbours counter-clockwise from E)."""
    lut = simple_point_lut()
    assert lut.shape == (256,) and lut.dtype == bool
    for code in range(256):
        x = [(code >> k) & 1 for k in range(8)] + [code & 1, (code >> 1) & 1]
        n4 = sum(x[k] - x[k] * x[k + 1] * x[k + 2] for k in (0, 2, 4, 6))
        assert lut[code] == (n4 == 1), code


def test_simple_point_lut_for_8_connected_cells_is_the_dual() -> None:
    """With 8-connected cells and 4-connected membranes p is simple for X iff it is simple for the complement of X
    with 4-connected cells (the roles of cell and membrane swap)."""
    lut4, lut8 = simple_point_lut(4), simple_point_lut(8)
    assert all(lut8[code] == lut4[~code & 0xFF] for code in range(256))
    assert lut8[0b00000010] and not lut4[0b00000010]           # a single diagonal neighbour: simple only for 8


# ------------------------------------------------------------------------------------------- threshold sweep

def _banded_prob(truth: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """P(cell) for which only 0.35 <= t < 0.45 reproduces the truth: cells at 0.45 or 0.9, membrane at 0.35 or
    0.05, so of the grid 0.0, 0.1, ..., 0.9 only t = 0.4 is perfect."""
    hi = np.where(rng.random(truth.shape) < 0.3, 0.45, 0.9)
    lo = np.where(rng.random(truth.shape) < 0.3, 0.35, 0.05)
    return np.where(truth, hi, lo).astype(np.float32)


def test_threshold_sweep_picks_the_only_perfect_threshold() -> None:
    rng = np.random.default_rng(0)
    truth = np.stack([voronoi_truth(seed=s, size=64) for s in (6, 7)])
    prob = np.stack([_banded_prob(t, rng) for t in truth])
    res = threshold_sweep(prob, truth.astype(np.uint8) * 255)
    np.testing.assert_allclose(res["thresholds"], np.arange(10) / 10)
    assert res["degenerate_thresholds"] == pytest.approx([0.0, 0.9])   # all cell above 0.0; all membrane at 0.9
    for name, best in PERFECT.items():
        r = res[name]
        assert r["threshold"] == pytest.approx(0.4) and r["index"] == 4, name
        assert r["value"] == pytest.approx(best, abs=1e-12), name
        assert r["degenerate"] is False, name
        assert r["per_slice"].shape == (2,) and r["per_slice_curve"].shape == (2, 10)
    assert np.all(np.delete(res["pixel_error"]["curve"], 4) > 0)
    assert np.all(np.delete(res["v_rand"]["curve"], 4) < 1)


def test_threshold_sweep_pools_slices_like_the_challenge() -> None:
    rng = np.random.default_rng(1)
    truth = np.stack([voronoi_truth(seed=s, size=48) for s in (8, 9)])
    prob = np.clip(np.stack([ndimage.gaussian_filter(t.astype(float), 1.0) for t in truth])
                   + rng.normal(0, 0.15, truth.shape), 0, 1)
    res = threshold_sweep(prob, truth, thresholds=[0.3, 0.5, 0.7])
    j = 1
    preds = prob[:, :, :] > 0.5
    for i in range(2):                                   # per-slice values = the single-slice functions
        assert res["pixel_error"]["per_slice_curve"][i, j] == pytest.approx(pixel_error(preds[i], truth[i]))
        assert res["rand_error"]["per_slice_curve"][i, j] == pytest.approx(rand_error(preds[i], truth[i]))
        assert res["warping_error"]["per_slice_curve"][i, j] == pytest.approx(warping_error(preds[i], truth[i]))
        assert res["topological_error"]["per_slice_curve"][i, j] == pytest.approx(
            topological_error(preds[i], truth[i]))
        vr, vi = v_rand_v_info(preds[i], truth[i])
        assert res["v_rand"]["per_slice_curve"][i, j] == pytest.approx(vr)
        assert res["v_info"]["per_slice_curve"][i, j] == pytest.approx(vi)
    # pooled = the slices side by side, separated by a membrane column (no pairs across slices)
    sep = np.zeros((48, 1), bool)
    side_pred = np.hstack([preds[0], sep, preds[1]])
    side_truth = np.hstack([truth[0], sep, truth[1]])
    assert res["rand_error"]["curve"][j] == pytest.approx(rand_error(side_pred, side_truth))
    assert res["warping_error"]["curve"][j] == pytest.approx(res["warping_error"]["per_slice_curve"][:, j].mean())
    assert res["v_info"]["curve"][j] == pytest.approx(res["v_info"]["per_slice_curve"][:, j].mean())
    tp_fp_fn_pe = pixel_error(np.hstack([preds[0], preds[1]]), np.hstack([truth[0], truth[1]]))
    assert res["pixel_error"]["curve"][j] == pytest.approx(tp_fp_fn_pe)


def test_threshold_sweep_warping_only_at_best_pixel_threshold() -> None:
    rng = np.random.default_rng(2)
    truth = voronoi_truth(seed=10, size=48)
    prob = _banded_prob(truth, rng)
    res = threshold_sweep(prob, truth, metrics=("pixel_error", "warping_error"), warping_at="best_pixel_error")
    curve = res["warping_error"]["curve"]
    assert np.isnan(np.delete(curve, 4)).all() and curve[4] == 0.0
    assert res["warping_error"]["threshold"] == pytest.approx(0.4)
    assert set(res) == {"thresholds", "degenerate_thresholds", "pixel_error", "warping_error"}


def test_degenerate_thresholds() -> None:
    prob = np.stack([np.full((4, 4), 0.3), np.linspace(0.15, 0.75, 16).reshape(4, 4)])
    t = np.arange(10) / 10
    # slice 0 is constant: all cell for t < 0.3, all membrane from 0.3 on; slice 1 is all cell for t < 0.15 and
    # all membrane for t >= 0.75
    np.testing.assert_array_equal(degenerate_thresholds(prob, t), np.ones(10, bool))
    np.testing.assert_array_equal(degenerate_thresholds(prob[1], t), (t < 0.15) | (t >= 0.75))


def _merging_prob(truth: np.ndarray, top: float = 0.55) -> np.ndarray:
    """P(cell) = ``top`` on the cells and 0 on the membranes, except for a gap of ``top`` through every membrane
    line of column 20: every threshold below ``top`` merges cells; from ``top`` on the prediction is empty."""
    prob = np.where(truth, top, 0.0)
    prob[:, 20] = top
    return prob


def test_sweep_never_takes_an_empty_prediction_for_a_perfect_one() -> None:
    """The bug: a map whose high thresholds give no cell pixel at all got warping error 0 from them (an
    all-membrane prediction has no split or merger). Now those thresholds are skipped and the value is the
    (positive) error of the best real prediction."""
    truth = np.stack([voronoi_truth(seed=s, size=48) for s in (11, 12)])
    prob = np.stack([_merging_prob(t) for t in truth])
    res = threshold_sweep(prob, truth, metrics=("pixel_error", "warping_error", "topological_error", "v_rand"))
    assert res["degenerate_thresholds"] == pytest.approx([0.6, 0.7, 0.8, 0.9])
    assert np.all(res["warping_error"]["curve"][6:] == 0.0)          # what used to be picked
    for name in ("pixel_error", "warping_error", "topological_error", "v_rand"):
        r = res[name]
        assert r["threshold"] < 0.55 and r["degenerate"] is False, name
    assert res["warping_error"]["value"] > 0 and res["topological_error"]["value"] > 0
    assert res["topological_error"]["curve"][6:].min() > 0           # Jain's count is not fooled either


def test_sweep_flags_a_degenerate_choice_when_every_threshold_is_degenerate() -> None:
    truth = voronoi_truth(seed=13, size=48)
    prob = np.full(truth.shape, 0.05)                                # all cell at t = 0, all membrane above
    with pytest.warns(RuntimeWarning, match="degenerate"):
        res = threshold_sweep(prob, truth, metrics=("pixel_error", "warping_error"))
    assert res["degenerate_thresholds"] == pytest.approx(np.arange(10) / 10)
    assert res["warping_error"]["degenerate"] is True and res["pixel_error"]["degenerate"] is True
    with warnings.catch_warnings():
        warnings.simplefilter("error")                               # no warning when a real choice exists
        threshold_sweep(_merging_prob(truth), truth, metrics=("warping_error",))


def test_inputs_are_checked() -> None:
    with pytest.raises(ValueError, match="binary"):
        pixel_error(np.full((4, 4), 0.7), np.ones((4, 4), bool))
    with pytest.raises(ValueError, match="same shape"):
        rand_error(np.ones((4, 4), bool), np.ones((4, 5), bool))
    with pytest.raises(ValueError, match="unknown metrics"):
        threshold_sweep(np.zeros((4, 4)), np.ones((4, 4), bool), metrics=("dice",))


# ----------------------------------------------------------------------------------------------- real data

@pytest.mark.realdata
def test_real_label_against_itself_and_dilated_membranes() -> None:
    import tifffile

    path = real_data_root("isbi2012") / "train-labels.tif"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    truth = tifffile.imread(path)[0] > 127
    m = all_metrics(truth, truth)
    assert m == PERFECT
    dilated = ~ndimage.binary_dilation(~truth)           # membranes 1 px thicker on each side
    m = all_metrics(dilated, truth)
    assert m["pixel_error"] > 0.01 and m["pixel_mismatch"] > 0.01
    assert 0 <= m["warping_error"] < 1e-3               # only thin cell necks / tiny cells change topology
    assert m["warping_error"] < 0.05 * m["pixel_mismatch"]
    assert m["warping_error"] <= m["topological_error"] < 0.05 * m["pixel_mismatch"]
    assert m["v_rand"] > 0.99 and m["v_info"] > 0.99   # thinning removes most of the membrane-width effect
