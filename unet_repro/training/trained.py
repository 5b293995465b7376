"""A trained network loaded from a checkpoint, predicting as its run decided: the run's input scaling, tile and
precision."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..data.intensity import prepare_image
from ..errors import CheckpointError
from ..geometry import Tile
from ..inference import predict_tiled
from .checkpoint import load_checkpoint, load_weights
from .config import TrainConfig
from .hardware import Precision, decide_precision, resolve_device
from .setup import build_network


@dataclass
class Trained:
    """A network loaded from a checkpoint, in eval mode on `device`, with the configuration it was trained with
    and the precision its evaluation runs in (`unet_repro.training.hardware.decide_precision`)."""

    model: nn.Module
    config: TrainConfig
    checkpoint: dict[str, Any]
    path: Path
    device: torch.device
    precision: Precision

    @property
    def epoch(self) -> int:
        return int(self.checkpoint.get("epoch", -1))

    def predict(self, image: np.ndarray, tile: Tile | int | None = None, tta: bool = False) -> np.ndarray:
        """Class probabilities of a whole image (see `unet_repro.inference.predict_tiled`), scaled by the run's
        intensity rule and in its evaluation precision."""
        return predict_tiled(self.model, prepare_image(image, self.config.normalization), tile=tile,
                             device=self.device, autocast=self.precision.eval_bf16, tta=tta)


def load_trained(path: Path | str, device: str = "auto", task: str | None = None) -> Trained:
    """The network of a checkpoint (``best.pt`` or ``last.pt``) on `device` (``auto``: the GPU if there is one), in
    eval mode, with its config and the checkpoint itself; `CheckpointError` naming the file if it is not a unet_repro
    checkpoint (or, with `task`, not one of that task's runs)."""
    ckpt = load_checkpoint(path, task=task)
    try:
        cfg = TrainConfig.from_dict(ckpt["config"])
        model = build_network(cfg)
    except (TypeError, ValueError, KeyError) as e:
        detail = f"no network is named {e.args[0]!r}" if isinstance(e, KeyError) else str(e)
        raise CheckpointError(f"{path}: its config does not describe a network this version can build ({detail})") \
            from None
    load_weights(model, ckpt["model"], path)
    where = resolve_device(device)
    return Trained(model.to(where).eval(), cfg, ckpt, Path(path), where, decide_precision(cfg.bf16, where))


def load_model(path: Path | str, device: str = "auto") -> nn.Module:
    """The trained network of a checkpoint, ready for `unet_repro.predict_tiled` (eval mode, on `device`)."""
    return load_trained(path, device).model


__all__ = ["Trained", "load_model", "load_trained"]
