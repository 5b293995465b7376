"""Segmentation networks. `UNet` is the paper's; `build_model` makes any registered network by name.

Every model takes ``in_channels``, ``out_channels`` and ``base_width`` (channels of the first level; deeper levels
double, capped at 8x for SegNet) and ``depth`` (number of 2x down-samplings). Parameter counts for 3 input channels
and 1 output channel (the paper's U-Net too: with its default single input channel it has 31,030,593):

=================  =========================================================  ============  =============
name               model (paper)                                              base 64       base 16
=================  =========================================================  ============  =============
unet               `UNet`, Ronneberger et al. 2015 (valid convs, no BN)       31,031,745    1,941,105
unet_same          `UNetSame`, U-Net, padded convs + BN, bilinear up          34,519,233    2,160,177
unet_strided       `UNetStrided`, U-Net, strided / transposed convs           32,432,193    2,030,097
unet_unpool        `UNetUnpool`, U-Net, max-unpooling with indices            34,519,233    2,160,177
unet_dilated       `UNetDilated`, U-Net, dilated strided / transposed convs   37,654,593    2,356,497
segnet             `SegNet`, Badrinarayanan et al. 2017 (max-unpooling)       29,435,649    1,843,137
segnet_nearest     `SegNet`, nearest-neighbour up-sampling                    29,435,649    1,843,137
=================  =========================================================  ============  =============

Every network compiles with `torch.jit.script` and exports to ONNX (`unet_repro.export`); its forward starts with
`SizeChecked.check_input`, a ValueError naming the nearest valid input sizes.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterator, Mapping

from torch import nn

from ..geometry import Geometry
from .segnet import SegNet
from .unet import Block, Decoder, Encoder, SizeChecked, UNet, UpBlock, center_crop, fan_in, init_paper_
from .unet_variants import UNetDilated, UNetSame, UNetStrided, UNetUnpool, init_kaiming_, unet_widths


def unet(*, base_width: int | None = None, depth: int | None = None, **options: Any) -> UNet:
    """The paper's `UNet`, also from ``base_width`` (default 64) and ``depth`` (default 4), which give
    ``widths = (b, 2b, ..., 2**depth * b)``; give either those or ``widths``. Other options go to `UNet` unchanged."""
    if base_width is not None or depth is not None:
        if "widths" in options:
            raise ValueError("give either widths or base_width/depth for the U-Net, not both")
        options["widths"] = unet_widths(64 if base_width is None else base_width, 4 if depth is None else depth)
    return UNet(**options)


def segnet_nearest(**options: Any) -> SegNet:
    """`SegNet` with nearest-neighbour up-sampling instead of max-unpooling."""
    return SegNet(upsampling="nearest", **options)


@dataclass(frozen=True)
class Network:
    """A registered network: how to build it, which settings of a run it takes, and its geometry.

    ``settings``: the `unet_repro.training.TrainConfig` fields it is built from, besides ``in_channels`` and the
    output channels (``widths``, ``padding`` and ``dropout`` for the paper's U-Net; ``base_width`` for the others).
    ``geometry(**settings)``: its `unet_repro.geometry.Geometry`, known without building the network.
    ``batch_norm``: it normalises over the batch while training, so one tile whose bottleneck is 1 x 1 cannot train.
    """

    build: Callable[..., nn.Module]
    settings: tuple[str, ...]
    geometry: Callable[..., Geometry]
    title: str
    batch_norm: bool = False


def _unet_geometry(widths: tuple[int, ...], padding: str = "valid", **_: Any) -> Geometry:
    depth = len(widths) - 1
    return Geometry(depth, 4 if padding == "valid" else 0, f"U-Net ({padding} padding, depth {depth})")


def _size_preserving(name: str, depth: int) -> Callable[..., Geometry]:
    return lambda **_: Geometry(depth, 0, f"{name} (depth {depth})")


def _baseline(build: Callable[..., nn.Module], name: str, depth: int, title: str) -> Network:
    return Network(build, ("base_width",), _size_preserving(name, depth), title, batch_norm=True)


# One entry per network: a new architecture is one more line here (and its module).
NETWORKS: dict[str, Network] = {
    "unet": Network(unet, ("widths", "padding", "dropout"), _unet_geometry,
                    "the paper's U-Net (valid convolutions, no batch norm)"),
    "unet_same": _baseline(UNetSame, "UNetSame", 4, "U-Net, padded convolutions + BN, bilinear up-sampling"),
    "unet_strided": _baseline(UNetStrided, "UNetStrided", 4, "U-Net, strided / transposed convolutions"),
    "unet_unpool": _baseline(UNetUnpool, "UNetUnpool", 4, "U-Net, max-unpooling with indices"),
    "unet_dilated": _baseline(UNetDilated, "UNetDilated", 4, "U-Net, dilated strided / transposed convolutions"),
    "segnet": _baseline(SegNet, "SegNet", 5, "SegNet (max-unpooling)"),
    "segnet_nearest": _baseline(segnet_nearest, "SegNet", 5, "SegNet, nearest-neighbour up-sampling"),
}
class _Builders(Mapping[str, Callable[..., nn.Module]]):
    """`MODELS`: name -> build function, a live view of `NETWORKS` (networks registered later are in it too)."""

    def __getitem__(self, name: str) -> Callable[..., nn.Module]:
        return NETWORKS[name].build

    def __iter__(self) -> Iterator[str]:
        return iter(NETWORKS)

    def __len__(self) -> int:
        return len(NETWORKS)


MODELS: Mapping[str, Callable[..., nn.Module]] = _Builders()


def build_model(name: str, **options: Any) -> nn.Module:
    """Instantiate the network registered under `name` with its keyword options."""
    if name not in NETWORKS:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(sorted(NETWORKS))}")
    return NETWORKS[name].build(**options)


__all__ = ["MODELS", "NETWORKS", "Block", "Decoder", "Encoder", "Network", "SegNet", "SizeChecked", "UNet", "UNetDilated",
           "UNetSame",
           "UNetStrided", "UNetUnpool", "UpBlock", "build_model", "center_crop", "fan_in", "init_kaiming_",
           "init_paper_", "unet_widths"]
