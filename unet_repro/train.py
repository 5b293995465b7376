"""Training as in the paper, in one readable loop.

`train` runs epochs of ``steps_per_epoch`` forward passes of ``batch_size`` tiles each (the paper: one 572x572
tile), accumulates gradients over ``accumulate`` passes before each optimizer step (SGD, momentum 0.99 by
default), validates on held-out slices with overlap-tile prediction after every epoch, keeps ``best.pt`` and
``last.pt``, stops early after ``patience`` epochs without improvement, and stops at once on a non-finite loss.

A run directory holds ``config.json``, ``metrics.csv`` (one row per epoch), ``last.pt``, ``best.pt`` and, at the end,
``curves.png``. A checkpoint carries everything a resumed run needs to continue exactly as if it had never stopped.

Data-parallel training: started by ``torchrun --nproc_per_node=W ...`` (which sets ``WORLD_SIZE``, ``RANK`` and
``LOCAL_RANK``), every process runs `train`; the W processes join a process group (NCCL on CUDA, one GPU each:
``cuda:LOCAL_RANK``; gloo on CPU), wrap the model in ``DistributedDataParallel`` and split each epoch's samples
(`EpochSampler`). An epoch holds ``steps_per_epoch * batch_size * W`` samples, so every process still makes
``steps_per_epoch`` passes of ``batch_size`` tiles and the epoch (and the learning-rate schedule) keeps its number
of optimizer steps; DDP averages the gradients, so each step equals one process's step over all W processes'
tiles, a W times larger batch. Only rank 0 validates and writes the run directory; the others wait for it.
"""
from __future__ import annotations

import contextlib
import csv
import datetime
import functools
import gc
import itertools
import json
import math
import os
import random
import time
import traceback
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from .data.isbi import EpochSampler, TileDataset
from .inference import predict_tiled
from .losses import build_loss
from .models import build_model
from .weightmap import border_weight_map

# Settings that define the network's weights: a checkpoint made with other values cannot be resumed.
MODEL_KEYS = ("model", "in_channels", "widths", "base_width", "padding", "dropout")


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
    # hardware (the CUDA switches are ignored on CPU, where everything is float32)
    device: str = "auto"
    bf16: bool = True
    channels_last: bool = True
    cudnn_benchmark: bool = True
    workers: int = 0
    extra: dict[str, Any] = field(default_factory=dict)  # free-form notes of the experiment (data root, preset...)

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


class DivergedError(RuntimeError):
    """The training loss became NaN or infinite."""


class ConfigMismatchError(ValueError):
    """A checkpoint was made with a different model configuration."""


# -- set-up helpers ---------------------------------------------------------------------------------------------

def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def make_model(cfg: TrainConfig) -> nn.Module:
    # Weights are drawn from their own seeded generator so that the model is the same whatever ran before.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        return build_model(cfg.model, **cfg.model_options())


def make_optimizer(cfg: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    raise ValueError(f"unknown optimizer {cfg.optimizer!r}; use 'sgd' or 'adam'")


def optimizer_steps_per_epoch(cfg: TrainConfig) -> int:
    return math.ceil(cfg.steps_per_epoch / cfg.accumulate)


def make_scheduler(cfg: TrainConfig, optimizer: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LRScheduler:
    if cfg.schedule == "constant":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    if cfg.schedule == "cosine":
        total = max(1, cfg.epochs * optimizer_steps_per_epoch(cfg))
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total)
    raise ValueError(f"unknown schedule {cfg.schedule!r}; use 'constant' or 'cosine'")


def output_tile(model: nn.Module, tile: int) -> int:
    """The label tile side for input tiles of side `tile` (the same side for size-preserving models)."""
    return model.output_size(tile) if hasattr(model, "output_size") else tile


# -- data-parallel processes -------------------------------------------------------------------------------------

# How long the other processes wait at a collective for rank 0, which validates and writes checkpoints alone.
PROCESS_GROUP_TIMEOUT = datetime.timedelta(hours=1)


@dataclass(frozen=True)
class Distributed:
    """This process's place among the data-parallel processes: ``torchrun`` sets ``WORLD_SIZE``, ``RANK`` and
    ``LOCAL_RANK`` (its index on this machine); without them the run is one process."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @classmethod
    def from_env(cls) -> Distributed:
        env = os.environ
        return cls(int(env.get("RANK", 0)), int(env.get("WORLD_SIZE", 1)), int(env.get("LOCAL_RANK", 0)))

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0 validates, writes the run directory and shows progress."""
        return self.rank == 0


def process_device(device: torch.device, dist: Distributed) -> torch.device:
    """The device of this process: with several processes on CUDA, GPU ``LOCAL_RANK`` (whatever index `device`
    names), made the current one; otherwise `device`."""
    if dist.enabled and device.type == "cuda":
        device = torch.device("cuda", dist.local_rank)
        torch.cuda.set_device(device)
    return device


@functools.cache
def rendezvous_store() -> torch.distributed.Store:
    """The key-value store through which the processes find each other (``env://``: torchrun's, or one at
    ``MASTER_ADDR:MASTER_PORT``), opened once per process and shared by all its process groups."""
    store, _, _ = next(torch.distributed.rendezvous("env://", timeout=PROCESS_GROUP_TIMEOUT))
    return store


_groups_joined = itertools.count()


@contextlib.contextmanager
def process_group(dist: Distributed, device: torch.device) -> Iterator[None]:
    """Join the process group for the body (NCCL on CUDA, gloo on CPU) and leave it afterwards, also on error.

    Does nothing for one process, nor when the caller has joined a group already (the caller then leaves it).
    A process may join one group after another (`train` once per cross-validation fold): each gets its own keys in
    the rendezvous store, because torch names every new default group alike and a later group would otherwise
    read the addresses of the earlier one and connect to closed ports (a hang or "Connection refused").

    On error the frames of the failed body are cleared before the group is left: they hold the
    ``DistributedDataParallel`` wrapper, whose C++ reducer would otherwise own the group past
    ``destroy_process_group`` and destroy it, while holding the GIL, when the exception is dropped; with gloo that
    deadlocks against the group's worker thread (pytorch/pytorch#56297). So the traceback of such an error shows
    no local variables.
    """
    if not dist.enabled or torch.distributed.is_initialized():
        yield
        return
    cuda = device.type == "cuda"
    store = torch.distributed.PrefixStore(f"unet_repro/group_{next(_groups_joined)}", rendezvous_store())
    torch.distributed.init_process_group("nccl" if cuda else "gloo", store=store, rank=dist.rank,
                                         world_size=dist.world_size, timeout=PROCESS_GROUP_TIMEOUT,
                                         device_id=device if cuda else None)
    try:
        yield
    except BaseException as e:
        traceback.clear_frames(e.__traceback__)
        gc.collect()
        raise
    finally:
        torch.distributed.destroy_process_group()


def process_seed(seed: int, rank: int, step: int = 0) -> int:
    """Seed of the global generators (dropout) of process `rank`: the run's seed for rank 0 at the start, so one
    process is seeded as it always was; for other ranks (or later steps) one derived from all three, so that the
    processes draw different dropout masks."""
    if rank == 0 and step == 0:
        return seed
    return int(np.random.SeedSequence((seed, rank, step)).generate_state(1)[0])


def gradient_sync(model: nn.Module, sync: bool) -> contextlib.AbstractContextManager:
    """Context for one forward + backward pass: DDP's ``no_sync`` when `sync` is false, so that accumulation passes
    that do not step keep their gradients local and only the stepping pass averages them across processes."""
    if sync or not isinstance(model, nn.parallel.DistributedDataParallel):
        return contextlib.nullcontext()
    return model.no_sync()


def broadcast(obj: Any, dist: Distributed) -> Any:
    """Rank 0's `obj` on every process (a picklable object); the others wait for rank 0 here."""
    if not dist.enabled:
        return obj
    box = [obj]
    torch.distributed.broadcast_object_list(box, src=0)
    return box[0]


def all_finite(loss: torch.Tensor, dist: Distributed) -> bool:
    """Whether the loss is finite on every process: all decide alike, so that none waits forever in a backward
    pass that the others skipped."""
    finite = torch.isfinite(loss.detach())
    if dist.enabled:
        finite = finite.to(torch.int32)
        torch.distributed.all_reduce(finite, op=torch.distributed.ReduceOp.MIN)
    return bool(finite)


def sum_over_processes(values: Sequence[float], dist: Distributed, device: torch.device) -> list[float]:
    """Element-wise sums over the processes (e.g. loss totals and tile counts of an epoch)."""
    if not dist.enabled:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=device)
    torch.distributed.all_reduce(t)
    return t.tolist()


def gather_rng_states(dist: Distributed) -> list[dict[str, Any]] | None:
    """Every process's generator states (`rng_state`), by rank, on rank 0; None on the others."""
    state = rng_state()
    if not dist.enabled:
        return [state]
    states = [None] * dist.world_size if dist.is_main else None
    torch.distributed.gather_object(state, states, dst=0)
    return states


def restore_rng(ckpt: dict[str, Any], dist: Distributed, seed: int) -> None:
    """Continue this process's generators from the checkpoint. A checkpoint of a data-parallel run holds every
    rank's states (``rng_ranks``; ``rng`` is rank 0's); a rank it has none for (it was made with fewer processes)
    starts fresh generators from (seed, rank, step)."""
    states = ckpt.get("rng_ranks") or [ckpt["rng"]]
    if dist.rank < len(states):
        set_rng_state(states[dist.rank])
    else:
        seed_everything(process_seed(seed, dist.rank, ckpt["step"]))


def effective_batch(cfg: TrainConfig, dist: Distributed) -> int:
    """Tiles per optimizer step: tiles per pass x passes per step x processes."""
    return cfg.batch_size * cfg.accumulate * dist.world_size


def make_loader(dataset: TileDataset, sampler: EpochSampler, cfg: TrainConfig,
                pin_memory: bool) -> torch.utils.data.DataLoader:
    """One DataLoader for the whole run: `sampler` yields global sample ids, so ``sampler.set_epoch`` alone moves
    it to the next epoch.

    With workers they persist across epochs (no re-forking, no cold start each epoch) and the loader draws their
    seeds from its own generator: a persistent loader draws them once per run, not once per iteration, and drawing
    from the global generator would shift the dropout masks of a resumed run against an uninterrupted one. The
    tiles never depend on those seeds. Without workers each iteration draws one number from the global generator,
    as it always has, which keeps earlier single-process runs reproducible bit for bit.
    """
    persistent = cfg.workers > 0
    return torch.utils.data.DataLoader(dataset, batch_size=cfg.batch_size, sampler=sampler,
                                       num_workers=cfg.workers, pin_memory=pin_memory,
                                       persistent_workers=persistent,
                                       generator=torch.Generator().manual_seed(cfg.seed) if persistent else None)


# -- checkpoints -------------------------------------------------------------------------------------------------

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
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def load_checkpoint(path: Path | str, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True``; a clear error if it is missing or not a checkpoint."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} not found")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:
        raise ValueError(f"{path}: not a readable unet_repro checkpoint ({e})") from e
    if not isinstance(ckpt, dict) or "model" not in ckpt or "config" not in ckpt:
        raise ValueError(f"{path}: not a unet_repro checkpoint (expected a dict with 'model' and 'config')")
    return ckpt


def check_same_model(saved: dict[str, Any], cfg: TrainConfig, path: Path | str) -> None:
    diffs = []
    for key in MODEL_KEYS:
        old, new = saved.get(key), getattr(cfg, key)
        if (tuple(old) if isinstance(old, list) else old) != (tuple(new) if isinstance(new, list) else new):
            diffs.append(f"{key}: checkpoint {old!r} vs requested {new!r}")
    if diffs:
        raise ConfigMismatchError(f"{path} was made with a different model configuration; refusing to resume "
                                  f"({'; '.join(diffs)})")


# -- validation --------------------------------------------------------------------------------------------------

def evaluate(model: nn.Module, images: Sequence[np.ndarray], labels: Sequence[np.ndarray],
             weights: Sequence[np.ndarray], tile: int | None = None, device: torch.device | None = None,
             tta: bool = False) -> tuple[dict[str, float], list[np.ndarray]]:
    """Validation metrics on whole slices predicted with overlap-tile prediction.

    Returns ``loss`` (the pixel-weighted BCE of the training objective), ``pixel_error`` (fraction of pixels whose
    thresholded prediction differs from the label), ``iou`` (Jaccard of the foreground class, label 1) and
    ``iou_background`` (of class 0: the membranes for ISBI), all averaged over pixels of all slices, and the
    probability maps. ``tta`` averages each prediction over the 8 symmetries of the square.
    """
    probs, losses, wrong, inter, union, inter0, union0, n = [], 0.0, 0, 0, 0, 0, 0, 0
    for image, label, weight in zip(images, labels, weights):
        p = predict_tiled(model, image, tile=tile, device=device, tta=tta)
        probs.append(p)
        t = torch.from_numpy(label.astype(np.float32))
        losses += float(nn.functional.binary_cross_entropy(torch.from_numpy(p).clamp(1e-7, 1 - 1e-7), t,
                                                           weight=torch.from_numpy(weight), reduction="sum"))
        pred, truth = p > 0.5, label > 0
        wrong += int((pred != truth).sum())
        inter, union = inter + int((pred & truth).sum()), union + int((pred | truth).sum())
        inter0, union0 = inter0 + int((~pred & ~truth).sum()), union0 + int((~pred | ~truth).sum())
        n += label.size
    return {"loss": losses / n, "pixel_error": wrong / n, "iou": inter / max(union, 1),
            "iou_background": inter0 / max(union0, 1)}, probs


def is_better(metrics: dict[str, float], best: float | None, monitor: str) -> bool:
    if best is None:
        return True
    return metrics[monitor] < best if monitor == "loss" else metrics[monitor] > best


# -- the loop ----------------------------------------------------------------------------------------------------

def train(cfg: TrainConfig, images: Sequence[np.ndarray], labels: Sequence[np.ndarray],
          val_images: Sequence[np.ndarray], val_labels: Sequence[np.ndarray], run_dir: Path | str,
          resume: Path | str | None = None, augment=None) -> dict[str, Any]:
    """Train on (images, labels), validate on (val_images, val_labels), write the run directory.

    Under ``torchrun`` every process calls this with the same arguments and trains data-parallel (see the module
    docstring); all processes return the same summary.

    Args:
        cfg: the run's configuration.
        images, labels: training slices, (H, W) or (H, W, C) uint8 images and (H, W) {0, 1} labels.
        val_images, val_labels: held-out slices, predicted whole after each epoch.
        run_dir: output directory (created).
        resume: a ``last.pt`` to continue from; its model settings must equal `cfg`'s. Every process reads it.
        augment: the augmentation callable `(image, mask, weight, seed) -> (image, mask, weight)`, used when
            ``cfg.augment`` is true (default: `unet_repro.augment.paper_augmentation()`).

    Returns:
        A summary: the best epoch and its validation metrics, the stop reason, optimizer steps, tiles/s (of all
        processes, last epoch), the number of processes and the effective batch (tiles per optimizer step).
    """
    if cfg.accumulate < 1 or cfg.batch_size < 1 or cfg.steps_per_epoch < 1:
        raise ValueError("accumulate, batch_size and steps_per_epoch must be >= 1")
    if cfg.monitor not in ("loss", "iou"):
        raise ValueError(f"monitor must be 'loss' or 'iou', got {cfg.monitor!r}")
    dist = Distributed.from_env()
    device = process_device(resolve_device(cfg.device), dist)
    with process_group(dist, device):
        return _train(cfg, images, labels, val_images, val_labels, Path(run_dir), resume, augment, dist, device)


def _train(cfg: TrainConfig, images: Sequence[np.ndarray], labels: Sequence[np.ndarray],
           val_images: Sequence[np.ndarray], val_labels: Sequence[np.ndarray], run_dir: Path,
           resume: Path | str | None, augment, dist: Distributed, device: torch.device) -> dict[str, Any]:
    """The body of `train`, run by each process (`dist`) on its `device` once the process group is joined."""
    main = dist.is_main
    cuda = device.type == "cuda"
    if cuda:
        torch.backends.cudnn.benchmark = cfg.cudnn_benchmark

    seed_everything(process_seed(cfg.seed, dist.rank))
    model = make_model(cfg)
    optimizer = make_optimizer(cfg, model)
    scheduler = make_scheduler(cfg, optimizer)
    start_epoch, step, best, best_epoch, bad_epochs = 0, 0, None, -1, 0
    if resume is not None:
        ckpt = load_checkpoint(resume)
        check_same_model(ckpt["config"], cfg, resume)
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        start_epoch, step = ckpt["epoch"] + 1, ckpt["step"]
        best, best_epoch, bad_epochs = ckpt["best"], ckpt["best_epoch"], ckpt["bad_epochs"]
        restore_rng(ckpt, dist, cfg.seed)
    model.to(device)
    if cuda and cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    if cuda:  # optimizer state follows the parameters' device
        optimizer.load_state_dict(optimizer.state_dict())
    module = model  # the network itself: validated and saved
    if dist.enabled:
        model = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if cuda else None)

    if cfg.augment and augment is None:
        from .augment import paper_augmentation
        augment = paper_augmentation()
    tile_out = output_tile(module, cfg.tile)
    samples_per_epoch = cfg.steps_per_epoch * cfg.batch_size * dist.world_size
    dataset = TileDataset(images, labels, tile_in=cfg.tile, tile_out=tile_out, samples_per_epoch=samples_per_epoch,
                          augment=augment if cfg.augment else None, w0=cfg.w0, sigma=cfg.sigma, seed=cfg.seed)
    sampler = EpochSampler(samples_per_epoch, dist.rank, dist.world_size)
    loader = make_loader(dataset, sampler, cfg, pin_memory=cuda)
    loss_fn = build_loss(cfg.loss)
    tiles_per_step = effective_batch(cfg, dist)
    metrics_path = run_dir / "metrics.csv"
    if main:
        val_weights = [border_weight_map(lab, w0=cfg.w0, sigma=cfg.sigma) for lab in val_labels]
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.json").write_text(json.dumps(
            {**asdict(cfg), "world_size": dist.world_size, "effective_batch": tiles_per_step}, indent=2))
        if resume is None:
            metrics_path.unlink(missing_ok=True)
        else:
            _truncate_metrics(metrics_path, start_epoch)
        print(f"training on {dist.world_size} process(es), {device}: effective batch {tiles_per_step} tiles per "
              f"optimizer step ({cfg.batch_size} per pass x {cfg.accumulate} passes x {dist.world_size} process(es))")

    stop_reason, summary_rate = "epochs", 0.0
    epochs = tqdm(range(start_epoch, cfg.epochs), desc="epochs", initial=start_epoch, total=cfg.epochs,
                  disable=not main)
    for epoch in epochs:
        sampler.set_epoch(epoch)
        model.train()
        t0, running, seen = time.perf_counter(), 0.0, 0
        # tqdm.auto iterates what it wraps once when made and again when iterated. Persistent workers get the epoch's
        # iterator, so that they do not prepare its first tiles twice; without workers the loader itself, as always
        # (its two iterations draw from the global generator: earlier runs' dropout masks depend on them).
        batches = iter(loader) if loader.persistent_workers else loader
        bar = tqdm(batches, total=len(loader), desc=f"epoch {epoch}", leave=False, disable=not main)
        optimizer.zero_grad(set_to_none=True)
        for i, batch in enumerate(bar):
            # The group this pass belongs to; the last group of an epoch may be shorter and is scaled by its own
            # size, so that k accumulated passes give the same update as one batch of k.
            group = min(cfg.accumulate, cfg.steps_per_epoch - (i // cfg.accumulate) * cfg.accumulate)
            steps = (i + 1) % cfg.accumulate == 0 or i + 1 == cfg.steps_per_epoch
            x, y, w = (batch[k].to(device, non_blocking=True) for k in ("image", "label", "weight"))
            if cuda and cfg.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with gradient_sync(model, steps):
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda and cfg.bf16):
                    logits = model(x)
                loss = loss_fn(logits.float(), y, w)
                if not all_finite(loss, dist):
                    value = f"{loss.item()}" if not dist.enabled else f"non-finite ({loss.item()} on rank {dist.rank})"
                    raise DivergedError(f"training loss became {value} at epoch {epoch}, pass {i} (optimizer "
                                        f"step {step}); stopped. The last good checkpoint is {run_dir / 'last.pt'}"
                                        + (" (none written yet)" if not (run_dir / "last.pt").exists() else "")
                                        + "; lower --lr or check the data")
                (loss / group).backward()
            running, seen = running + loss.item() * len(x), seen + len(x)
            if steps:
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                step += 1
            bar.set_postfix(loss=f"{running / seen:.4f}")
        train_time = time.perf_counter() - t0
        running, seen = sum_over_processes([running, seen], dist, device)
        summary_rate = seen / train_time
        if main:
            val, _ = evaluate(module, val_images, val_labels, val_weights, device=device)
            row = {"epoch": epoch, "step": step, "train_loss": running / seen, "val_loss": val["loss"],
                   "val_pixel_error": val["pixel_error"], "val_iou": val["iou"],
                   "val_iou_background": val["iou_background"], "lr": optimizer.param_groups[0]["lr"],
                   "tiles_per_s": summary_rate, "epoch_s": time.perf_counter() - t0}
            _append_metrics(metrics_path, row)
            improved = is_better(val, best, cfg.monitor)
            if improved:
                best, best_epoch, bad_epochs = val[cfg.monitor], epoch, 0
            else:
                bad_epochs += 1
        rng_states = gather_rng_states(dist)  # the other processes wait here while rank 0 validates
        if main:
            state = {"model": module.state_dict(), "optimizer": optimizer.state_dict(),
                     "scheduler": scheduler.state_dict(), "epoch": epoch, "step": step, "best": best,
                     "best_epoch": best_epoch, "bad_epochs": bad_epochs, "metrics": val, "rng": rng_states[0],
                     "config": asdict(cfg)}
            if dist.enabled:
                state["rng_ranks"] = rng_states
            save_checkpoint(run_dir / "last.pt", state)
            if improved:
                save_checkpoint(run_dir / "best.pt", state)
            epochs.set_postfix(train=f"{row['train_loss']:.4f}", val=f"{val['loss']:.4f}", iou=f"{val['iou']:.3f}")
            if cfg.patience and bad_epochs >= cfg.patience:
                stop_reason = f"early stopping: no improvement of validation {cfg.monitor} for {cfg.patience} epochs"
        stop_reason = broadcast(stop_reason, dist)  # rank 0 decides for all
        if stop_reason != "epochs":
            break
    summary = None
    if main:
        plot_curves(metrics_path, run_dir / "curves.png")
        best_metrics = load_checkpoint(run_dir / "best.pt")["metrics"] if (run_dir / "best.pt").exists() else {}
        summary = {"best_epoch": best_epoch, "best": best_metrics, "stop_reason": stop_reason,
                   "optimizer_steps": step, "tiles_per_s": summary_rate, "world_size": dist.world_size,
                   "effective_batch": tiles_per_step}
    return broadcast(summary, dist)


def _append_metrics(path: Path, row: dict[str, Any]) -> None:
    new = not path.exists()
    with open(path, "a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(row))
        if new:
            writer.writeheader()
        writer.writerow(row)


def _truncate_metrics(path: Path, start_epoch: int) -> None:
    """Drop rows of epochs after the resumed checkpoint (a crash may have logged an epoch it never saved)."""
    if not path.exists():
        return
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    with open(path, "w", newline="") as f:
        if rows:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(r for r in rows if int(r["epoch"]) < start_epoch)


def read_metrics(path: Path | str) -> list[dict[str, float]]:
    with open(path, newline="") as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


def plot_curves(metrics_path: Path, out: Path) -> None:
    """Training and validation loss per epoch, and validation IoU, as a PNG."""
    if not metrics_path.exists():
        return
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_metrics(metrics_path)
    epochs = [r["epoch"] for r in rows]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    ax1.plot(epochs, [r["train_loss"] for r in rows], "o-", label="train (weighted BCE, augmented tiles)")
    ax1.plot(epochs, [r["val_loss"] for r in rows], "o-", label="validation (weighted BCE, whole slices)")
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("loss")
    ax1.legend()
    ax2.plot(epochs, [r["val_iou"] for r in rows], "o-", label="IoU (foreground)")
    ax2.plot(epochs, [r["val_pixel_error"] for r in rows], "o-", label="pixel error")
    ax2.set_xlabel("epoch")
    ax2.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
