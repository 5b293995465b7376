"""Resuming a run: the one object a resumed run is made from (`Resume`, its checkpoint read once), which settings
it may change, and whether anything is left to train.

The policy: ``--resume CKPT`` alone continues with the checkpoint's own configuration. The network's settings
(`MODEL_KEYS`) cannot change; those of `RESUMABLE_KEYS` may, and are applied from the resumed epoch and recorded as
``changes``; any other change is refused, because the resumed run would no longer continue the run its checkpoint
belongs to.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from ..errors import CheckpointError, ConfigMismatchError
from .checkpoint import check_same_model, config_differences, load_checkpoint
from .config import MODEL_KEYS, RESUMABLE_KEYS, TrainConfig


@dataclass
class Resume:
    """A run to continue: the path of its ``last.pt`` and the state it holds, read once."""

    path: Path
    state: dict[str, Any]

    @classmethod
    def load(cls, path: Path | str, task: str | None = None) -> Resume:
        """Read the checkpoint at `path` (`CheckpointError` naming the file if it is not a training state, e.g. a
        ``best.pt``, which holds only the best epoch's weights)."""
        path = Path(path)
        state = load_checkpoint(path, task=task)
        if state.get("kind") == "best" or "optimizer" not in state:
            raise CheckpointError(f"{path} holds the weights of a run's best epoch, not its training state; resume "
                                  f"from the last.pt beside it (or start a new run from these weights with "
                                  f"--init-from {path})")
        return cls(path, state)

    @property
    def config(self) -> TrainConfig:
        """The configuration the checkpoint was made with."""
        return TrainConfig.from_dict(self.state["config"])

    @property
    def next_epoch(self) -> int:
        return int(self.state["epoch"]) + 1

    def changes(self, cfg: TrainConfig) -> list[dict[str, Any]]:
        """The changes `cfg` makes to the checkpoint's configuration, as records ``{key, old, new, from_epoch}``
        (appended to those of earlier resumes); `ConfigMismatchError` for a change a resume cannot make."""
        saved = self.state["config"]
        check_same_model(saved, cfg, self.path)
        others = tuple(f.name for f in fields(TrainConfig) if f.name not in (*MODEL_KEYS, *RESUMABLE_KEYS, "extra"))
        refused = config_differences(saved, cfg, others)
        if refused:
            listed = "; ".join(f"{k}: checkpoint {old!r} vs requested {new!r}" for k, old, new in refused)
            raise ConfigMismatchError(
                f"{self.path}: these settings cannot change when a run is resumed ({listed}); a resumed run may "
                f"change only {', '.join(RESUMABLE_KEYS)}. Drop the others, or start a new run")
        new = [{"key": k, "old": old, "new": new, "from_epoch": self.next_epoch}
               for k, old, new in config_differences(saved, cfg, RESUMABLE_KEYS)]
        return [*self.state.get("changes", []), *new]

    def finished_reason(self, cfg: TrainConfig) -> str | None:
        """Why the run has nothing left to train under `cfg` (`stop_rule`), or None. A run stopped by a time limit
        or an interrupt is not finished."""
        return stop_rule(cfg, int(self.state["epoch"]), int(self.state.get("bad_epochs", 0)))


def stop_rule(cfg: TrainConfig, epoch: int, bad_epochs: int) -> str | None:
    """Why a run whose last finished epoch is `epoch`, `bad_epochs` epochs after its best, stops there (early
    stopping after ``patience`` epochs without improvement, or all ``epochs`` trained), or None to go on."""
    if cfg.patience and bad_epochs >= cfg.patience:
        return f"early stopping: no improvement of validation {cfg.monitor} for {cfg.patience} epochs"
    if epoch + 1 >= cfg.epochs:
        return f"all {cfg.epochs} epochs are trained"
    return None


__all__ = ["Resume", "stop_rule"]
