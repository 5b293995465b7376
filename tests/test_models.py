import copy
import math

import pytest
import torch
from torch import nn

from unet_repro.models import Block, Decoder, Encoder, UNet, fan_in


def count_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def conv_layers(m: nn.Module) -> list[nn.Module]:
    return [x for x in m.modules() if isinstance(x, (nn.Conv2d, nn.ConvTranspose2d))]


def test_paper_unet_parameter_count_and_layers():
    m = UNet()
    assert count_params(m) == 31_030_593
    assert len(conv_layers(m)) == 23
    assert all(c.padding == (0, 0) for c in conv_layers(m))
    assert isinstance(m.encoder, Encoder) and isinstance(m.decoder, Decoder)
    assert sum(isinstance(x, Block) for x in m.modules()) == 9


def test_paper_unet_572_gives_388():
    m = UNet().eval()
    with torch.no_grad():
        y = m(torch.zeros(1, 1, 572, 572))
    assert y.shape == (1, 1, 388, 388)


def test_block_is_two_valid_convolutions():
    y = Block(3, 5)(torch.zeros(2, 3, 20, 22))
    assert y.shape == (2, 5, 16, 18)


@pytest.mark.parametrize("widths", [(4, 8, 16), (4, 8, 16, 32, 64)])
@pytest.mark.parametrize("padding", ["valid", "same"])
def test_size_helpers_agree_with_forward(widths, padding):
    m = UNet(widths=widths, padding=padding, dropout=0).eval()
    valid_inputs = [n for n in range(1, 400) if m.geometry.output_or_none(n)]
    assert len(valid_inputs) >= 3
    for n in valid_inputs[:3]:
        with torch.no_grad():
            y = m(torch.zeros(1, 1, n, n))
        assert y.shape[-1] == m.output_size(n)
        assert m.input_size(y.shape[-1]) == n


def test_invalid_size_names_nearest_valid_sizes():
    m = UNet()
    with pytest.raises(ValueError, match="556 and 572"):
        m.output_size(570)
    with pytest.raises(ValueError, match="smallest valid size is 188"):
        m.output_size(100)
    with pytest.raises(ValueError, match="388 and 404"):
        m.input_size(390)
    with pytest.raises(ValueError, match="496 and 512"):
        UNet(padding="same").output_size(500)
    with pytest.raises(ValueError):
        UNet(widths=(4, 8, 16), dropout=0)(torch.zeros(1, 1, 570, 570))


def test_same_padding_preserves_size():
    m = UNet(widths=(4, 8, 16, 32), padding="same").eval()
    with torch.no_grad():
        assert m(torch.zeros(1, 1, 64, 48)).shape == (1, 1, 64, 48)


def measured_fan_in(layer: nn.Module) -> int:
    """How many input values one interior output value of `layer` depends on, found with autograd (not from a
    formula): the nonzero entries of d output[0, 0, y, x] / d input for all-ones weights."""
    layer = copy.deepcopy(layer).double()
    with torch.no_grad():
        layer.weight.fill_(1.0)
    x = torch.zeros(1, layer.in_channels, 9, 9, dtype=torch.float64, requires_grad=True)
    y = layer(x)
    y[0, 0, y.shape[-2] // 2, y.shape[-1] // 2].backward()
    return int(torch.count_nonzero(x.grad))


def test_paper_initialisation_std_uses_the_true_fan_in():
    # The paper: std sqrt(2/N), N = incoming nodes of one neuron. For the 2x2 stride-2 up-convolution each output
    # pixel receives one tap per input channel (N = C_in), for a 3x3 convolution 9 per channel.
    torch.manual_seed(0)
    m = UNet()
    ups = 0
    for conv in conv_layers(m):
        n = measured_fan_in(conv)
        assert n == fan_in(conv), conv
        if isinstance(conv, nn.ConvTranspose2d):
            ups += 1
            assert n == conv.in_channels
        expected = math.sqrt(2.0 / n)
        w = conv.weight.detach()
        if w.numel() >= 10_000:  # enough samples for a 3% tolerance
            assert abs(w.std().item() - expected) / expected < 0.03, conv
            assert abs(w.mean().item()) < 0.03 * expected
        assert torch.all(conv.bias == 0)
    assert ups == 4


def test_paper_initialisation_up_convolution_gain():
    # He et al.'s argument behind sqrt(2/N): a layer's output has mean square 2x that of its (post-ReLU) input, so
    # that the next ReLU, halving it, keeps the scale: output/input RMS = sqrt(2). With N = 4 C_in (the old bug) the
    # up-convolutions gave half of that (~0.71).
    torch.manual_seed(0)
    up = UNet(widths=(64, 128)).decoder.levels[0].up
    x = torch.relu(torch.randn(4, 128, 32, 32))
    with torch.no_grad():
        ratio = (up(x).pow(2).mean() / x.pow(2).mean()).sqrt().item()
    assert abs(ratio - math.sqrt(2)) < 0.1, ratio


def test_dropout_sits_at_the_end_of_the_contracting_path():
    m = UNet(widths=(4, 8, 16))
    assert isinstance(m.encoder.dropout, nn.Dropout2d) and m.encoder.dropout.p == 0.5
    assert isinstance(UNet(widths=(4, 8, 16), dropout=0).encoder.dropout, nn.Identity)
    x = torch.rand(1, 1, 92, 92)
    m.eval()
    with torch.no_grad():
        assert torch.equal(m(x), m(x))  # no dropout at eval
    m.train()
    torch.manual_seed(1)
    a = m(x)
    torch.manual_seed(2)
    assert not torch.equal(a, m(x))  # dropout active in training
