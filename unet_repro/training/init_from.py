"""Fine-tuning: a new run (its own data, epochs, learning rate and folder) that starts from another run's weights
instead of the paper's random initialisation.

The checkpoint's network must be this run's network: the same model, input channels, widths (or base width) and
padding, so that every weight has its place. Another number of output channels (classes) is refused too, unless the
head is to be re-initialised (``reinit_head``): then every weight but the final 1x1 convolution's comes from the
checkpoint, and the head starts as a new network's would (the paper's initialisation, from the run's seed). Dropout
may differ (it has no weights). The optimizer, the schedule and the step count start afresh: it is a new run, not a
resumed one (that is ``--resume``). Where the weights came from is recorded in the run's config (``extra.init_from``)
and so in ``config.json``, the checkpoints and the results.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import ConfigMismatchError
from .checkpoint import config_differences, load_checkpoint, load_weights
from .config import TrainConfig

# The settings that give a network's weights their shapes and meaning, besides its output channels.
SHAPING_KEYS = ("model", "in_channels", "widths", "base_width", "padding")
HEAD = "head."  # every network of unet_repro.models names its final 1x1 convolution `head`


@dataclass
class StartingWeights:
    """The weights a new run starts from, checked against its network."""

    path: Path
    weights: dict[str, torch.Tensor]
    reinit_head: bool
    source: dict[str, Any]

    @classmethod
    def load(cls, path: Path | str, cfg: TrainConfig, reinit_head: bool = False) -> StartingWeights:
        """Read the checkpoint at `path` (`CheckpointError` naming it if it is none) and check that its network
        is `cfg`'s (`ConfigMismatchError` naming each difference and what to do)."""
        path = Path(path)
        ckpt = load_checkpoint(path)
        saved = ckpt["config"]
        diffs = config_differences(saved, cfg, SHAPING_KEYS)
        if diffs:
            listed = "; ".join(f"{k}: checkpoint {old!r} vs this run {new!r}" for k, old, new in diffs)
            raise ConfigMismatchError(f"--init-from {path}: its network is not this run's ({listed}); start from a "
                                      f"checkpoint of the same network, or give the flags that make it the same")
        heads = config_differences(saved, cfg, ("classes",))
        if heads and not reinit_head:
            (_, old, new), = heads
            raise ConfigMismatchError(
                f"--init-from {path}: its head has {_outputs(old)} output channel(s), this run's {_outputs(new)} "
                f"(classes {old!r} vs {new!r}); pass --reinit-head to start a new head from the other weights")
        source = {"path": str(path), "epoch": ckpt.get("epoch"), "task": (saved.get("extra") or {}).get("task"),
                  "commit": (saved.get("extra") or {}).get("commit"), "reinit_head": bool(reinit_head and heads)}
        return cls(path, ckpt["model"], bool(reinit_head and heads), source)

    def apply(self, model: nn.Module) -> None:
        """Put the weights into `model` (all of them, or all but its head's)."""
        if not self.reinit_head:
            load_weights(model, self.weights, self.path)
            return
        body = {k: v for k, v in self.weights.items() if not k.startswith(HEAD)}
        own_head = {k: v for k, v in model.state_dict().items() if k.startswith(HEAD)}
        load_weights(model, {**body, **own_head}, self.path)


def _outputs(classes: int | None) -> int:
    return 1 if classes is None else int(classes)


__all__ = ["SHAPING_KEYS", "StartingWeights"]
