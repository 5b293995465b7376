import torch

from unet_repro.losses import WeightedBCEWithLogitsLoss


def test_weighted_bce_matches_torch_and_hand_formula():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 1, 8, 8, generator=g) * 5
    target = (torch.rand(2, 1, 8, 8, generator=g) > 0.5).float()
    weight = torch.rand(2, 1, 8, 8, generator=g) * 10 + 1
    loss = WeightedBCEWithLogitsLoss()(logits, target, weight)
    assert torch.allclose(loss, torch.nn.BCEWithLogitsLoss(weight=weight)(logits, target))
    p = torch.sigmoid(logits.double())
    hand = -(weight * (target * torch.log(p) + (1 - target) * torch.log(1 - p))).mean()
    assert torch.allclose(loss.double(), hand, rtol=1e-5)


def test_doubling_weights_doubles_loss():
    logits, target = torch.randn(1, 1, 5, 5), torch.ones(1, 1, 5, 5)
    weight = torch.rand(1, 1, 5, 5)
    f = WeightedBCEWithLogitsLoss()
    assert torch.allclose(f(logits, target, 2 * weight), 2 * f(logits, target, weight))


def test_stable_for_large_logits():
    logits = torch.tensor([[[[1000.0, -1000.0]]]])
    target = torch.tensor([[[[0.0, 1.0]]]])
    loss = WeightedBCEWithLogitsLoss()(logits, target, torch.ones_like(logits))
    assert torch.isfinite(loss) and abs(loss.item() - 1000.0) < 1e-3


def test_shape_mismatch_is_an_error():
    import pytest
    with pytest.raises(ValueError, match="same shape"):
        WeightedBCEWithLogitsLoss()(torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 4, 4), torch.ones(1, 1, 3, 3))
