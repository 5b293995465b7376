"""Checkpoints: what they hold, writing them atomically, reading them safely, and the generator states they carry.

A checkpoint (``last.pt`` every epoch, ``best.pt`` at each improvement) is a dict holding ``model``, ``optimizer``,
``scheduler`` (state dicts), ``epoch`` (the last finished one), ``step`` (optimizer steps), ``best``,
``best_epoch``, ``bad_epochs``, ``metrics`` (that epoch's validation), ``stop_reason`` (None while running), ``rng``
(and ``rng_ranks`` for data-parallel runs), ``config`` (the `TrainConfig` as a dict) and ``changes`` (settings changed
on resume: key, old, new, from which epoch). Everything in it loads with ``torch.load(weights_only=True)``.
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
        raise CheckpointError(f"{path} was made by the {made_by!r} task, not {task!r}; use it with "
                              f"`--task {made_by}` (or the entry point of that task)")
    return ckpt


def resume_point(path: Path | str) -> Path:
    """The checkpoint a resumed run continues from when asked for `path`.

    ``best.pt`` is written before ``last.pt`` in each epoch, so a run killed between the two has a ``best.pt`` one
    epoch ahead of its ``last.pt`` (or no ``last.pt`` at all, in its first epoch): asked for a run's ``last.pt``,
    this returns whichever of the two is further along (both hold the complete state of their epoch), so that no
    epoch is lost or repeated; any other path is returned as it is.
    """
    path = Path(path)
    best = path.with_name("best.pt")
    if path.name != "last.pt" or not best.is_file():
        return path
    if not path.is_file():
        return best
    epoch = {}
    for p in (path, best):
        try:
            epoch[p] = load_checkpoint(p).get("epoch", -1)
        except CheckpointError:
            epoch[p] = -2  # unreadable: the other one, if it can be read, says more
    return best if epoch[best] > epoch[path] else path


def checkpoint_task(ckpt: dict[str, Any]) -> str | None:
    """The task (dataset) whose run wrote `ckpt`, if it says."""
    extra = ckpt.get("config", {}).get("extra", {}) or {}
    return extra.get("task") or extra.get("experiment")


def config_differences(saved: dict[str, Any], cfg: TrainConfig, keys: tuple[str, ...]) -> list[tuple[str, Any, Any]]:
    """(key, saved value, requested value) for each of `keys` whose values differ."""
    def norm(v: Any) -> Any:
        return tuple(v) if isinstance(v, (list, tuple)) else v
    return [(k, saved.get(k), getattr(cfg, k)) for k in keys if norm(saved.get(k)) != norm(getattr(cfg, k))]


def check_same_model(saved: dict[str, Any], cfg: TrainConfig, path: Path | str) -> None:
    """`ConfigMismatchError` if `cfg` asks for another network than the checkpoint at `path` holds."""
    diffs = config_differences(saved, cfg, MODEL_KEYS)
    if diffs:
        listed = "; ".join(f"{k}: checkpoint {old!r} vs requested {new!r}" for k, old, new in diffs)
        raise ConfigMismatchError(f"{path} was made with a different network; refusing to resume ({listed}). Drop "
                                  f"those flags to continue the run as it was, or start a new run")


def load_weights(model: torch.nn.Module, ckpt: dict[str, Any], path: Path | str) -> torch.nn.Module:
    """Put the checkpoint's weights into `model`; `CheckpointError` if they do not fit it."""
    try:
        model.load_state_dict(ckpt["model"])
    except (RuntimeError, KeyError) as e:
        first = str(e).strip().splitlines()[0]
        raise CheckpointError(f"{path}: its weights do not fit the network its config describes ({first})") from None
    return model
