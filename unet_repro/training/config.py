"""`TrainConfig`: everything that defines a training run, its checks, and which settings a resumed run may change."""
from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any

import torch

from ..errors import ConfigError
from ..losses import LOSSES
from ..models import MODELS, build_model

# Settings that define the network's weights: a checkpoint made with other values cannot be resumed.
MODEL_KEYS = ("model", "in_channels", "widths", "base_width", "padding", "dropout")
# Settings a resumed run may change: they are applied from the epoch it resumes at and recorded as changed.
# Everything else (the data, the tiles, the optimizer's kind and momentum, the seed...) would make the resumed run a
# different run than the one its checkpoint continues, so changing it is refused.
RESUMABLE_KEYS = ("epochs", "lr", "patience", "device", "workers", "bf16", "channels_last", "cudnn_benchmark")
OPTIMIZERS = ("sgd", "adam")
SCHEDULES = ("constant", "cosine")
MONITORS = ("loss", "iou")


@dataclass
class TrainConfig:
    """Everything that defines a training run (saved as ``config.json`` and inside every checkpoint)."""

    # network
    model: str = "unet"  # a name of unet_repro.models.MODELS
    in_channels: int = 1
    widths: tuple[int, ...] = (64, 128, 256, 512, 1024)  # the paper's U-Net; ignored when base_width is set
    base_width: int | None = None  # first-level channels (baselines; the U-Net doubles it per level)
    padding: str = "valid"  # the paper's U-Net only
    dropout: float = 0.5  # the paper's U-Net only
    loss: str = "weighted_bce"  # a name of unet_repro.losses.LOSSES; only weighted_bce uses the weight map
    # data
    tile: int = 572  # input tile side; the label tile is the model's output for it (388 for the paper's U-Net)
    w0: float = 10.0
    sigma: float = 5.0
    augment: bool = True
    # optimisation
    optimizer: str = "sgd"  # "sgd" or "adam"
    lr: float = 0.01
    momentum: float = 0.99
    weight_decay: float = 0.0
    schedule: str = "constant"  # "constant" or "cosine" (over all optimizer steps)
    batch_size: int = 1  # tiles per forward pass
    accumulate: int = 1  # forward passes per optimizer step
    epochs: int = 50
    steps_per_epoch: int = 100  # forward passes per epoch
    patience: int = 10  # epochs without improvement before stopping; 0 disables early stopping
    monitor: str = "loss"  # validation metric that selects best.pt: "loss" (lower is better) or "iou"
    seed: int = 0
    # hardware
    device: str = "auto"
    bf16: bool = True  # bf16 autocast where the device computes bf16 natively (CUDA; CPUs with AVX512-BF16 / AMX)
    channels_last: bool = True  # CUDA only
    cudnn_benchmark: bool = True  # CUDA only
    workers: int = 0
    extra: dict[str, Any] = field(default_factory=dict)  # free-form notes of the experiment (task, preset, ...)

    def model_options(self) -> dict[str, Any]:
        """Keyword options of `build_model` for this network."""
        options: dict[str, Any] = {"in_channels": self.in_channels, "out_channels": 1}
        if self.model != "unet":
            return {**options, "base_width": self.base_width or 64}
        size = {"base_width": self.base_width} if self.base_width else {"widths": tuple(self.widths)}
        return {**options, **size, "padding": self.padding, "dropout": self.dropout}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        d = {k: v for k, v in d.items() if k in known}
        if "widths" in d:
            d["widths"] = tuple(d["widths"])
        return cls(**d)


def validate_config(cfg: TrainConfig, tile: bool = True) -> None:
    """Check every value of `cfg` before any work starts; `ConfigError` names the first bad setting and its flag.

    Checks ranges (counts >= 1, probabilities in [0, 1), rates > 0 ...), names (model, loss, optimizer, schedule,
    monitor), that the network can be built and (with `tile`) that ``tile`` is a valid input size for it, and that
    the device exists.
    """
    def need(ok: bool, key: str, problem: str, fix: str | None = None) -> None:
        if not ok:
            raise ConfigError(key, problem, fix)

    value = {f.name: getattr(cfg, f.name) for f in fields(cfg)}
    need(cfg.model in MODELS, "model", f"is {cfg.model!r}, not a known model", f"choose from {', '.join(MODELS)}")
    need(cfg.loss in LOSSES, "loss", f"is {cfg.loss!r}, not a known loss", f"choose from {', '.join(LOSSES)}")
    need(cfg.optimizer in OPTIMIZERS, "optimizer", f"is {cfg.optimizer!r}", f"choose from {', '.join(OPTIMIZERS)}")
    need(cfg.schedule in SCHEDULES, "schedule", f"is {cfg.schedule!r}", f"choose from {', '.join(SCHEDULES)}")
    need(cfg.monitor in MONITORS, "monitor", f"is {cfg.monitor!r}", f"choose from {', '.join(MONITORS)}")
    for key in ("in_channels", "batch_size", "accumulate", "epochs", "steps_per_epoch", "tile"):
        need(isinstance(value[key], int) and value[key] >= 1, key, f"must be a whole number >= 1, got {value[key]!r}")
    for key in ("patience", "workers"):
        need(isinstance(value[key], int) and value[key] >= 0, key, f"must be a whole number >= 0, got {value[key]!r}")
    need(isinstance(cfg.seed, int) and cfg.seed >= 0, "seed", f"must be a whole number >= 0, got {cfg.seed!r}")
    need(math.isfinite(cfg.sigma) and cfg.sigma > 0, "sigma", f"must be a finite number > 0, got {cfg.sigma!r}")
    for key in ("lr", "w0", "weight_decay"):  # lr 0 freezes the weights (tests of the loop use it)
        need(math.isfinite(value[key]) and value[key] >= 0, key, f"must be a finite number >= 0, got {value[key]!r}")
    need(0 <= cfg.momentum < 1, "momentum", f"must be in [0, 1), got {cfg.momentum!r}")
    need(0 <= cfg.dropout < 1, "dropout", f"must be a probability in [0, 1), got {cfg.dropout!r}")
    need(cfg.padding in ("valid", "same"), "padding", f"must be 'valid' or 'same', got {cfg.padding!r}")
    if cfg.model == "unet" and not cfg.base_width:
        need(len(cfg.widths) >= 2 and all(isinstance(w, int) and w >= 1 for w in cfg.widths), "widths",
             f"must be at least two channel counts >= 1, got {','.join(map(str, cfg.widths)) or 'nothing'}",
             "e.g. --widths 16,32,64,128,256")
    if cfg.base_width is not None:
        need(isinstance(cfg.base_width, int) and cfg.base_width >= 1, "base_width",
             f"must be a whole number >= 1, got {cfg.base_width!r}")
    try:
        model = build_model(cfg.model, **cfg.model_options())
    except ValueError as e:
        raise ConfigError("model", f"{cfg.model!r} cannot be built with these settings ({e})") from None
    if tile:
        check_tile(model, cfg.tile)
    check_device(cfg.device)


def check_tile(model: torch.nn.Module, tile: int, key: str = "tile") -> int:
    """The output side of input tiles of side `tile` for `model`; `ConfigError` naming the nearest valid sizes."""
    if not hasattr(model, "output_size"):
        return tile
    try:
        return model.output_size(tile)
    except ValueError as e:
        raise ConfigError(key, f"is {tile}, not a valid input side for this network: {e}") from None


def check_device(name: str) -> None:
    """`ConfigError` if `name` is not a device this machine has (``auto`` always is)."""
    if name == "auto":
        return
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError("device", f"is {name!r}, not a device name", "use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError("device", f"is {name!r} but this machine has no CUDA GPU (torch {torch.__version__})",
                              "use --device cpu or auto")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError("device", f"is {name!r} but this machine has {torch.cuda.device_count()} GPU(s)")
    elif device.type != "cpu":
        raise ConfigError("device", f"is {name!r}; this project runs on cpu or cuda", "use auto, cpu or cuda")
