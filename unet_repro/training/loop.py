"""Training as in the paper, in one readable loop, and the small hooks it is built from.

`train` runs epochs of ``steps_per_epoch`` forward passes of ``batch_size`` tiles each (the paper: one 572x572
tile), accumulates gradients over ``accumulate`` passes before each optimizer step (SGD, momentum 0.99 by default),
validates on held-out images with overlap-tile prediction and the run's own loss after every epoch, keeps
``best.pt`` and ``last.pt``, stops early after ``patience`` epochs without improvement, and stops at once on a
non-finite loss. Each choice has one obvious place to change it: `build_model`, `build_optimizer`,
`build_scheduler`, `build_train_dataset`, `build_train_loader`, `evaluate`.

A run folder holds ``config.json``, ``metrics.csv`` (one row per epoch), ``train.log``, ``last.pt``, ``best.pt`` and
``curves.png``. A checkpoint carries everything a resumed run needs to continue exactly as if it had never stopped;
the two checkpoints are written best first, then last, so that a kill between them costs a repeated epoch, never a
stale ``best.pt``.

Data-parallel training under ``torchrun``: see `unet_repro.training.distributed`. An epoch holds
``steps_per_epoch * batch_size * W`` samples, so every process still makes ``steps_per_epoch`` passes and the epoch
(and the learning-rate schedule) keeps its number of optimizer steps; DDP averages the gradients, so each step
equals one process's step over all W processes' tiles.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

from ..data.tiles import EpochSampler, TileDataset
from ..errors import ConfigMismatchError, DivergedError
from ..inference import predict_tiled
from ..losses import build_loss, uses_weight_map
from ..metrics.segmentation import pooled_scores
from ..models import build_model as build_network
from ..weightmap import border_weight_map
from .checkpoint import (check_same_model, config_differences, load_checkpoint, resume_point, save_checkpoint,
                         seed_everything)
from .config import MODEL_KEYS, RESUMABLE_KEYS, TrainConfig, validate_config
from .distributed import (Distributed, all_finite, broadcast, effective_batch, gather_rng_states, gradient_sync,
                          process_device, process_group, process_seed, restore_rng, sum_over_processes)
from .hardware import autocast_bf16, precision_name, resolve_device
from .log import RunLog, append_metrics, plot_curves, progress, truncate_metrics
from .run_dir import claim_run_dir

Augment = Callable[..., tuple[np.ndarray, np.ndarray, np.ndarray]]


# -- hooks: one obvious place for each choice -------------------------------------------------------------------

def build_model(cfg: TrainConfig) -> nn.Module:
    """The network of `cfg`. Weights are drawn from their own seeded generator, so the model is the same whatever
    ran before."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        return build_network(cfg.model, **cfg.model_options())


def build_optimizer(cfg: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    return torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)


def optimizer_steps_per_epoch(cfg: TrainConfig) -> int:
    return math.ceil(cfg.steps_per_epoch / cfg.accumulate)


def lr_factor(cfg: TrainConfig, step: int) -> float:
    """The learning rate of optimizer step `step` as a fraction of ``cfg.lr``: 1 (constant), or a cosine from 1 to 0
    over all ``epochs * optimizer_steps_per_epoch`` steps (Loshchilov & Hutter 2017, no restarts)."""
    if cfg.schedule == "constant":
        return 1.0
    total = max(1, cfg.epochs * optimizer_steps_per_epoch(cfg))
    return 0.5 * (1.0 + math.cos(math.pi * min(step, total) / total))


def build_scheduler(cfg: TrainConfig, optimizer: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LambdaLR:
    # A closed form of the step (not a recursion over past rates), so that a resumed run with another --lr or
    # --epochs follows the schedule those define from where it resumes.
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(cfg, step))


def output_tile(model: nn.Module, tile: int) -> int:
    """The label tile side for input tiles of side `tile` (the same side for size-preserving models)."""
    return model.output_size(tile) if hasattr(model, "output_size") else tile


def build_train_dataset(cfg: TrainConfig, images: Sequence[np.ndarray], labels: Sequence[np.ndarray],
                        tile_out: int, samples_per_epoch: int, augment: Augment | None) -> TileDataset:
    return TileDataset(images, labels, tile_in=cfg.tile, tile_out=tile_out, samples_per_epoch=samples_per_epoch,
                       augment=augment if cfg.augment else None, w0=cfg.w0, sigma=cfg.sigma, seed=cfg.seed)


def build_train_loader(dataset: TileDataset, sampler: EpochSampler, cfg: TrainConfig,
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


# -- validation --------------------------------------------------------------------------------------------------

def evaluate(model: nn.Module, images: Sequence[np.ndarray], labels: Sequence[np.ndarray], loss: str = "weighted_bce",
             tile: int | None = None, device: torch.device | None = None, tta: bool = False, w0: float = 10.0,
             sigma: float = 5.0, weights: Sequence[np.ndarray] | None = None,
             show_progress: bool = False) -> tuple[dict[str, float], list[np.ndarray]]:
    """Validation metrics on whole images predicted with overlap-tile prediction.

    Returns ``loss`` (the run's loss `loss` on the whole images, with the border weight map of each label when the
    loss uses one), the pooled ``iou``, ``dice``, ``iou_background`` and ``pixel_error`` of
    `unet_repro.metrics.segmentation.pooled_scores` at threshold 0.5, and the probability maps. ``tile``: output tile
    side of `predict_tiled`. ``tta`` averages each prediction over the 8 symmetries of the square.
    """
    loss_fn = build_loss(loss)
    weighted = uses_weight_map(loss)
    if weighted and weights is None:
        weights = [border_weight_map(lab, w0=w0, sigma=sigma) for lab in labels]
    probs, total, pixels = [], 0.0, 0
    for i, (image, label) in enumerate(progress(list(zip(images, labels)), enabled=show_progress, leave=False,
                                                desc="validation")):
        p = predict_tiled(model, image, tile=tile, device=device, tta=tta)
        probs.append(p)
        logits = torch.logit(torch.from_numpy(p)[None, None], eps=1e-7).double()
        target = torch.from_numpy(label.astype(np.float64))[None, None]
        weight = torch.from_numpy(weights[i].astype(np.float64))[None, None] if weighted else None
        total += float(loss_fn(logits, target, weight)) * label.size  # losses are pixel means: pool by pixels
        pixels += label.size
    return {"loss": total / pixels, **pooled_scores([p > 0.5 for p in probs], [lab > 0 for lab in labels])}, probs


def is_better(metrics: dict[str, float], best: float | None, monitor: str) -> bool:
    if best is None:
        return True
    return metrics[monitor] < best if monitor == "loss" else metrics[monitor] > best


# -- resuming ----------------------------------------------------------------------------------------------------

def resume_changes(saved: dict[str, Any], cfg: TrainConfig, path: Path | str, epoch: int) -> list[dict[str, Any]]:
    """The settings `cfg` changes against the checkpoint's config, as records ``{key, old, new, from_epoch}``.

    The network's settings (`MODEL_KEYS`) cannot change (`ConfigMismatchError`, as `check_same_model`); those of
    `RESUMABLE_KEYS` may; any other change is refused, because the resumed run would no longer continue the run its
    checkpoint belongs to.
    """
    check_same_model(saved, cfg, path)
    others = tuple(f.name for f in fields(TrainConfig) if f.name not in (*MODEL_KEYS, *RESUMABLE_KEYS, "extra"))
    refused = config_differences(saved, cfg, others)
    if refused:
        listed = "; ".join(f"{k}: checkpoint {old!r} vs requested {new!r}" for k, old, new in refused)
        raise ConfigMismatchError(
            f"{path}: these settings cannot change when a run is resumed ({listed}); a resumed run may change only "
            f"{', '.join(RESUMABLE_KEYS)}. Drop the others, or start a new run")
    return [{"key": k, "old": old, "new": new, "from_epoch": epoch}
            for k, old, new in config_differences(saved, cfg, RESUMABLE_KEYS)]


def set_learning_rate(cfg: TrainConfig, optimizer: torch.optim.Optimizer,
                      scheduler: torch.optim.lr_scheduler.LambdaLR) -> None:
    """Make a restored optimizer and scheduler follow ``cfg.lr`` (a resumed run may change it): the restored states
    carry the old rate."""
    scheduler.base_lrs = [cfg.lr] * len(optimizer.param_groups)
    for group in optimizer.param_groups:
        group["initial_lr"] = cfg.lr
        group["lr"] = cfg.lr * lr_factor(cfg, scheduler.last_epoch)


def finished_reason(ckpt: dict[str, Any], cfg: TrainConfig) -> str | None:
    """Why the run of `ckpt` has nothing left to train under `cfg`, or None."""
    if ckpt["epoch"] + 1 >= cfg.epochs:
        return f"all {cfg.epochs} epochs are trained"
    if cfg.patience and ckpt["bad_epochs"] >= cfg.patience:
        return (f"early stopping: no improvement of validation {cfg.monitor} for {ckpt['bad_epochs']} epochs "
                f"(patience {cfg.patience})")
    return None


# -- the loop ----------------------------------------------------------------------------------------------------

def train(cfg: TrainConfig, images: Sequence[np.ndarray], labels: Sequence[np.ndarray],
          val_images: Sequence[np.ndarray], val_labels: Sequence[np.ndarray], run_dir: Path | str,
          resume: Path | str | None = None, augment: Augment | None = None, overwrite: bool = False,
          log: RunLog | None = None) -> dict[str, Any]:
    """Train on (images, labels), validate on (val_images, val_labels), write the run folder.

    Under ``torchrun`` every process calls this with the same arguments and trains data-parallel; all processes
    return the same summary.

    Args:
        cfg: the run's configuration (checked with `validate_config` first).
        images, labels: training images, (H, W) or (H, W, C) uint8, and (H, W) {0, 1} labels.
        val_images, val_labels: held-out images, predicted whole after each epoch.
        run_dir: output folder. A new run refuses a folder holding another run unless `overwrite` (see
            `unet_repro.training.run_dir.claim_run_dir`).
        resume: a ``last.pt`` to continue from. The network's settings must equal `cfg`'s; `cfg` may change only
            `RESUMABLE_KEYS` (applied from the resumed epoch and recorded in ``changes``). A checkpoint with nothing
            left to train returns its summary at once (``trained_epochs`` 0). Every process reads it.
        augment: the augmentation callable `(image, mask, weight, seed) -> (image, mask, weight)`, used when
            ``cfg.augment`` is true (default: `unet_repro.augment.paper_augmentation()`).
        log: where plain progress lines go (default: stdout and ``run_dir/train.log``).

    Returns:
        A summary: the best epoch and its validation metrics, the stop reason, epochs trained now, optimizer steps,
        tiles/s (of all processes, last epoch), the number of processes, the effective batch and the precision.
    """
    validate_config(cfg)
    dist = Distributed.from_env()
    run_dir = Path(run_dir)
    resume = resume_point(resume) if resume is not None else None
    if dist.is_main:
        claim_run_dir(run_dir, Path(resume) if resume is not None else None, overwrite)
    device = process_device(resolve_device(cfg.device), dist)
    log = log or RunLog(run_dir, enabled=dist.is_main)
    with process_group(dist, device):
        return _train(cfg, images, labels, val_images, val_labels, run_dir, resume, augment, dist, device, log)


def _train(cfg: TrainConfig, images: Sequence[np.ndarray], labels: Sequence[np.ndarray],
           val_images: Sequence[np.ndarray], val_labels: Sequence[np.ndarray], run_dir: Path,
           resume: Path | str | None, augment: Augment | None, dist: Distributed, device: torch.device,
           log: RunLog) -> dict[str, Any]:
    """The body of `train`, run by each process (`dist`) on its `device` once the process group is joined."""
    main = dist.is_main
    cuda = device.type == "cuda"
    bf16 = autocast_bf16(cfg.bf16, device)
    if cuda:
        torch.backends.cudnn.benchmark = cfg.cudnn_benchmark

    seed_everything(process_seed(cfg.seed, dist.rank))
    model = build_model(cfg)
    optimizer = build_optimizer(cfg, model)
    scheduler = build_scheduler(cfg, optimizer)
    start_epoch, step, best, best_epoch, bad_epochs, changes, done = 0, 0, None, -1, 0, [], None
    if resume is not None:
        ckpt = load_checkpoint(resume)
        start_epoch = ckpt["epoch"] + 1
        changes = ckpt.get("changes", []) + resume_changes(ckpt["config"], cfg, resume, start_epoch)
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        set_learning_rate(cfg, optimizer, scheduler)
        step, best, best_epoch, bad_epochs = ckpt["step"], ckpt["best"], ckpt["best_epoch"], ckpt["bad_epochs"]
        restore_rng(ckpt, dist, cfg.seed)
        done = finished_reason(ckpt, cfg)
    model.to(device)
    if cuda and cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    if cuda:  # optimizer state follows the parameters' device
        optimizer.load_state_dict(optimizer.state_dict())
    module = model  # the network itself: validated and saved
    if dist.enabled:
        model = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if cuda else None)

    tiles_per_step = effective_batch(cfg, dist)
    metrics_path = run_dir / "metrics.csv"
    def write_config() -> None:
        (run_dir / "config.json").write_text(json.dumps(
            {**asdict(cfg), "world_size": dist.world_size, "effective_batch": tiles_per_step,
             "precision": precision_name(bf16), "changes": changes}, indent=2, default=str))

    if main:
        if resume is None:
            write_config()  # marks the folder as a run's; a resumed run rewrites it with its first checkpoint
        elif Path(resume).name == "best.pt" and Path(resume).resolve().parent == run_dir.resolve():
            # resume_point chose best.pt: the run was killed between the epoch's two writes; finish that epoch's
            # last.pt (the same state) so that the folder is as an uninterrupted run left it
            last = run_dir / "last.pt"
            if not last.exists() or load_checkpoint(last)["epoch"] < ckpt["epoch"]:
                save_checkpoint(last, ckpt)
                write_config()
        if resume is not None:
            truncate_metrics(metrics_path, start_epoch)
        else:
            metrics_path.unlink(missing_ok=True)
        for c in changes:
            if c["from_epoch"] == start_epoch:
                log(f"resumed with {c['key']} changed from {c['old']!r} to {c['new']!r} from epoch {start_epoch}")
    if done is not None:
        log(f"{run_dir}: nothing left to train ({done}); last epoch {start_epoch - 1}")
        return broadcast(_summary(run_dir, cfg, done, best_epoch, step, 0.0, dist, tiles_per_step, bf16, 0), dist)

    if cfg.augment and augment is None:
        from ..augment import paper_augmentation
        augment = paper_augmentation()
    tile_out = output_tile(module, cfg.tile)
    samples_per_epoch = cfg.steps_per_epoch * cfg.batch_size * dist.world_size
    dataset = build_train_dataset(cfg, images, labels, tile_out, samples_per_epoch, augment)
    sampler = EpochSampler(samples_per_epoch, dist.rank, dist.world_size)
    loader = build_train_loader(dataset, sampler, cfg, pin_memory=cuda)
    loss_fn = build_loss(cfg.loss)
    val_weights = None
    if main:
        if uses_weight_map(cfg.loss):
            val_weights = [border_weight_map(lab, w0=cfg.w0, sigma=cfg.sigma) for lab in val_labels]
        log(f"{'resuming at' if resume else 'training from'} epoch {start_epoch} of {cfg.epochs} on "
            f"{dist.world_size} process(es), {device} ({precision_name(bf16)}): {cfg.model}, loss {cfg.loss}, "
            f"{cfg.steps_per_epoch} passes x {cfg.batch_size} tile(s) of {cfg.tile} px per epoch, effective batch "
            f"{tiles_per_step} tiles per optimizer step; run folder {run_dir}")

    stop_reason, summary_rate, trained = "epochs", 0.0, 0
    for epoch in range(start_epoch, cfg.epochs):
        sampler.set_epoch(epoch)
        model.train()
        t0, running, seen = time.perf_counter(), 0.0, 0
        # tqdm iterates what it wraps once when made and again when iterated. Persistent workers get the epoch's
        # iterator, so that they do not prepare its first tiles twice; without workers the loader itself, as always
        # (its two iterations draw from the global generator: earlier runs' dropout masks depend on them).
        batches = iter(loader) if loader.persistent_workers else loader
        bar = progress(batches, enabled=main, total=len(loader), desc=f"epoch {epoch}", leave=False)
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
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                    logits = model(x)
                loss = loss_fn(logits.float(), y, w)
                if not all_finite(loss, dist):
                    value = f"{loss.item()}" if not dist.enabled else f"non-finite ({loss.item()} on rank {dist.rank})"
                    last = run_dir / "last.pt"
                    raise log_error(log, DivergedError(
                        f"training loss became {value} at epoch {epoch}, pass {i} (optimizer step {step}); stopped. "
                        + (f"The last good checkpoint is {last} (epoch {epoch - 1}); resume it with a lower --lr "
                           f"(a resumed run may change --lr)" if last.exists() else
                           "No checkpoint was written yet; start again with a lower --lr")
                        + " or check the data"))
                (loss / group).backward()
            running, seen = running + loss.item() * len(x), seen + len(x)
            if steps:
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                step += 1
            if hasattr(bar, "set_postfix"):
                bar.set_postfix(loss=f"{running / seen:.4f}")
        train_time = time.perf_counter() - t0
        running, seen = sum_over_processes([running, seen], dist, device)
        summary_rate = seen / train_time
        trained += 1
        improved, val, row = False, None, None
        if main:
            val, _ = evaluate(module, val_images, val_labels, loss=cfg.loss, tile=output_tile(module, cfg.tile),
                              device=device, weights=val_weights, show_progress=True)
            row = {"epoch": epoch, "step": step, "train_loss": running / seen, "val_loss": val["loss"],
                   "val_pixel_error": val["pixel_error"], "val_iou": val["iou"],
                   "val_iou_background": val["iou_background"], "lr": optimizer.param_groups[0]["lr"],
                   "tiles_per_s": summary_rate, "epoch_s": time.perf_counter() - t0}
            append_metrics(metrics_path, row)
            improved = is_better(val, best, cfg.monitor)
            if improved:
                best, best_epoch, bad_epochs = val[cfg.monitor], epoch, 0
            else:
                bad_epochs += 1
            if cfg.patience and bad_epochs >= cfg.patience:
                stop_reason = f"early stopping: no improvement of validation {cfg.monitor} for {cfg.patience} epochs"
            elif epoch + 1 == cfg.epochs:
                stop_reason = f"all {cfg.epochs} epochs are trained"
        rng_states = gather_rng_states(dist)  # the other processes wait here while rank 0 validates
        if main:
            finished = stop_reason != "epochs"
            state = {"model": module.state_dict(), "optimizer": optimizer.state_dict(),
                     "scheduler": scheduler.state_dict(), "epoch": epoch, "step": step, "best": best,
                     "best_epoch": best_epoch, "bad_epochs": bad_epochs, "metrics": val, "rng": rng_states[0],
                     "stop_reason": stop_reason if finished else None, "changes": changes, "config": asdict(cfg)}
            if dist.enabled:
                state["rng_ranks"] = rng_states
            # best.pt first: a kill before last.pt is replaced resumes from the previous epoch and redoes this one,
            # which writes the same best.pt again; the other order could leave a best.pt older than last.pt says.
            if improved:
                save_checkpoint(run_dir / "best.pt", state)
            save_checkpoint(run_dir / "last.pt", state)
            write_config()  # the settings last.pt was made with (a resumed run's changes included)
            plot_curves(metrics_path, run_dir / "curves.png", cfg.loss, title=str(run_dir))
            log(f"epoch {epoch} ({epoch + 1} of {cfg.epochs}): train loss {row['train_loss']:.4f}, "
                f"val loss {val['loss']:.4f}, val IoU {val['iou']:.4f}, val pixel error {val['pixel_error']:.4f}, lr {row['lr']:.3g}, "
                f"{summary_rate:.2f} tiles/s, {row['epoch_s']:.0f} s"
                + (", best so far: saved best.pt" if improved else f", no improvement for {bad_epochs} epoch(s)"))
        stop_reason = broadcast(stop_reason, dist)  # rank 0 decides for all
        if stop_reason != "epochs":
            break
    summary = None
    if main:
        log(f"stopped: {stop_reason}; best epoch {best_epoch}")
        summary = _summary(run_dir, cfg, stop_reason, best_epoch, step, summary_rate, dist, tiles_per_step, bf16,
                           trained)
    return broadcast(summary, dist)


def log_error(log: RunLog, error: Exception) -> Exception:
    """Record why the run stopped in train.log (the entry point prints the error), then hand it back to be raised."""
    log.record(f"stopped: {error}")
    return error


def _summary(run_dir: Path, cfg: TrainConfig, stop_reason: str, best_epoch: int, step: int, rate: float,
             dist: Distributed, tiles_per_step: int, bf16: bool, trained: int) -> dict[str, Any] | None:
    if not dist.is_main:
        return None
    plot_curves(run_dir / "metrics.csv", run_dir / "curves.png", cfg.loss, title=str(run_dir))
    best_metrics = load_checkpoint(run_dir / "best.pt")["metrics"] if (run_dir / "best.pt").exists() else {}
    return {"best_epoch": best_epoch, "best": best_metrics, "stop_reason": stop_reason, "trained_epochs": trained,
            "optimizer_steps": step, "tiles_per_s": rate, "world_size": dist.world_size,
            "effective_batch": tiles_per_step, "precision": precision_name(bf16)}


__all__ = ["build_model", "build_optimizer", "build_scheduler", "build_train_dataset", "build_train_loader",
           "evaluate", "finished_reason", "is_better", "lr_factor", "output_tile", "resume_changes",
           "set_learning_rate", "train"]
