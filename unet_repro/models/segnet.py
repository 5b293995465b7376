"""SegNet: Badrinarayanan, Kendall and Cipolla (2017), "SegNet: A Deep Convolutional Encoder-Decoder Architecture for
Image Segmentation", IEEE TPAMI 39(12).

Encoder: the 13 convolutional layers of VGG16, in stages of 2, 2, 3, 3, 3 padded 3x3 `ConvBNReLU`s with widths
64, 128, 256, 512, 512 (``base_width * min(2**stage, 8)``), each stage followed by 2x2 max-pooling that keeps its
argmax indices. Decoder: the mirror image; each stage max-unpools with the indices of the matching encoder pooling
(a sparse map, zero except at the positions the maxima came from) and then applies as many `ConvBNReLU`s as the
encoder stage has, the last one of a stage mapping to the width of the next finer stage. As in the paper's network
the last decoder convolution is the 3x3 classifier (with bias, no BN/ReLU) to ``out_channels`` logits. No skip
connections carry feature maps: only the indices cross from encoder to decoder.

``upsampling="nearest"`` replaces the unpooling by parameter-free nearest-neighbour x2 up-sampling (no indices), the
same weights otherwise. Deeper ``depth`` adds 3-conv stages of the capped width; shallower drops the deepest.

Shapes: (B, C_in, H, W) -> logits (B, C_out, H, W) for H and W divisible by 2**depth (32 at depth 5); `output_size`
raises a ValueError naming the nearest valid sizes otherwise.

Parameters at full width (base_width=64, depth=5, in_channels=3, out_channels=1): 29,435,649 (either upsampling);
1,843,137 at base_width=16. Initialisation: `init_kaiming_` (Kaiming-normal fan_in/ReLU weights, zero biases,
BatchNorm weight 1 and bias 0); convolutions followed by BatchNorm have no bias.
"""
from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from .unet_variants import ConvBNReLU, MaxUnpool2d, SizePreserving, init_kaiming_

Upsampling = Literal["unpool", "nearest"]

VGG16_CONVS = (2, 2, 3, 3, 3)  # 3x3 convolutions per VGG16 stage


def segnet_stages(base_width: int, depth: int) -> list[tuple[int, int]]:
    """(width, number of convolutions) of each encoder stage: VGG16's (64, 2), (128, 2), (256, 3), (512, 3),
    (512, 3) at base_width 64; stages beyond the fifth repeat (8 * base_width, 3)."""
    if base_width < 1 or depth < 1:
        raise ValueError(f"base_width and depth must be positive, got base_width={base_width}, depth={depth}")
    return [(int(base_width) * min(2 ** i, 8), VGG16_CONVS[i] if i < len(VGG16_CONVS) else 3)
            for i in range(int(depth))]


class SegNet(SizePreserving, nn.Module):
    """SegNet (Badrinarayanan et al. 2017), see the module docstring. 29,435,649 parameters at full width (3 -> 1).

    Args:
        in_channels, out_channels: image channels and logit channels.
        base_width: channels of the first stage (64 in the paper); deeper stages double it, capped at 8x.
        depth: number of stages, i.e. of 2x2 poolings (5 in the paper).
        upsampling: "unpool" (the paper: max-unpooling with the encoder's pooling indices) or "nearest".
    """

    def __init__(self, in_channels: int = 3, out_channels: int = 1, base_width: int = 64, depth: int = 5,
                 upsampling: Upsampling = "unpool") -> None:
        super().__init__()
        if upsampling not in ("unpool", "nearest"):
            raise ValueError(f"upsampling must be 'unpool' or 'nearest', got {upsampling!r}")
        stages = segnet_stages(base_width, depth)
        self.in_channels, self.out_channels, self.depth, self.upsampling = in_channels, out_channels, depth, upsampling
        self.widths = tuple(w for w, _ in stages)

        encoder = []
        c_in = in_channels
        for width, n in stages:
            encoder.append(nn.Sequential(*(ConvBNReLU(c_in if k == 0 else width, width) for k in range(n))))
            c_in = width
        self.encoder = nn.ModuleList(encoder)
        self.pool = nn.MaxPool2d(2, stride=2, return_indices=upsampling == "unpool")
        self.up = MaxUnpool2d(2, stride=2) if upsampling == "unpool" else nn.Upsample(scale_factor=2, mode="nearest")
        # Built for encoder stage i (its mirror), stored coarsest first (the order they run in). A stage's last conv
        # maps to the next finer stage's width; in stage 0 that last conv is the classifier `head`.
        decoder = []
        for i, (width, n) in enumerate(stages):
            if i == 0:
                layers = [ConvBNReLU(width, width) for _ in range(n - 1)]
            else:
                finer = stages[i - 1][0]
                layers = [ConvBNReLU(width, width if k < n - 1 else finer) for k in range(n)]
            decoder.append(nn.Sequential(*layers))
        self.decoder = nn.ModuleList(decoder[::-1])
        self.head = nn.Conv2d(stages[0][0], out_channels, kernel_size=3, padding=1)
        init_kaiming_(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        # `self.pool.return_indices` (upsampling == "unpool") is a constant of the layer, so TorchScript compiles
        # only the branch that fits the layers this network has.
        indices: list[torch.Tensor] = []
        for stage in self.encoder:
            x = stage(x)
            if self.pool.return_indices:
                x, idx = self.pool(x)
                indices.append(idx)
            else:
                x = self.pool(x)
        for i, stage in enumerate(self.decoder):
            if self.pool.return_indices:
                x = self.up(x, indices[-1 - i])
            else:
                x = self.up(x)
            x = stage(x)
        return self.head(x)


__all__ = ["SegNet", "segnet_stages"]
