"""`TrainConfig`: everything that defines a training run, its checks, and which settings a resumed run may change."""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, fields
from typing import Any

import torch

from ..errors import ConfigError
from ..geometry import Geometry, Tile
from ..data.masks import KINDS as MASK_KINDS, MAX_CLASSES
from ..losses import LOSSES, k_class_losses
from ..models import NETWORKS
from ..weightmap import PAPER_SIGMA, PAPER_W0

# Settings that define the network's weights: a checkpoint made with other values cannot be resumed.
MODEL_KEYS = ("model", "in_channels", "classes", "widths", "base_width", "padding", "dropout")
# Settings a resumed run may change: they are applied from the epoch it resumes at and recorded as changed.
# Everything else (the data, the tiles, the optimizer's kind and momentum, the seed...) would make the resumed run a
# different run than the one its checkpoint continues, so changing it is refused.
RESUMABLE_KEYS = ("epochs", "lr", "patience", "device", "workers", "bf16", "channels_last", "cudnn_benchmark",
                  "checkpoint_every")
OPTIMIZERS = ("sgd", "adam")
SCHEDULES = ("constant", "cosine")
MONITORS = ("loss", "iou")
NORMALIZATIONS = ("range", "percentile")



@dataclass
class TrainConfig:
    """Everything that defines a training run (saved as ``config.json`` and inside every checkpoint)."""

    # network (which of these a network takes: unet_repro.models.NETWORKS)
    model: str = "unet"  # a name of unet_repro.models.NETWORKS
    in_channels: int = 1
    classes: int | None = None  # None: one logit, P(foreground) by a sigmoid; K >= 2: K logits and a soft-max
    widths: tuple[int, ...] = (64, 128, 256, 512, 1024)  # the paper's U-Net
    base_width: int | None = None  # first-level channels of the other networks (deeper levels double)
    padding: str = "valid"  # the paper's U-Net only
    dropout: float = 0.5  # the paper's U-Net only
    loss: str = "weighted_bce"  # a name of unet_repro.losses.LOSSES
    # data
    tile: int | None = None  # input tile side; None: the tile rule (unet_repro.geometry.training_tile)
    w0: float = PAPER_W0
    sigma: float = PAPER_SIGMA
    augment: bool = True
    normalization: str = "range"  # how gray values become inputs (unet_repro.data.intensity)
    mask_kind: str = "binary"  # what the labels are: "binary", "instances" or "classes" (unet_repro.data.targets)
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
    # hardware and saving
    device: str = "auto"
    bf16: bool = True  # bf16 autocast where the device computes bf16 natively (CUDA; CPUs with AVX512-BF16 / AMX)
    channels_last: bool = True  # CUDA only
    cudnn_benchmark: bool = True  # CUDA only
    workers: int | None = None  # data-loading processes; None: chosen from the machine (0 on a CPU)
    checkpoint_every: float = 60.0  # seconds between checkpoints (also at the end and on interrupt); 0: every epoch
    extra: dict[str, Any] = field(default_factory=dict)  # free-form notes of the experiment (task, preset, ...)

    @property
    def out_channels(self) -> int:
        return 1 if self.classes is None else self.classes

    def network_options(self) -> dict[str, Any]:
        """Keyword options of `unet_repro.models.build_model` for this network: the settings it declares
        (`unet_repro.models.Network.settings`) and the channels."""
        settings = {key: getattr(self, key) for key in NETWORKS[self.model].settings}
        if "widths" in settings:
            settings["widths"] = tuple(settings["widths"])
        return {"in_channels": self.in_channels, "out_channels": self.out_channels, **settings}

    def geometry(self) -> Geometry:
        """The network's geometry, known without building it."""
        return NETWORKS[self.model].geometry(**self.network_options())

    def input_tile(self) -> Tile:
        """The training tile (``tile`` must be decided: see `unet_repro.geometry.training_tile`)."""
        if self.tile is None:
            raise ValueError("the tile is not decided yet (tile=None): set it, or let the entry point apply the rule")
        return self.geometry().tile(self.tile)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        d = {k: v for k, v in d.items() if k in known}
        if "widths" in d:
            d["widths"] = tuple(d["widths"])
        return cls(**d)


# Settings of the machine a run happens to use, not of the experiment.
HARDWARE_KEYS = ("device", "workers", "bf16", "channels_last", "cudnn_benchmark", "checkpoint_every")


def defining_settings(cfg: TrainConfig) -> dict[str, Any]:
    """The settings that make two runs the same experiment, as plain JSON values: all but the hardware ones, the
    length of the run (``epochs``, ``patience``: a unit trained further is still that unit) and the free-form notes.
    A cached unit (a fold, a grid cell) is reused or continued only when they match."""
    skip = (*HARDWARE_KEYS, "epochs", "patience", "extra")
    values = {f.name: getattr(cfg, f.name) for f in fields(TrainConfig) if f.name not in skip}
    return json.loads(json.dumps(values, default=list))


def neutral_settings(cfg: TrainConfig) -> dict[str, Any]:
    """Values for the network settings that `cfg.model` does not take, so that a run's config never claims a value
    it did not use: no widths, no base width, no dropout, and size-preserving padding for the baselines."""
    takes = NETWORKS[cfg.model].settings
    neutral: dict[str, Any] = {"widths": (), "base_width": None, "dropout": 0.0, "padding": "same"}
    return {key: value for key, value in neutral.items() if key not in takes}


def validate_config(cfg: TrainConfig) -> None:
    """Check every value of `cfg` before any work starts; `ConfigError` names the first bad setting and its flag.

    Checks ranges (counts >= 1, probabilities in [0, 1), rates > 0 ...), names (model, loss, optimizer, schedule,
    monitor, normalisation), the network's settings, that ``tile`` (when decided) is a valid input side for the
    network, and that the device exists. Nothing is built.
    """
    def need(ok: bool, key: str, problem: str, fix: str | None = None) -> None:
        if not ok:
            raise ConfigError(key, problem, fix)

    value = {f.name: getattr(cfg, f.name) for f in fields(cfg)}
    need(cfg.model in NETWORKS, "model", f"is {cfg.model!r}, not a known model", f"choose from {', '.join(NETWORKS)}")
    need(cfg.loss in LOSSES, "loss", f"is {cfg.loss!r}, not a known loss", f"choose from {', '.join(LOSSES)}")
    for key, known in (("optimizer", OPTIMIZERS), ("schedule", SCHEDULES), ("monitor", MONITORS),
                       ("normalization", NORMALIZATIONS), ("mask_kind", MASK_KINDS)):
        need(value[key] in known, key, f"is {value[key]!r}", f"choose from {', '.join(known)}")
    for key in ("in_channels", "batch_size", "accumulate", "epochs", "steps_per_epoch"):
        need(_whole(value[key]) and value[key] >= 1, key, f"must be a whole number >= 1, got {value[key]!r}")
    need(cfg.tile is None or (_whole(cfg.tile) and cfg.tile >= 1), "tile",
         f"must be a whole number >= 1, got {cfg.tile!r}")
    need(cfg.classes is None or (_whole(cfg.classes) and 2 <= cfg.classes <= MAX_CLASSES), "classes",
         f"must be a whole number from 2 to {MAX_CLASSES}, got {cfg.classes!r}",
         "leave it out for one foreground class")
    need(cfg.mask_kind != "classes" or cfg.classes is not None, "classes",
         "must be given for class masks (K, the number of classes with the background)")
    need(cfg.mask_kind == "classes" or cfg.classes in (None, 2), "classes",
         f"is {cfg.classes} but the masks are {cfg.mask_kind}, which have two classes (background, foreground)",
         "use --classes 2 or leave it out")
    need(cfg.classes is None or cfg.loss in k_class_losses(), "loss",
         f"{cfg.loss!r} has no form for K classes here", f"with --classes use {' or '.join(k_class_losses())}")
    need(cfg.workers is None or (_whole(cfg.workers) and cfg.workers >= 0), "workers",
         f"must be a whole number >= 0, got {cfg.workers!r}")
    need(_whole(cfg.patience) and cfg.patience >= 0, "patience", f"must be a whole number >= 0, got {cfg.patience!r}")
    need(_whole(cfg.seed) and 0 <= cfg.seed < 2**32, "seed", f"must be a whole number from 0 to 2**32 - 1, got "
         f"{cfg.seed!r}")
    need(_finite(cfg.sigma) and cfg.sigma > 0, "sigma", f"must be a finite number > 0, got {cfg.sigma!r}")
    for key in ("lr", "w0", "weight_decay", "checkpoint_every"):  # lr 0 freezes the weights (tests of the loop)
        need(_finite(value[key]) and value[key] >= 0, key, f"must be a finite number >= 0, got {value[key]!r}")
    need(cfg.w0 <= 1e6, "w0", f"is {cfg.w0!r}; the paper's border weight is 10, and weights beyond 1e6 overflow the "
                              f"float32 loss")
    need(_finite(cfg.momentum) and 0 <= cfg.momentum < 1, "momentum", f"must be in [0, 1), got {cfg.momentum!r}")
    need(_finite(cfg.dropout) and 0 <= cfg.dropout < 1, "dropout",
         f"must be a probability in [0, 1), got {cfg.dropout!r}")
    need(cfg.padding in ("valid", "same"), "padding", f"must be 'valid' or 'same', got {cfg.padding!r}")
    _validate_network(cfg, need)
    if cfg.tile is not None:
        try:
            cfg.input_tile()
        except ValueError as e:
            raise ConfigError("tile", f"is {cfg.tile}, not a valid input side for this network: {e}") from None
        depth = cfg.geometry().depth
        need(not (NETWORKS[cfg.model].batch_norm and cfg.batch_size == 1 and cfg.tile < 2 ** (depth + 1)),
             "batch_size", f"is 1 with {cfg.tile} px tiles, which {cfg.model}'s {depth} down-samplings reduce to "
             f"1 x 1: its batch norm cannot train on one value per channel", "use --batch-size 2 or more, or larger "
             "images (--size)")
    check_device(cfg.device)


def _validate_network(cfg: TrainConfig, need: Any) -> None:
    takes = NETWORKS[cfg.model].settings
    if "widths" in takes:
        need(2 <= len(cfg.widths) <= 8 and all(_whole(w) and w >= 1 for w in cfg.widths), "widths",
             f"must be 2 to 8 channel counts >= 1 (1 to 7 poolings), got "
             f"{','.join(map(str, cfg.widths)) or 'nothing'}", "e.g. --widths 16,32,64,128,256")
    if "base_width" in takes:
        need(cfg.base_width is not None and _whole(cfg.base_width) and cfg.base_width >= 1, "base_width",
             f"must be a whole number >= 1, got {cfg.base_width!r}")


def _whole(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def check_device(name: str) -> None:
    """`ConfigError` if `name` is not a device this machine has (``auto`` always is)."""
    if name == "auto":
        return
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise ConfigError("device", f"is {name!r}, not a device name", "use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError("device", f"is {name!r} but this machine has no CUDA GPU (torch {torch.__version__})",
                              "use --device cpu or auto")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError("device", f"is {name!r} but this machine has {torch.cuda.device_count()} GPU(s)")
    elif device.type != "cpu":
        raise ConfigError("device", f"is {name!r}; this project runs on cpu or cuda", "use auto, cpu or cuda")
