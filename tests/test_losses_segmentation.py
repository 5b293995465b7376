"""The segmentation losses against hand computations (numpy, float64, straight from the formulas) and properties."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from unet_repro.losses import (
    LOSSES,
    BCEWithLogitsLoss,
    ComboLoss,
    DiceLoss,
    FocalLoss,
    TverskyLoss,
    WeightedBCEWithLogitsLoss,
    build_loss,
)

# Two 1x2x2 images: a mix of confident/unsure, right/wrong pixels.
Z = np.array([[[[2.0, -1.0], [0.5, -3.0]]],
              [[[-0.5, 1.5], [3.0, 0.0]]]])
T = np.array([[[[1.0, 0.0], [0.0, 1.0]]],
              [[[0.0, 1.0], [1.0, 1.0]]]])


def _t(a: np.ndarray) -> torch.Tensor:
    return torch.tensor(a, dtype=torch.float64)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def _np_bce(z, t, pos_weight=1.0):
    p = _sigmoid(z)
    return float(np.mean(-(pos_weight * t * np.log(p) + (1 - t) * np.log(1 - p))))


def _np_dice(z, t, s, per_image=True):
    p = _sigmoid(z)
    if not per_image:
        return 1 - (2 * np.sum(p * t) + s) / (np.sum(p) + np.sum(t) + s)
    return float(np.mean([1 - (2 * np.sum(pb * tb) + s) / (np.sum(pb) + np.sum(tb) + s) for pb, tb in zip(p, t)]))


def _np_tversky(z, t, a, b, s):
    p = _sigmoid(z)
    out = []
    for pb, tb in zip(p, t):
        tp, fp, fn = np.sum(pb * tb), np.sum(pb * (1 - tb)), np.sum((1 - pb) * tb)
        out.append(1 - (tp + s) / (tp + a * fp + b * fn + s))
    return float(np.mean(out))


def _np_focal(z, t, gamma, alpha=None):
    p = _sigmoid(z)
    pt = np.where(t == 1, p, 1 - p)
    at = 1.0 if alpha is None else np.where(t == 1, alpha, 1 - alpha)
    return float(np.mean(-at * (1 - pt) ** gamma * np.log(pt)))


# ----------------------------------------------------------------------------------------------- hand values

def test_bce_hand_value_one_pixel():
    # z = 0: sigma = 1/2, -log(1/2) = log 2 for either target
    assert BCEWithLogitsLoss()(torch.zeros(1, 1, 1, 1), torch.ones(1, 1, 1, 1)).item() == pytest.approx(math.log(2))
    # z = 2, t = 1, pos_weight 3: 3 * log(1 + e^-2)
    loss = BCEWithLogitsLoss(pos_weight=3.0)(torch.full((1, 1, 1, 1), 2.0), torch.ones(1, 1, 1, 1))
    assert loss.item() == pytest.approx(3 * math.log1p(math.exp(-2)), rel=1e-6)


@pytest.mark.parametrize("pos_weight", [None, 2.5])
def test_bce_matches_numpy(pos_weight):
    loss = BCEWithLogitsLoss(pos_weight=pos_weight)(_t(Z), _t(T))
    assert loss.dtype == torch.float64
    assert loss.item() == pytest.approx(_np_bce(Z, T, 1.0 if pos_weight is None else pos_weight), rel=1e-12)


def test_dice_hand_value():
    # one image, z = 0 everywhere -> p = 1/2 at 4 pixels, target has 1 positive:
    # 1 - (2 * 0.5 + s) / (2 + 1 + s); s = 1 -> 1 - 2/4 = 0.5
    loss = DiceLoss(smooth=1.0)(torch.zeros(1, 1, 2, 2), torch.tensor([[[[1.0, 0], [0, 0]]]]))
    assert loss.item() == pytest.approx(0.5)


@pytest.mark.parametrize("smooth", [0.0, 1.0])
@pytest.mark.parametrize("per_image", [True, False])
def test_dice_matches_numpy(smooth, per_image):
    loss = DiceLoss(smooth=smooth, per_image=per_image)(_t(Z), _t(T))
    assert loss.item() == pytest.approx(_np_dice(Z, T, smooth, per_image), rel=1e-12)


def test_dice_per_image_differs_from_batch_dice():
    assert not math.isclose(_np_dice(Z, T, 1.0, True), _np_dice(Z, T, 1.0, False))


def test_tversky_hand_value():
    # p = 1/2 at 4 pixels, target [1, 0, 0, 0]: TP = 0.5, FP = 1.5, FN = 0.5; alpha 0.3, beta 0.7, s 0
    # 1 - 0.5 / (0.5 + 0.45 + 0.35) = 1 - 0.5 / 1.3
    loss = TverskyLoss(alpha=0.3, beta=0.7, smooth=0.0)(torch.zeros(1, 1, 2, 2), torch.tensor([[[[1.0, 0], [0, 0]]]]))
    assert loss.item() == pytest.approx(1 - 0.5 / 1.3)


@pytest.mark.parametrize("alpha,beta,smooth", [(0.5, 0.5, 1.0), (0.3, 0.7, 1.0), (0.7, 0.3, 0.0), (1.0, 1.0, 0.5)])
def test_tversky_matches_numpy(alpha, beta, smooth):
    loss = TverskyLoss(alpha=alpha, beta=beta, smooth=smooth)(_t(Z), _t(T))
    assert loss.item() == pytest.approx(_np_tversky(Z, T, alpha, beta, smooth), rel=1e-12)


def test_tversky_alpha_weights_false_positives():
    # prediction confident everywhere, target empty except one pixel: only FPs (no FN)
    z = torch.full((1, 1, 2, 2), 20.0)
    t = torch.tensor([[[[1.0, 0], [0, 0]]]])
    heavy_fp = TverskyLoss(alpha=0.9, beta=0.1, smooth=0.0)(z, t)
    light_fp = TverskyLoss(alpha=0.1, beta=0.9, smooth=0.0)(z, t)
    assert heavy_fp > light_fp
    assert heavy_fp.item() == pytest.approx(1 - 1 / (1 + 0.9 * 3), rel=1e-6)


def test_focal_hand_value():
    # one pixel, z = 0, t = 1: p_t = 1/2 -> (1/2)^2 * log 2; with alpha = 0.25: 0.25 * that
    z, t = torch.zeros(1, 1, 1, 1), torch.ones(1, 1, 1, 1)
    assert FocalLoss(gamma=2.0)(z, t).item() == pytest.approx(0.25 * math.log(2))
    assert FocalLoss(gamma=2.0, alpha=0.25)(z, t).item() == pytest.approx(0.25 * 0.25 * math.log(2))
    # a negative pixel gets 1 - alpha
    assert FocalLoss(gamma=2.0, alpha=0.25)(z, 0 * t).item() == pytest.approx(0.75 * 0.25 * math.log(2))


@pytest.mark.parametrize("gamma,alpha", [(0.0, None), (2.0, None), (2.0, 0.25), (0.5, 0.8), (5.0, None)])
def test_focal_matches_numpy(gamma, alpha):
    loss = FocalLoss(gamma=gamma, alpha=alpha)(_t(Z), _t(T))
    assert loss.item() == pytest.approx(_np_focal(Z, T, gamma, alpha), rel=1e-10)


def test_combo_matches_numpy():
    loss = ComboLoss(focal_weight=0.3, dice_weight=0.7, gamma=2.0, alpha=0.25)(_t(Z), _t(T))
    expected = 0.3 * _np_focal(Z, T, 2.0, 0.25) + 0.7 * _np_dice(Z, T, 1.0)
    assert loss.item() == pytest.approx(expected, rel=1e-12)


# ----------------------------------------------------------------------------------------------- properties

def _perfect(b=2, h=8, w=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    t = (torch.rand(b, 1, h, w, generator=g) > 0.5).float()
    return (2 * t - 1) * 50.0, t


@pytest.mark.parametrize("loss", [DiceLoss(), DiceLoss(smooth=0.0), TverskyLoss(), TverskyLoss(0.3, 0.7, 0.0)])
def test_perfect_confident_prediction_is_near_zero(loss):
    z, t = _perfect()
    assert loss(z, t).item() < 1e-6


def test_dice_and_tversky_of_empty_target_and_prediction_are_zero():
    z, t = torch.full((1, 1, 4, 4), -50.0), torch.zeros(1, 1, 4, 4)
    assert DiceLoss()(z, t).item() < 1e-6
    assert TverskyLoss()(z, t).item() < 1e-6


def test_tversky_half_half_equals_dice():
    z, t = _t(Z), _t(T)
    assert torch.allclose(TverskyLoss(0.5, 0.5, smooth=0.0)(z, t), DiceLoss(smooth=0.0)(z, t))
    # with smoothing: Tversky's s enters once where Dice's enters with 2 TP, so s_tversky = s_dice / 2
    assert torch.allclose(TverskyLoss(0.5, 0.5, smooth=0.5)(z, t), DiceLoss(smooth=1.0)(z, t))
    assert torch.allclose(TverskyLoss(0.5, 0.5, smooth=1.0, per_image=False)(z, t),
                          DiceLoss(smooth=2.0, per_image=False)(z, t))


def test_focal_gamma0_no_alpha_equals_bce():
    g = torch.Generator().manual_seed(1)
    z = torch.randn(3, 1, 6, 6, generator=g, dtype=torch.float64) * 4
    t = (torch.rand(3, 1, 6, 6, generator=g) > 0.3).double()
    assert torch.allclose(FocalLoss(gamma=0.0)(z, t), BCEWithLogitsLoss()(z, t), rtol=1e-12)
    assert torch.allclose(FocalLoss(gamma=0.0)(z, t), torch.nn.BCEWithLogitsLoss()(z, t), rtol=1e-12)


def test_focal_down_weights_easy_examples():
    z, t = torch.full((1, 1, 1, 1), 4.0), torch.ones(1, 1, 1, 1)  # p = 0.982, correct
    easy_focal, easy_bce = FocalLoss(gamma=2.0)(z, t), FocalLoss(gamma=0.0)(z, t)
    assert easy_focal < 1e-3 * easy_bce  # factor (1 - p)^2 = 3.2e-4
    hard = -z  # confidently wrong: factor ~0.96, barely reduced
    assert FocalLoss(gamma=2.0)(hard, t) > 0.9 * FocalLoss(gamma=0.0)(hard, t)


def test_combo_is_weighted_sum_of_its_parts():
    z, t = _t(Z), _t(T)
    combo = ComboLoss(focal_weight=2.0, dice_weight=0.25, gamma=1.5, alpha=0.6, smooth=0.5)
    expected = 2.0 * FocalLoss(1.5, 0.6)(z, t) + 0.25 * DiceLoss(smooth=0.5)(z, t)
    assert torch.allclose(combo(z, t), expected, rtol=1e-12)
    assert torch.allclose(ComboLoss(1.0, 0.0, gamma=0.0)(z, t), BCEWithLogitsLoss()(z, t), rtol=1e-12)


ALL = [BCEWithLogitsLoss(), BCEWithLogitsLoss(pos_weight=3.0), DiceLoss(), DiceLoss(smooth=0.0, per_image=False),
       FocalLoss(), FocalLoss(gamma=0.5, alpha=0.25), TverskyLoss(0.3, 0.7), ComboLoss(), WeightedBCEWithLogitsLoss()]


@pytest.mark.parametrize("loss", ALL, ids=lambda m: repr(m).replace("\n", ""))
def test_finite_for_huge_logits_and_gradients_flow(loss):
    z = torch.tensor([[[[1000.0, -1000.0], [1000.0, -1000.0]]], [[[0.3, -0.2], [1000.0, 1000.0]]]],
                     requires_grad=True)
    t = torch.tensor([[[[1.0, 0.0], [0.0, 1.0]]], [[[1.0, 0.0], [1.0, 0.0]]]])
    value = loss(z, t)
    assert value.ndim == 0 and torch.isfinite(value)
    value.backward()
    assert torch.isfinite(z.grad).all()
    assert z.grad.abs().sum() > 0


@pytest.mark.parametrize("loss", ALL, ids=lambda m: repr(m).replace("\n", ""))
def test_batch_mean_semantics(loss):
    # every loss of a batch is the mean of the losses of its images (DiceLoss(per_image=False) excepted)
    if isinstance(loss, DiceLoss) and not loss.per_image:
        pytest.skip("one Dice over the batch by design")
    z, t = _t(Z), _t(T)
    per_image = torch.stack([loss(z[i:i + 1], t[i:i + 1]) for i in range(len(z))])
    assert torch.allclose(loss(z, t), per_image.mean(), rtol=1e-12)
    # and a batch of two copies of one image has that image's loss
    assert torch.allclose(loss(torch.cat([z[:1], z[:1]]), torch.cat([t[:1], t[:1]])), loss(z[:1], t[:1]), rtol=1e-12)


@pytest.mark.parametrize("loss", ALL[:-1], ids=lambda m: repr(m).replace("\n", ""))
def test_weight_argument_is_accepted_and_ignored(loss):
    z, t = _t(Z), _t(T)
    assert torch.equal(loss(z, t, weight=torch.rand_like(z) * 10), loss(z, t))
    assert torch.equal(loss(z, t, None), loss(z, t))


@pytest.mark.parametrize("loss", ALL, ids=lambda m: repr(m).replace("\n", ""))
def test_shape_mismatch_is_an_error(loss):
    with pytest.raises(ValueError, match="same shape"):
        loss(torch.zeros(2, 1, 4, 4), torch.zeros(2, 1, 4, 3))


def test_registry_and_build_loss():
    assert set(LOSSES) == {"bce", "dice", "focal", "tversky", "combo", "weighted_bce"}
    for name, cls in LOSSES.items():
        assert type(build_loss(name)) is cls
    tv = build_loss("Tversky", alpha=0.3, beta=0.7)
    assert isinstance(tv, TverskyLoss) and (tv.alpha, tv.beta) == (0.3, 0.7)
    with pytest.raises(ValueError, match="known losses: bce, combo, dice, focal, tversky, weighted_bce"):
        build_loss("lovasz")


@pytest.mark.parametrize("bad", [lambda: DiceLoss(smooth=-1), lambda: FocalLoss(gamma=-1), lambda: FocalLoss(alpha=2),
                                 lambda: TverskyLoss(alpha=-0.1), lambda: ComboLoss(dice_weight=-1),
                                 lambda: BCEWithLogitsLoss(pos_weight=0.0)])
def test_invalid_options(bad):
    with pytest.raises(ValueError):
        bad()


def test_bce_pos_weight_follows_module_device_and_dtype():
    loss = BCEWithLogitsLoss(pos_weight=2.0).double()
    assert loss.pos_weight.dtype == torch.float64
    assert "pos_weight" in loss.state_dict()
