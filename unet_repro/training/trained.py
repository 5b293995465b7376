"""Loading a trained network from a checkpoint, for prediction."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from ..errors import CheckpointError
from .checkpoint import load_checkpoint, load_weights
from .config import TrainConfig
from .hardware import resolve_device
from .loop import build_model


@dataclass
class Trained:
    """A network loaded from a checkpoint, in eval mode, with the configuration it was trained with."""

    model: nn.Module
    config: TrainConfig
    checkpoint: dict[str, Any]
    path: Path


def load_trained(path: Path | str, device: str = "auto", task: str | None = None) -> Trained:
    """The network of a checkpoint (``best.pt`` or ``last.pt``) on `device` (``auto``: the GPU if there is one), in
    eval mode, with its config and the checkpoint itself; `CheckpointError` naming the file if it is not a unet_repro
    checkpoint (or, with `task`, not one of that task's runs)."""
    ckpt = load_checkpoint(path, task=task)
    try:
        cfg = TrainConfig.from_dict(ckpt["config"])
        model = build_model(cfg)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: its config does not describe a network this version can build ({e})") from None
    load_weights(model, ckpt, path)
    return Trained(model.to(resolve_device(device)).eval(), cfg, ckpt, Path(path))


def load_model(path: Path | str, device: str = "auto") -> nn.Module:
    """The trained network of a checkpoint, ready for `unet_repro.predict_tiled` (eval mode, on `device`)."""
    return load_trained(path, device).model
