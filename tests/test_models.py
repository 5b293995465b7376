import math

import pytest
import torch
from torch import nn

from unet_repro.models import Block, Decoder, Encoder, UNet


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
    valid_inputs = [n for n in range(1, 400) if m._output_size_or_none(n)]
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


def test_paper_initialisation_std():
    torch.manual_seed(0)
    m = UNet()
    for conv in conv_layers(m):
        n = conv.kernel_size[0] * conv.kernel_size[1] * conv.in_channels
        expected = math.sqrt(2.0 / n)
        w = conv.weight.detach()
        if w.numel() >= 10_000:  # enough samples for a 3% tolerance
            assert abs(w.std().item() - expected) / expected < 0.03, conv
            assert abs(w.mean().item()) < 0.03 * expected
        assert torch.all(conv.bias == 0)


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
