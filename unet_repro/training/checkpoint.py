"""Checkpoints: what they hold, writing them atomically, reading them safely, the generator states they carry, and
the one object a resumed run is made from (`Resume`).

``last.pt`` is the run's whole state, written on a time cadence (``TrainConfig.checkpoint_every``), at the end and on
an interrupt: ``model``, ``optimizer``, ``scheduler`` (state dicts), ``epoch`` (the last finished one), ``step``
(optimizer steps), ``best``, ``best_epoch``, ``bad_epochs``, ``metrics`` (that epoch's validation),
``best_metrics`` and ``best_model`` (the best epoch's weights; None when the best epoch is ``epoch`` itself, whose
weights are ``model``), ``stop_reason`` (None while running), ``rng`` (and ``rng_ranks`` for data-parallel runs),
``config`` (the `TrainConfig` as a dict) and ``changes`` (settings changed on resume: key, old, new, from which
epoch). ``best.pt`` holds only what prediction needs: ``kind`` "best", the best epoch's ``model`` weights, its
``epoch``, ``metrics`` and the ``config``. It is written from ``last.pt``'s state right after it, so a kill between the
two leaves a ``last.pt`` from which the resumed run writes ``best.pt`` again. Everything loads with
``torch.load(weights_only=True)``.
"""
from __future__ import annotations

import random
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import CheckpointError, ConfigMismatchError
from ..files import atomic_write
from .config import MODEL_KEYS, TrainConfig

REQUIRED_KEYS = ("model", "config")


def seed_everything(seed: int) -> None:
    """Seed python's, numpy's and torch's global generators."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    """The python, numpy, torch and CUDA generators' states, in types that ``weights_only`` loading accepts."""
    np_state = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": (np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        # Before CUDA is initialised, torch queues both this call and the seeding of `seed_everything`, and runs the
        # seeding last at initialisation, which would overwrite the restored states: initialise first.
        torch.cuda.init()
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: Path | str, state: dict[str, Any]) -> None:
    """Write atomically: to a temporary file beside `path`, flushed to disk, then renamed over it. An interrupted
    write leaves the previous checkpoint untouched."""
    with atomic_write(path) as f:
        torch.save(state, f)


def _what_it_is(path: Path) -> str:
    """A few words on what a file that is not a readable checkpoint looks like, for the error message."""
    with open(path, "rb") as f:
        head = f.read(8)
    if not head:
        return "it is empty"
    if head.startswith(b"PK"):
        try:
            with zipfile.ZipFile(path) as z:
                z.namelist()
        except zipfile.BadZipFile:
            return "it is a truncated or damaged PyTorch file"
        return "it is a PyTorch file holding objects that are not plain tensors and numbers"
    if head[:1] == b"\x80":
        return "it is a Python pickle, not a PyTorch checkpoint"
    return "it is not a PyTorch file"


def load_checkpoint(path: Path | str, map_location: str | torch.device = "cpu",
                    task: str | None = None) -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True``.

    `CheckpointError` (naming the file and what is wrong) if it is missing, not a PyTorch file, damaged, not a
    unet_repro checkpoint, or, with `task`, made by another task than `task`.
    """
    path = Path(path)
    if not path.is_file():
        hint = "; a run folder holds last.pt and best.pt" if path.is_dir() else ""
        raise CheckpointError(f"checkpoint {path} not found{hint}")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception:  # torch raises many types for files that are not checkpoints
        raise CheckpointError(f"{path} is not a unet_repro checkpoint: {_what_it_is(path)}; pass the last.pt or "
                              f"best.pt of a run") from None
    if not isinstance(ckpt, dict) or any(k not in ckpt for k in REQUIRED_KEYS):
        raise CheckpointError(f"{path} is a PyTorch file but not a unet_repro checkpoint (no "
                              f"{' / '.join(REQUIRED_KEYS)} entries); pass the last.pt or best.pt of a run")
    made_by = checkpoint_task(ckpt)
    if task is not None and made_by is not None and made_by != task:
        raise CheckpointError(f"{path} was made by the {made_by!r} task, not {task!r}; use it with the "
                              f"{made_by} command (`unet-repro {made_by}` or `python -m experiments.{made_by}`)")
    return ckpt


def checkpoint_task(ckpt: dict[str, Any]) -> str | None:
    """The task (dataset) whose run wrote `ckpt`, if it says."""
    extra = ckpt.get("config", {}).get("extra", {}) or {}
    return extra.get("task") or extra.get("experiment")


def config_differences(saved: dict[str, Any], cfg: TrainConfig, keys: tuple[str, ...]) -> list[tuple[str, Any, Any]]:
    """(key, saved value, requested value) for each of `keys` whose values differ (a setting the saved config
    predates counts as its default)."""
    old = TrainConfig.from_dict(saved)

    def norm(v: Any) -> Any:
        return tuple(v) if isinstance(v, (list, tuple)) else v
    return [(k, getattr(old, k), getattr(cfg, k)) for k in keys if norm(getattr(old, k)) != norm(getattr(cfg, k))]


def check_same_model(saved: dict[str, Any], cfg: TrainConfig, path: Path | str) -> None:
    """`ConfigMismatchError` if `cfg` asks for another network than the checkpoint at `path` holds."""
    diffs = config_differences(saved, cfg, MODEL_KEYS)
    if diffs:
        listed = "; ".join(f"{k}: checkpoint {old!r} vs requested {new!r}" for k, old, new in diffs)
        raise ConfigMismatchError(f"{path} was made with a different network; refusing to resume ({listed}). Drop "
                                  f"those flags to continue the run as it was, or start a new run")


def load_weights(model: torch.nn.Module, weights: dict[str, torch.Tensor], path: Path | str) -> torch.nn.Module:
    """Put `weights` (a state dict read from the checkpoint at `path`) into `model`; `CheckpointError` naming the
    first parameter that is missing, extra or of another shape."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in weights]
    extra = [k for k in weights if k not in expected]
    shapes = [(k, tuple(weights[k].shape), tuple(v.shape)) for k, v in expected.items()
              if k in weights and tuple(weights[k].shape) != tuple(v.shape)]
    if missing or extra or shapes:
        if shapes:
            k, got, want = shapes[0]
            why = f"{k} is {got} in the file but {want} in the network"
        else:
            why = f"{'missing' if missing else 'unexpected'} parameter {(missing or extra)[0]}"
        raise CheckpointError(f"{path}: its weights do not fit the network its config describes ({why}; "
                              f"{len(missing) + len(extra) + len(shapes)} difference(s)); the file was changed or "
                              f"made by another version")
    model.load_state_dict(weights)
    return model
