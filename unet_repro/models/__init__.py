"""Segmentation networks. `UNet` is the paper's; `build_model` makes any registered network by name."""
from __future__ import annotations

from typing import Any, Callable

from torch import nn

from .unet import Block, Decoder, Encoder, UNet, UpBlock, center_crop, init_paper_

MODELS: dict[str, Callable[..., nn.Module]] = {
    "unet": UNet,
}


def build_model(name: str, **options: Any) -> nn.Module:
    """Instantiate the network registered under `name` with its keyword options."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(sorted(MODELS))}")
    return MODELS[name](**options)


__all__ = ["MODELS", "Block", "Decoder", "Encoder", "UNet", "UpBlock", "build_model", "center_crop", "init_paper_"]
