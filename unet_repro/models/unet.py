"""The U-Net of Ronneberger, Fischer and Brox (2015), built from small parts.

Paper architecture (Fig. 1): a contracting path of `Block`s (two unpadded 3x3 convolutions + ReLU) separated by
2x2 max-pooling, dropout at the end of the contracting path, and an expanding path where each level up-samples
with a 2x2 up-convolution that halves the channels, concatenates the centre crop of the matching encoder map and
applies another `Block`. A 1x1 convolution maps to the output channels. With the default widths
(64, 128, 256, 512, 1024) and one output channel it has 31,030,593 parameters and 23 convolution layers, and maps
a 1x1x572x572 input to 1x1x388x388.

Shapes: input (B, C_in, H, W) -> logits (B, C_out, H', W') with H' = `UNet.output_size(H)` (H' = H for
``padding="same"``).
"""
from __future__ import annotations

import math
from typing import Literal, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..geometry import Geometry, output_side

Padding = Literal["valid", "same"]


class Block(nn.Module):
    """Two 3x3 convolutions, each followed by ReLU: (B, C_in, H, W) -> (B, C_out, H-4, W-4) ('valid')."""

    def __init__(self, in_channels: int, out_channels: int, padding: Padding = "valid") -> None:
        super().__init__()
        pad = 1 if padding == "same" else 0
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=pad)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=pad)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.conv2(F.relu(self.conv1(x))))


class Encoder(nn.Module):
    """The contracting path: a `Block` per width, 2x2 max-pooling between them.

    Returns the bottleneck map and, for the skip connections, the map of each level before pooling (finest first).
    """

    def __init__(self, in_channels: int, widths: Sequence[int], padding: Padding = "valid",
                 dropout: float = 0.5) -> None:
        super().__init__()
        channels = [in_channels, *widths]
        self.blocks = nn.ModuleList(Block(c_in, c_out, padding) for c_in, c_out in zip(channels, channels[1:]))
        self.pool = nn.MaxPool2d(2)
        # The paper: "Drop-out layers at the end of the contracting path perform further implicit data augmentation".
        self.dropout = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        skips: list[torch.Tensor] = []
        last = len(self.blocks) - 1
        for i, block in enumerate(self.blocks):  # (not self.blocks[:-1]: TorchScript cannot call a sliced ModuleList)
            x = block(x)
            if i < last:
                skips.append(x)
                x = self.pool(x)
        return self.dropout(x), skips


def center_crop(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """The centre (height, width) window of a (B, C, H, W) map; the crop of the paper's skip connections."""
    top = (x.shape[-2] - height) // 2
    left = (x.shape[-1] - width) // 2
    return x[..., top:top + height, left:left + width]


class UpBlock(nn.Module):
    """One level of the expanding path: 2x2 up-convolution halving the channels, crop-and-concatenate the skip, Block."""

    def __init__(self, in_channels: int, out_channels: int, padding: Padding = "valid") -> None:
        super().__init__()
        self.up = nn.ConvTranspose2d(in_channels, out_channels, kernel_size=2, stride=2)
        self.block = Block(2 * out_channels, out_channels, padding)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = self.up(x)
        skip = center_crop(skip, x.shape[-2], x.shape[-1])
        return self.block(torch.cat([skip, x], dim=1))


class Decoder(nn.Module):
    """The expanding path: one `UpBlock` per encoder level, coarsest first."""

    def __init__(self, widths: Sequence[int], padding: Padding = "valid") -> None:
        super().__init__()
        rev = list(widths)[::-1]
        self.levels = nn.ModuleList(UpBlock(c_in, c_out, padding) for c_in, c_out in zip(rev, rev[1:]))

    def forward(self, x: torch.Tensor, skips: list[torch.Tensor]) -> torch.Tensor:
        # (Indexing, not zip(self.levels, reversed(skips)): TorchScript zips a ModuleList only with another.)
        for i, level in enumerate(self.levels):
            x = level(x, skips[-1 - i])
        return x


class SizeChecked:
    """The input-size check every network here runs first, for a class that defines ``_output_size_or_none(n)``
    (the output side for input side `n`, None if invalid) and ``output_size(n)`` (the same, but a ValueError naming
    the nearest valid sizes). Written so that `torch.jit.script` compiles it: TorchScript leaves out the branch after
    ``torch.jit.is_scripting()``, where ``output_size`` builds its message with Python it cannot compile."""

    def check_input(self, x: torch.Tensor) -> None:
        """ValueError naming the nearest valid sizes unless both spatial sides of `x` are valid."""
        for n in [x.shape[-2], x.shape[-1]]:
            if self._output_size_or_none(n) is None:
                if torch.jit.is_scripting():
                    below, above = self.nearest_valid_sizes(n)
                    if below == 0:
                        raise ValueError(f"input size {n} is too small for this network; the smallest valid size "
                                         f"is {above}")
                    raise ValueError(f"input size {n} is not valid for this network; nearest valid sizes are "
                                     f"{below} and {above}")
                self.output_size(n)

    def nearest_valid_sizes(self, n: int) -> tuple[int, int]:
        """The largest valid input side below `n` (0 if none) and the smallest above it."""
        below = n - 1
        while below > 0 and self._output_size_or_none(below) is None:
            below -= 1
        above = n + 1
        while self._output_size_or_none(above) is None:
            above += 1
        return below, above


class UNet(SizeChecked, nn.Module):
    """The paper's U-Net. ``padding="same"`` gives the padded variant (output size = input size).

    Args:
        in_channels: image channels (1 for the EM data).
        out_channels: logit channels (1 for binary segmentation with a sigmoid).
        widths: channels of each encoder level, the last one being the bottleneck.
        padding: "valid" (the paper: unpadded convolutions) or "same".
        dropout: channel dropout probability at the end of the contracting path; 0 disables it.
    """

    def __init__(self, in_channels: int = 1, out_channels: int = 1,
                 widths: Sequence[int] = (64, 128, 256, 512, 1024), padding: Padding = "valid",
                 dropout: float = 0.5) -> None:
        super().__init__()
        if padding not in ("valid", "same"):
            raise ValueError(f"padding must be 'valid' or 'same', got {padding!r}")
        if len(widths) < 2:
            raise ValueError(f"widths needs at least two levels, got {tuple(widths)}")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.widths, self.padding, self.dropout_p = tuple(int(w) for w in widths), padding, float(dropout)
        self.encoder = Encoder(in_channels, self.widths, padding, dropout)
        self.decoder = Decoder(self.widths, padding)
        self.head = nn.Conv2d(self.widths[0], out_channels, kernel_size=1)
        self.shrink = 4 if padding == "valid" else 0  # two 3x3 convolutions per Block, each losing 2 px unpadded
        self.geometry = Geometry(self.depth, self.shrink, f"U-Net ({padding} padding, depth {self.depth})")
        init_paper_(self)

    @property
    def depth(self) -> int:
        """Number of 2x2 poolings."""
        return len(self.widths) - 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        x, skips = self.encoder(x)
        return self.head(self.decoder(x, skips))

    # -- sizes: the arithmetic lives in unet_repro.geometry ------------------------------------------------------
    def _output_size_or_none(self, n: int) -> Optional[int]:
        return output_side(n, self.depth, self.shrink)

    def output_size(self, n: int) -> int:
        """Output side length for an input side length `n`; ValueError naming the nearest valid sizes if a 2x2
        pooling would see an odd (or empty) map."""
        return self.geometry.output_size(n)

    def input_size(self, n: int) -> int:
        """The input side length whose output side length is exactly `n` (inverse of `output_size`)."""
        return self.geometry.input_size(n)


def fan_in(layer: nn.Conv2d | nn.ConvTranspose2d) -> int:
    """N of the paper's init: how many incoming nodes one output neuron of `layer` has.

    A convolution sees ``k_h * k_w`` taps of each of its ``C_in / groups`` input channels. A transposed convolution
    scatters each input pixel over a ``k_h x k_w`` patch with stride ``s``, so one output pixel receives only
    ``ceil(k_h / s_h) * ceil(k_w / s_w)`` taps per input channel: the paper's 2x2, stride-2 up-convolution has
    N = C_in, not 4 * C_in.
    """
    kh, kw = layer.kernel_size
    c_in = layer.in_channels // layer.groups
    if isinstance(layer, nn.ConvTranspose2d):
        sh, sw = layer.stride
        return c_in * math.ceil(kh / sh) * math.ceil(kw / sw)
    return c_in * kh * kw


def init_paper_(model: nn.Module) -> None:
    """The paper's initialisation: every convolution's weights ~ N(0, sqrt(2/N)), N = `fan_in` (the incoming nodes
    of one neuron: k*k*C_in for a convolution, C_in for the 2x2 stride-2 up-convolution); biases zero. Applied once,
    at construction."""
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, mean=0.0, std=math.sqrt(2.0 / fan_in(m)))
            if m.bias is not None:
                nn.init.zeros_(m.bias)
