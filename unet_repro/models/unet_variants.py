"""Size-preserving U-Net baselines that differ only in how they down- and up-sample, and the parts they share.

All four follow Ronneberger et al. (2015), "U-Net: Convolutional Networks for Biomedical Image Segmentation", with
padded ("same") 3x3 convolutions, each followed by batch normalisation (Ioffe & Szegedy 2015) and ReLU, so no skip
connection needs a crop. Widths are ``base_width * 2**level`` for levels 0..depth (64, 128, 256, 512, 1024 at full
width, uncapped as in the paper). Level by level:

    encoder:  DoubleConv(in, w0) -> [down(w_i) -> DoubleConv(w_i, w_{i+1})] * depth
    decoder:  [up(w_{i+1} -> w_i) -> concat(skip_i, .) -> DoubleConv(2 w_i, w_i)] * depth -> 1x1 conv to out

The classes differ only in ``down`` (channel-preserving) and ``up`` (halves the channels, doubles the size):

=============  =============================================  =================================================
class          down                                           up
=============  =============================================  =================================================
UNetSame       2x2 max-pooling                                bilinear / nearest x2 interpolation, then a 3x3
                                                              conv halving the channels (linear, as the paper's
                                                              up-convolution)
UNetStrided    conv k=2, stride 2 + BN + ReLU                 transposed conv k=2, stride 2 (linear)
UNetUnpool     2x2 max-pooling keeping the argmax indices     3x3 conv halving the channels (at the coarse
                                                              size: the indices have the skip's channels), then
                                                              max-unpooling with that level's indices
UNetDilated    conv k=3, stride 2, dilation 2, padding 2      transposed conv k=3, stride 2, dilation 2,
               + BN + ReLU                                    padding 2, output_padding 1 (linear)
=============  =============================================  =================================================

Dilated sizes: down  H_out = floor((H + 2*2 - 2*(3-1) - 1) / 2) + 1 = H/2 for even H;
               up    H_out = (H-1)*2 - 2*2 + 2*(3-1) + 1 + 1 = 2H.
With stride = dilation = 2 every tap of either layer falls on one parity: the down layer reads only the even
(row, column) pixels of its input (a 2x subsampling followed by a 3x3 conv at the coarse size) and the up layer
writes only the even (row, column) pixels of its output; the other three quarters hold just the bias (a
"bed of nails" up-sampling followed by the decoder's DoubleConv), see `tests/test_baselines.py`.

Shapes: (B, C_in, H, W) -> logits (B, C_out, H, W) for H and W divisible by 2**depth (16 at the default depth 4);
``output_size`` raises a ValueError naming the nearest valid sizes otherwise.

Parameters at full width (base_width=64, depth=4, in_channels=3, out_channels=1): UNetSame 34,519,233,
UNetStrided 32,432,193, UNetUnpool 34,519,233, UNetDilated 37,654,593. At base_width=16: 2,160,177, 2,030,097,
2,160,177, 2,356,497.

Initialisation (`init_kaiming_`, shared with `SegNet`): Kaiming-normal weights with fan_in and the ReLU gain
(``nn.init.kaiming_normal_(w, mode="fan_in", nonlinearity="relu")``; for a ConvTranspose2d PyTorch counts fan_in as
out_channels * k * k), zero biases, BatchNorm weight 1 and bias 0. Convolutions followed by BatchNorm have no bias.
"""
from __future__ import annotations

from typing import Callable, Literal, Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..geometry import Geometry, output_side
from .unet import SizeChecked

Interpolation = Literal["bilinear", "nearest"]


# -- shared parts ------------------------------------------------------------------------------------------------

class ConvBNReLU(nn.Sequential):
    """Convolution (no bias) + BatchNorm + ReLU; 'same' padding by default: (B, C_in, H, W) -> (B, C_out, H, W)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1,
                 padding: int = 1, dilation: int = 1) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding, dilation=dilation,
                      bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


class DoubleConv(nn.Sequential):
    """Two padded 3x3 `ConvBNReLU`s: (B, C_in, H, W) -> (B, C_out, H, W). The padded, batch-normalised `Block`."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(ConvBNReLU(in_channels, out_channels), ConvBNReLU(out_channels, out_channels))


def init_kaiming_(model: nn.Module) -> None:
    """Kaiming-normal (fan_in, ReLU gain) conv weights, zero conv biases, BatchNorm weight 1 / bias 0."""
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def unet_widths(base_width: int, depth: int) -> tuple[int, ...]:
    """U-Net level widths: ``base_width * 2**level`` for level 0..depth, e.g. (64, 128, 256, 512, 1024)."""
    if base_width < 1 or depth < 1:
        raise ValueError(f"base_width and depth must be positive, got base_width={base_width}, depth={depth}")
    return tuple(int(base_width) * 2 ** i for i in range(int(depth) + 1))


class SizePreserving(SizeChecked):
    """Size helpers, as `UNet.output_size`/`input_size`, for a network with ``depth`` 2x down-samplings whose output
    has the input's size: a side is valid iff it is a positive multiple of 2**depth (`unet_repro.geometry`). The class
    sets ``depth`` (an int; not declared here, as TorchScript cannot read a postponed class annotation)."""

    __jit_unused_properties__ = ["geometry"]  # Python only: TorchScript checks sizes with _output_size_or_none

    @property
    def geometry(self) -> Geometry:
        return Geometry(self.depth, 0, f"{type(self).__name__} (depth {self.depth})")

    def _output_size_or_none(self, n: int) -> Optional[int]:
        return output_side(n, self.depth, 0)

    def output_size(self, n: int) -> int:
        """Output side length (= `n`) for an input side length `n`; ValueError naming the nearest valid sizes if a 2x
        down-sampling would see an odd (or empty) map."""
        return self.geometry.output_size(n)

    def input_size(self, n: int) -> int:
        """The input side length whose output side length is exactly `n` (= `n`; same ValueError)."""
        return self.geometry.input_size(n)


class MaxUnpool2d(nn.MaxUnpool2d):
    """`nn.MaxUnpool2d` that `torch.jit.script` compiles: TorchScript types the sizes by the class's annotations (an
    int or a pair) and then fails an internal assert on the pair they hold (pytorch/pytorch#138418); as constants they
    compile. The same layer otherwise."""

    __constants__ = ["kernel_size", "stride", "padding"]


# -- down- and up-sampling layers: down(x) -> (x, indices or None); up(x, indices) -> x --------------------------

class PoolDown(nn.Module):
    """2x2 max-pooling; keeps the argmax indices for `UnpoolUp` when ``return_indices``."""

    def __init__(self, return_indices: bool = False) -> None:
        super().__init__()
        self.pool = nn.MaxPool2d(2, stride=2, return_indices=return_indices)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        out = self.pool(x)
        return out if isinstance(out, tuple) else (out, None)


class ConvDown(nn.Module):
    """Channel-preserving strided `ConvBNReLU`: k=2, stride 2 (``dilation=1``), or k=3, stride 2, dilation 2,
    padding 2 (``dilation=2``). Halves even sizes exactly."""

    def __init__(self, channels: int, dilation: int = 1) -> None:
        super().__init__()
        if dilation not in (1, 2):
            raise ValueError(f"dilation must be 1 or 2, got {dilation}")
        kernel, padding = (2, 0) if dilation == 1 else (3, 2)
        self.conv = ConvBNReLU(channels, channels, kernel, stride=2, padding=padding, dilation=dilation)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        return self.conv(x), None


class InterpolateUp(nn.Module):
    """x2 bilinear or nearest interpolation, then a 3x3 convolution (with bias, no BN/ReLU) halving the channels."""

    def __init__(self, in_channels: int, out_channels: int, mode: Interpolation = "bilinear") -> None:
        super().__init__()
        if mode not in ("bilinear", "nearest"):
            raise ValueError(f"upsampling must be 'bilinear' or 'nearest', got {mode!r}")
        self.mode = mode
        self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=1)

    def forward(self, x: torch.Tensor, indices: torch.Tensor | None = None) -> torch.Tensor:
        align = False if self.mode == "bilinear" else None
        # (scale_factor 2.0, not 2: TorchScript takes only a float.)
        return self.conv(F.interpolate(x, scale_factor=2.0, mode=self.mode, align_corners=align))


class TransposedUp(nn.Module):
    """Transposed convolution (with bias, no BN/ReLU) halving the channels and doubling the size: k=2, stride 2
    (``dilation=1``), or k=3, stride 2, dilation 2, padding 2, output_padding 1 (``dilation=2``)."""

    def __init__(self, in_channels: int, out_channels: int, dilation: int = 1) -> None:
        super().__init__()
        if dilation not in (1, 2):
            raise ValueError(f"dilation must be 1 or 2, got {dilation}")
        kernel, padding, output_padding = (2, 0, 0) if dilation == 1 else (3, 2, 1)
        self.up = nn.ConvTranspose2d(in_channels, out_channels, kernel, stride=2, padding=padding,
                                     output_padding=output_padding, dilation=dilation)

    def forward(self, x: torch.Tensor, indices: torch.Tensor | None = None) -> torch.Tensor:
        return self.up(x)


class UnpoolUp(nn.Module):
    """3x3 convolution (with bias, no BN/ReLU) halving the channels, then 2x2 max-unpooling with the encoder's
    indices: the output is zero except at the positions the matching max-pooling took its maxima from."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.unpool = MaxUnpool2d(2, stride=2)

    def forward(self, x: torch.Tensor, indices: torch.Tensor | None = None) -> torch.Tensor:
        if indices is None:
            raise ValueError("UnpoolUp needs the pooling indices of the matching encoder level")
        return self.unpool(self.conv(x), indices)


# -- the family ----------------------------------------------------------------------------------------------------

class PaddedUNet(SizePreserving, nn.Module):
    """The shared skeleton of the four variants (see the module docstring); subclasses choose ``down`` and ``up``.

    Args:
        in_channels, out_channels: image channels and logit channels.
        base_width: channels of the first level; level i has ``base_width * 2**i``.
        depth: number of 2x down-samplings (4 in the paper).
        down: ``down(channels)`` -> a module mapping x to (x at half size, indices or None).
        up: ``up(in_channels, out_channels)`` -> a module mapping (x, indices) to x at double size.
    """

    def __init__(self, in_channels: int, out_channels: int, base_width: int, depth: int,
                 down: Callable[[int], nn.Module], up: Callable[[int, int], nn.Module]) -> None:
        super().__init__()
        widths = unet_widths(base_width, depth)
        self.in_channels, self.out_channels, self.widths, self.depth = in_channels, out_channels, widths, depth
        self.stem = DoubleConv(in_channels, widths[0])
        self.downs = nn.ModuleList(down(w) for w in widths[:-1])
        self.down_blocks = nn.ModuleList(DoubleConv(a, b) for a, b in zip(widths, widths[1:]))
        rev = widths[::-1]
        self.ups = nn.ModuleList(up(a, b) for a, b in zip(rev, rev[1:]))
        self.up_blocks = nn.ModuleList(DoubleConv(2 * b, b) for b in rev[1:])
        self.head = nn.Conv2d(widths[0], out_channels, kernel_size=1)
        init_kaiming_(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        x = self.stem(x)
        skips: list[torch.Tensor] = []
        indices: list[torch.Tensor | None] = []
        for down, block in zip(self.downs, self.down_blocks):
            skips.append(x)
            x, idx = down(x)
            indices.append(idx)
            x = block(x)
        # (Indexing, not zip(..., reversed(skips)): TorchScript zips ModuleLists only with each other.)
        for i, (up, block) in enumerate(zip(self.ups, self.up_blocks)):
            x = block(torch.cat([skips[-1 - i], up(x, indices[-1 - i])], dim=1))
        return self.head(x)


class UNetSame(PaddedUNet):
    """U-Net with padded convolutions + BN: 2x2 max-pooling down; ``upsampling`` ("bilinear" or "nearest") x2
    interpolation followed by a 3x3 conv halving the channels up. 34,519,233 parameters at full width (3 -> 1)."""

    def __init__(self, in_channels: int = 3, out_channels: int = 1, base_width: int = 64, depth: int = 4,
                 upsampling: Interpolation = "bilinear") -> None:
        super().__init__(in_channels, out_channels, base_width, depth, down=lambda c: PoolDown(),
                         up=lambda a, b: InterpolateUp(a, b, upsampling))
        self.upsampling = upsampling


class UNetStrided(PaddedUNet):
    """U-Net with padded convolutions + BN: 2x2 stride-2 convolutions (+ BN + ReLU) down, 2x2 stride-2 transposed
    convolutions up. 32,432,193 parameters at full width (3 -> 1)."""

    def __init__(self, in_channels: int = 3, out_channels: int = 1, base_width: int = 64, depth: int = 4) -> None:
        super().__init__(in_channels, out_channels, base_width, depth, down=lambda c: ConvDown(c),
                         up=lambda a, b: TransposedUp(a, b))


class UNetUnpool(PaddedUNet):
    """U-Net with padded convolutions + BN: 2x2 max-pooling with indices down; a 3x3 conv halving the channels then
    max-unpooling with the matching encoder level's indices up. 34,519,233 parameters at full width (3 -> 1)."""

    def __init__(self, in_channels: int = 3, out_channels: int = 1, base_width: int = 64, depth: int = 4) -> None:
        super().__init__(in_channels, out_channels, base_width, depth, down=lambda c: PoolDown(return_indices=True),
                         up=lambda a, b: UnpoolUp(a, b))


class UNetDilated(PaddedUNet):
    """`UNetStrided` with dilation 2 in its re-sampling layers: down = conv k=3, stride 2, dilation 2, padding 2
    (+ BN + ReLU); up = transposed conv k=3, stride 2, dilation 2, padding 2, output_padding 1. Both touch only
    even (row, column) positions (see the module docstring). 37,654,593 parameters at full width (3 -> 1)."""

    def __init__(self, in_channels: int = 3, out_channels: int = 1, base_width: int = 64, depth: int = 4) -> None:
        super().__init__(in_channels, out_channels, base_width, depth, down=lambda c: ConvDown(c, dilation=2),
                         up=lambda a, b: TransposedUp(a, b, dilation=2))


__all__ = ["ConvBNReLU", "ConvDown", "DoubleConv", "InterpolateUp", "MaxUnpool2d", "PaddedUNet", "PoolDown",
           "SizePreserving", "TransposedUp", "UNetDilated", "UNetSame", "UNetStrided", "UNetUnpool", "UnpoolUp",
           "init_kaiming_", "unet_widths"]
