import math

import pytest
import torch
from torch import nn

from unet_repro.models import MODELS, SegNet, UNet, UNetDilated, UNetSame, UNetUnpool, build_model
from unet_repro.models.unet_variants import ConvDown, TransposedUp

# At full width (base_width 64) and base_width 16, in_channels 3, out_channels 1: the numbers in the docstrings.
PARAMS = {
    "unet": (31_031_745, 1_941_105),
    "unet_same": (34_519_233, 2_160_177),
    "unet_strided": (32_432_193, 2_030_097),
    "unet_unpool": (34_519_233, 2_160_177),
    "unet_dilated": (37_654_593, 2_356_497),
    "segnet": (29_435_649, 1_843_137),
    "segnet_nearest": (29_435_649, 1_843_137),
}


def count_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def small(name: str, **options) -> nn.Module:
    """A small 3 -> 1 model whose output has the input's size (the paper's U-Net with padding='same')."""
    extra = {"padding": "same"} if name == "unet" else {}
    return build_model(name, in_channels=3, base_width=4, **extra, **options)


def test_every_model_is_documented():
    assert set(MODELS) == set(PARAMS)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_maps_64_to_64_and_backward(name):
    torch.manual_seed(0)
    m = small(name)
    y = m(torch.randn(2, 3, 64, 64))
    assert y.shape == (2, 1, 64, 64)
    y.square().mean().backward()
    for p_name, p in m.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), p_name
    assert any(p.grad.abs().sum() > 0 for p in m.parameters())


@pytest.mark.parametrize("name", sorted(MODELS))
def test_parameter_counts(name):
    full, b16 = PARAMS[name]
    with torch.device("meta"):  # no memory, no init cost
        assert count_params(build_model(name, in_channels=3)) == full
        assert count_params(build_model(name, in_channels=3, base_width=16)) == b16


def test_paper_unet_default_unchanged_by_registry():
    with torch.device("meta"):
        m = build_model("unet")
        assert m.widths == UNet().widths == (64, 128, 256, 512, 1024)
        assert m.in_channels == 1 and count_params(m) == 31_030_593
        assert build_model("unet", base_width=16).widths == (16, 32, 64, 128, 256)
        assert build_model("unet", base_width=8, depth=2).widths == (8, 16, 32)
    with pytest.raises(ValueError, match="either widths or base_width"):
        build_model("unet", base_width=16, widths=(16, 32))


@pytest.mark.parametrize("name", sorted(MODELS))
def test_build_model_base_width_8(name):
    m = build_model(name, in_channels=3, base_width=8).eval()
    n = m.input_size(4) if name == "unet" else 64  # valid-conv U-Net: 188 -> 4
    with torch.no_grad():
        y = m(torch.zeros(1, 3, n, n))
    assert y.shape == (1, 1, m.output_size(n), m.output_size(n))


def test_unknown_model_lists_names():
    with pytest.raises(ValueError, match="unknown model 'segnte'") as err:
        build_model("segnte")
    for name in MODELS:
        assert name in str(err.value)


@pytest.mark.parametrize("name", sorted(set(MODELS) - {"unet"}))
def test_invalid_size_names_nearest_valid_sizes(name):
    m = small(name)
    step = 2 ** m.depth  # 16 for the U-Net variants, 32 for SegNet
    assert m.output_size(3 * step) == m.input_size(3 * step) == 3 * step
    with pytest.raises(ValueError, match=f"nearest valid sizes are {2 * step} and {3 * step}"):
        m.output_size(2 * step + 6)
    with pytest.raises(ValueError, match=f"smallest valid size is {step}"):
        m.output_size(step // 2)
    with pytest.raises(ValueError, match="not valid"):
        m(torch.zeros(1, 3, 2 * step, 2 * step + 2))  # the width is checked too


def test_size_step_follows_depth():
    assert SegNet(base_width=2, depth=3).output_size(24) == 24
    with pytest.raises(ValueError, match="16 and 24"):
        SegNet(base_width=2, depth=3).output_size(20)
    assert UNetSame(base_width=2, depth=2).output_size(12) == 12


def _pool_and_unpool_calls(m: nn.Module):
    pools, unpools = [], []
    for mod in m.modules():
        if isinstance(mod, nn.MaxPool2d):
            mod.register_forward_hook(lambda _, inp, out: pools.append(out))
        elif isinstance(mod, nn.MaxUnpool2d):
            mod.register_forward_hook(lambda _, inp, out: unpools.append((inp[0], inp[1], out)))
    return pools, unpools


@pytest.mark.parametrize("model", [lambda: SegNet(base_width=4, depth=3), lambda: UNetUnpool(base_width=4, depth=3)])
def test_unpooling_uses_the_encoders_indices(model):
    torch.manual_seed(0)
    m = model().eval()
    pools, unpools = _pool_and_unpool_calls(m)
    with torch.no_grad():
        m(torch.randn(1, 3, 32, 32))
    assert len(pools) == len(unpools) == 3
    for (x, idx, out), (_, pool_idx) in zip(unpools, reversed(pools)):
        assert idx is pool_idx  # the decoder level gets its own encoder level's indices
        # zero everywhere but at the argmax positions, which hold the unpooled values
        expected = torch.zeros_like(out).flatten(2).scatter(2, idx.flatten(2), x.flatten(2)).view_as(out)
        assert torch.equal(out, expected)
        nonzero_per_window = (out != 0).float().unfold(2, 2, 2).unfold(3, 2, 2).sum((-1, -2))
        assert nonzero_per_window.max() <= 1


def test_segnet_nearest_differs_from_unpooling_with_the_same_weights():
    torch.manual_seed(0)
    unpool = SegNet(base_width=4, depth=3).eval()
    nearest = SegNet(base_width=4, depth=3, upsampling="nearest").eval()
    nearest.load_state_dict(unpool.state_dict())  # up-sampling has no parameters
    assert not any(isinstance(mod, nn.MaxUnpool2d) for mod in nearest.modules())
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert not torch.allclose(unpool(x), nearest(x))
    with pytest.raises(TypeError):
        build_model("segnet_nearest", upsampling="unpool")


def test_segnet_is_vgg16_mirrored():
    with torch.device("meta"):
        m = SegNet()
    convs = [c for c in m.modules() if isinstance(c, nn.Conv2d)]
    assert len(convs) == 26  # 13 VGG16 encoder convolutions, 12 decoder ones + the 3x3 classifier
    assert [c.out_channels for c in convs[:13]] == [64] * 2 + [128] * 2 + [256] * 3 + [512] * 6
    assert [c.out_channels for c in convs[13:]] == [512] * 5 + [256, 256, 256, 128, 128, 64, 64, 1]
    assert m.head.kernel_size == (3, 3) and m.head.bias is not None
    assert all(c.kernel_size == (3, 3) and c.padding == (1, 1) for c in convs)


def test_unet_same_nearest_option():
    m = UNetSame(base_width=4, depth=2, upsampling="nearest")
    assert m(torch.zeros(1, 3, 16, 16)).shape == (1, 1, 16, 16)
    with pytest.raises(ValueError, match="bilinear"):
        UNetSame(upsampling="bicubic")


def test_dilated_resampling_layers_double_and_halve_exactly_on_one_parity():
    torch.manual_seed(0)
    down, up = ConvDown(2, dilation=2).eval(), TransposedUp(2, 1, dilation=2)
    conv, tconv = down.conv[0], up.up
    assert (conv.kernel_size, conv.stride, conv.dilation, conv.padding) == ((3, 3), (2, 2), (2, 2), (2, 2))
    assert (tconv.kernel_size, tconv.stride, tconv.dilation, tconv.padding, tconv.output_padding) == \
        ((3, 3), (2, 2), (2, 2), (2, 2), (1, 1))
    for h, w in [(2, 2), (8, 6), (16, 32)]:
        x = torch.randn(1, 2, h, w)
        with torch.no_grad():
            y, _ = down(x)
            assert y.shape == (1, 2, h // 2, w // 2)
            assert up(y).shape == (1, 1, h, w)
    # down reads only even (row, column) pixels; up writes only even (row, column) pixels (the rest is the bias)
    x = torch.randn(1, 2, 8, 8)
    x2 = x.clone()
    x2[..., 1::2, :] += 1.0
    x2[..., :, 1::2] += 1.0
    with torch.no_grad():
        assert torch.equal(down(x)[0], down(x2)[0])
        out = up(torch.randn(1, 2, 4, 4))
    odd = torch.ones(8, 8, dtype=torch.bool)
    odd[::2, ::2] = False
    assert torch.allclose(out[0, 0][odd], tconv.bias.expand(int(odd.sum())))


def test_kaiming_initialisation_and_batchnorm():
    torch.manual_seed(0)
    m = SegNet(base_width=16)
    for mod in m.modules():
        if isinstance(mod, nn.BatchNorm2d):
            assert torch.equal(mod.weight, torch.ones_like(mod.weight))
            assert torch.equal(mod.bias, torch.zeros_like(mod.bias))
        elif isinstance(mod, nn.Conv2d):
            if mod.bias is not None:
                assert mod is m.head and torch.equal(mod.bias, torch.zeros_like(mod.bias))
            w = mod.weight.detach()
            if w.numel() >= 100_000:
                expected = math.sqrt(2.0 / (w[0].numel()))
                assert abs(w.std().item() - expected) / expected < 0.03
    assert any(isinstance(x, nn.ConvTranspose2d) and x.bias is not None and not x.bias.any()
               for x in UNetDilated(base_width=2, depth=1).modules())
