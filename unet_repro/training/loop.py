"""Training as in the paper, in one readable loop of named steps.

`train` runs epochs of ``steps_per_epoch`` forward passes of ``batch_size`` tiles each (the paper: one 572x572
tile), accumulating gradients over ``accumulate`` passes before each optimizer step (SGD, momentum 0.99 by default):

1. **set up** (`unet_repro.training.setup.set_up`, shared with the LR range test): the network, optimizer, schedule,
   tiles and loader, and the decisions of device, precision and workers;
2. **restore** (`restore`): a resumed run continues from its checkpoint's state, read once (`Resume`);
3. **one epoch** (`train_epoch`): the passes and optimizer steps, the loss kept on the device and checked for
   NaN/inf every few passes (not every pass: each check waits for the GPU);
4. **end of epoch** (`end_epoch`): validate the whole held-out images with the run's own loss, apply the stop rule
   (`stop_rule`: all epochs trained, or ``patience`` epochs without improvement), keep the best weights, save
   ``last.pt`` and ``best.pt`` when a save is due (every ``checkpoint_every`` seconds, at the end, on an
   interrupt, at a time limit) and write a line to ``train.log``.

The run's state between epochs is one record, `RunState`; it is what ``last.pt`` holds. A first Ctrl-C (or SIGTERM)
finishes the current epoch, saves and stops ("interrupted"); a second stops at once. With a ``deadline`` a run stops
before an epoch that would end after it ("time limit"); both resume with ``--resume`` exactly where they stopped.

Data-parallel training under ``torchrun``: see `unet_repro.training.distributed`. An epoch holds
``steps_per_epoch * batch_size * W`` samples, so every process still makes ``steps_per_epoch`` passes and the epoch
(and the learning-rate schedule) keeps its number of optimizer steps; DDP averages the gradients, so each step
equals one process's step over all W processes' tiles.
"""
from __future__ import annotations

import contextlib
import json
import signal
import statistics
import threading
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from torch import nn

from ..errors import ConfigError, DivergedError
from ..files import write_text
from ..geometry import training_tile
from ..progress import duration, progress
from ..report import plot_curves
from .checkpoint import save_checkpoint, seed_everything
from .config import TrainConfig, validate_config
from .distributed import (Distributed, all_finite, broadcast, effective_batch, gather_rng_states, gradient_sync,
                          process_device, process_group, process_seed, restore_rng, sum_over_processes)
from .hardware import resolve_device
from .init_from import StartingWeights
from .log import MetricsFile, RunLog
from .resume import Resume, stop_rule
from .run_dir import claim_run_dir
from .setup import Augment, Setup, lr_factor, move_optimizer_state, set_up
from .validate import evaluate, is_better

#: Passes between checks of the loss for NaN/inf (each check waits for the GPU to catch up).
CHECK_EVERY = 16


@dataclass
class RunState:
    """Where a run stands between epochs; ``last.pt`` holds it (with the network, optimizer and schedule)."""

    epoch: int = 0  # the next epoch to train
    step: int = 0  # optimizer steps taken
    best: float | None = None  # the best validation value of the monitored metric so far
    best_epoch: int = -1
    bad_epochs: int = 0  # epochs since the last improvement
    metrics: dict[str, float] | None = None  # the last epoch's validation
    best_metrics: dict[str, float] | None = None
    best_model: dict[str, torch.Tensor] | None = None  # a CPU copy of the best epoch's weights
    changes: list[dict[str, Any]] = field(default_factory=list)
    stop_reason: str | None = None
    tiles_per_s: float = 0.0  # of the last epoch, all processes together


@dataclass
class Run:
    """A run in progress: its settings, folder and set-up, where its lines go, and its bookkeeping of saves."""

    cfg: TrainConfig
    run_dir: Path
    dist: Distributed
    setup: Setup
    log: RunLog
    metrics: MetricsFile | None  # rank 0 only
    net: nn.Module  # the network as trained (DDP-wrapped under torchrun); setup.model is the network itself
    samples_per_epoch: int
    deadline: float | None = None  # time.monotonic() by which the run must have stopped
    reserve_validations: float = 0.0  # validations' worth of time kept before the deadline (final scoring)
    validation_seconds: float = 0.0  # of the last validation
    last_save: float = field(default_factory=time.monotonic)
    best_saved_epoch: int | None = None  # the epoch of the best.pt this process wrote
    unsaved: bool = False  # epochs trained since the last save
    epoch_seconds: list[float] = field(default_factory=list)
    interrupted: threading.Event = field(default_factory=threading.Event)


# -- the loop ----------------------------------------------------------------------------------------------------

def train(cfg: TrainConfig, images: Sequence[np.ndarray], labels: Sequence[np.ndarray],
          val_images: Sequence[np.ndarray], val_labels: Sequence[np.ndarray], run_dir: Path | str,
          resume: Resume | Path | str | None = None, augment: Augment | None = None, overwrite: bool = False,
          log: RunLog | None = None, deadline: float | None = None,
          reserve_validations: float = 0.0, init: StartingWeights | None = None) -> dict[str, Any]:
    """Train on (images, labels), validate on (val_images, val_labels), write the run folder.

    Under ``torchrun`` every process calls this with the same arguments and trains data-parallel; all processes
    return the same summary.

    Args:
        cfg: the run's configuration (checked with `validate_config` first); ``tile`` None applies the tile rule
            to the training images (`unet_repro.geometry.training_tile`).
        images, labels: training images, (H, W) or (H, W, C), and (H, W) {0, 1} labels.
        val_images, val_labels: held-out images, predicted whole after each epoch.
        run_dir: output folder. A new run refuses a folder holding another run unless `overwrite` (see
            `unet_repro.training.run_dir.claim_run_dir`).
        resume: a `Resume` (or the path of a ``last.pt``) to continue from. The network's settings must equal
            `cfg`'s; `cfg` may change only `RESUMABLE_KEYS` (applied from the resumed epoch and recorded in
            ``changes``). A checkpoint with nothing left to train returns its summary at once (``trained_epochs``
            0). Into another folder than its own, the resumed run writes its own ``best.pt`` and ``last.pt`` there.
        augment: the augmentation callable `(image, mask, weight, seed) -> (image, mask, weight)`, used when
            ``cfg.augment`` is true (default: `unet_repro.augment.paper_augmentation()`).
        log: where plain progress lines go (default: stdout and ``run_dir/train.log``).
        deadline: a ``time.monotonic()`` value: the run stops before an epoch that would end after it ("time
            limit"), saved and resumable, keeping `reserve_validations` times a validation's duration in hand (for
            the final scoring that follows).
        init: weights a new run starts from (fine-tuning, `unet_repro.training.init_from`); not with `resume`.

    Returns:
        A summary: the best epoch and its validation metrics, the stop reason, epochs trained now, optimizer steps,
        tiles/s (of all processes, last epoch), tiles seen in all, the number of processes, the effective batch,
        the precision and the data-loading processes.
    """
    if cfg.tile is None:
        cfg = decide_tile(cfg, images)
    validate_config(cfg)
    dist = Distributed.from_env()
    run_dir = Path(run_dir)
    if resume is not None and not isinstance(resume, Resume):
        resume = Resume.load(resume)
    changes = resume.changes(cfg) if resume is not None else []
    if dist.is_main:
        claim_run_dir(run_dir, resume.path if resume is not None else None, overwrite)
    device = process_device(resolve_device(cfg.device), dist)
    log = log or RunLog(run_dir, enabled=dist.is_main)
    with process_group(dist, device):
        seed_everything(process_seed(cfg.seed, dist.rank))
        samples = cfg.steps_per_epoch * cfg.batch_size * dist.world_size
        setup = set_up(cfg, images, labels, device, samples, dist.rank, dist.world_size, augment)
        if init is not None and resume is None:
            init.apply(setup.model)
        state = restore(setup, resume, dist, changes) if resume is not None else RunState()
        net = setup.model
        if dist.enabled:
            net = nn.parallel.DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None)
        run = Run(cfg, run_dir, dist, setup, log, MetricsFile(run_dir / "metrics.csv", state.epoch)
                  if dist.is_main else None, net, samples, deadline, reserve_validations)
        try:
            return train_epochs(run, state, val_images, val_labels, resumed=resume is not None)
        finally:
            # The DDP wrapper must be gone before the group is left: freed afterwards (when this frame ends), its
            # reducer destroys the group while holding the GIL, which can deadlock with gloo's worker thread
            # (pytorch/pytorch#56297; seen as a rank hanging after a finished run).
            del run, net


def decide_tile(cfg: TrainConfig, images: Sequence[np.ndarray]) -> TrainConfig:
    """`cfg` with the tile rule applied to the training images (the largest of their sides decides)."""
    shape = max((im.shape for im in images), key=lambda s: max(s[:2]))
    try:
        return replace(cfg, tile=training_tile(cfg.geometry(), shape).input)
    except (ValueError, KeyError) as e:
        raise ConfigError("tile", f"cannot be chosen for this network: {e}", "pass --tile") from None


def train_epochs(run: Run, state: RunState, val_images: Sequence[np.ndarray], val_labels: Sequence[np.ndarray],
                 resumed: bool) -> dict[str, Any]:
    """Epochs from ``state.epoch`` until the stop rule, a time limit or an interrupt says stop; the summary."""
    cfg, main, trained = run.cfg, run.dist.is_main, 0
    if main:
        write_config(run, state)
        announce(run, state, resumed)
    if state.stop_reason is not None:  # nothing left to train
        # best.pt again from last.pt's state: a run killed between its last two writes has an older one, and a
        # finished run resumed into a new folder has none
        save(run, state, final=True)
        return broadcast(summary(run, state, trained) if main else None, run.dist)
    with interrupts_finish_the_epoch(run):
        for epoch in range(state.epoch, cfg.epochs):
            if would_overrun(run):
                state.stop_reason = "time limit"
                break
            t0 = time.monotonic()
            train_loss, seen, seconds = train_epoch(run, state, epoch)
            end_epoch(run, state, epoch, train_loss, seen, seconds, val_images, val_labels)
            run.epoch_seconds.append(time.monotonic() - t0)
            trained += 1
            if state.stop_reason is not None:
                break
    if state.stop_reason == "time limit":
        if run.unsaved:
            save(run, state, final=True)
        if main:
            run.log(f"stopped: time limit (the next epoch, about {duration(expected_epoch_seconds(run))}, would end "
                    f"after it); resume with --resume {run.run_dir / 'last.pt'}")
    return broadcast(summary(run, state, trained) if main else None, run.dist)


def restore(setup: Setup, resume: Resume, dist: Distributed, changes: list[dict[str, Any]]) -> RunState:
    """Continue from a checkpoint: the network, optimizer and schedule (at ``cfg.lr``, which a resume may change),
    the generators, and the run's state."""
    ckpt, cfg = resume.state, setup.cfg
    model = setup.model
    model.load_state_dict(ckpt["model"])
    setup.optimizer.load_state_dict(ckpt["optimizer"])
    setup.scheduler.load_state_dict(ckpt["scheduler"])
    set_learning_rate(cfg, setup.optimizer, setup.scheduler)
    if setup.device.type == "cuda":
        move_optimizer_state(setup.optimizer)
    restore_rng(ckpt, dist, cfg.seed)
    epoch = int(ckpt["epoch"])
    best_model = ckpt.get("best_model")
    if best_model is None and ckpt.get("best_epoch") == epoch:
        best_model = ckpt["model"]
    state = RunState(epoch=epoch + 1, step=int(ckpt["step"]), best=ckpt["best"], best_epoch=int(ckpt["best_epoch"]),
                     bad_epochs=int(ckpt["bad_epochs"]), metrics=ckpt.get("metrics"),
                     best_metrics=ckpt.get("best_metrics", ckpt.get("metrics") if best_model is not None else None),
                     best_model=best_model, changes=changes)
    state.stop_reason = stop_rule(cfg, epoch, state.bad_epochs)
    return state


def set_learning_rate(cfg: TrainConfig, optimizer: torch.optim.Optimizer,
                      scheduler: torch.optim.lr_scheduler.LambdaLR) -> None:
    """Make a restored optimizer and scheduler follow ``cfg.lr`` (a resumed run may change it): the restored states
    carry the old rate."""
    scheduler.base_lrs = [cfg.lr] * len(optimizer.param_groups)
    for group in optimizer.param_groups:
        group["initial_lr"] = cfg.lr
        group["lr"] = cfg.lr * lr_factor(cfg, scheduler.last_epoch)


def train_epoch(run: Run, state: RunState, epoch: int) -> tuple[float, int, float]:
    """The passes and optimizer steps of one epoch; (mean training loss, tiles seen by all processes, seconds)."""
    cfg, s, dist = run.cfg, run.setup, run.dist
    s.sampler.set_epoch(epoch)
    run.net.train()
    t0 = time.perf_counter()
    # Persistent workers get the epoch's iterator, so that they do not prepare its first tiles twice (the bar
    # iterates what it wraps once when made); without workers the loader itself, as always.
    batches = iter(s.loader) if s.loader.persistent_workers else s.loader
    bar = progress(batches, desc=f"epoch {epoch}", total=len(s.loader), enabled=dist.is_main)
    running = torch.zeros((), dtype=torch.float64, device=s.device)  # sum of loss x tiles, kept on the device
    window = torch.zeros((), dtype=torch.float64, device=s.device)  # losses since the last finiteness check
    seen = 0
    s.optimizer.zero_grad(set_to_none=True)
    for i, batch in enumerate(bar):
        # The group this pass belongs to; the last group of an epoch may be shorter and is scaled by its own size,
        # so that k accumulated passes give the same update as one batch of k.
        group = min(cfg.accumulate, cfg.steps_per_epoch - (i // cfg.accumulate) * cfg.accumulate)
        steps = (i + 1) % cfg.accumulate == 0 or i + 1 == cfg.steps_per_epoch
        loss, tiles = forward_backward(s, run.net, batch, group, steps)
        running += loss.detach().double() * tiles
        window += loss.detach().double()
        seen += tiles
        if steps:
            s.optimizer.step()
            s.scheduler.step()
            s.optimizer.zero_grad(set_to_none=True)
            state.step += 1
        if (i + 1) % CHECK_EVERY == 0 or i + 1 == cfg.steps_per_epoch:
            check_finite(run, window, epoch, i, state.step)
            window.zero_()
            if hasattr(bar, "set_postfix"):
                bar.set_postfix(loss=f"{running.item() / seen:.4f}")
    seconds = time.perf_counter() - t0
    total, seen = sum_over_processes([running.item(), seen], dist, s.device)
    return total / seen, int(seen), seconds


def forward_backward(s: Setup, net: nn.Module, batch: dict[str, torch.Tensor], group: int,
                     steps: bool) -> tuple[torch.Tensor, int]:
    """One forward and backward pass of a batch through `net` (the set-up's network, or its DDP wrapper), the loss
    scaled by its accumulation group's size; gradients of passes that do not step stay local under DDP."""
    x, y = batch["image"].to(s.device, non_blocking=True), batch["label"].to(s.device, non_blocking=True)
    w = batch["weight"].to(s.device, non_blocking=True) if "weight" in batch else None
    if s.device.type == "cuda" and s.cfg.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with gradient_sync(net, steps):
        with torch.autocast(s.device.type, dtype=torch.bfloat16, enabled=s.precision.train_bf16):
            logits = net(x)
        loss = s.loss_fn(logits.float(), y, w)
        (loss / group).backward()
    return loss, len(x)


def check_finite(run: Run, window: torch.Tensor, epoch: int, i: int, step: int) -> None:
    """`DivergedError` if a loss since the last check was NaN or infinite (on any process)."""
    if all_finite(window, run.dist):
        return
    last = run.run_dir / "last.pt"
    first = i - i % CHECK_EVERY
    value = window.item()
    if run.dist.enabled:
        value = f"non-finite ({value} on rank {run.dist.rank})" if not np.isfinite(value) else \
            "non-finite (on another process)"
    raise log_error(run.log, DivergedError(
        f"training loss became {value} at epoch {epoch}, in " + (f"pass {i}" if first == i else f"passes {first}-{i}")
        + f" (optimizer step {step}); "
        f"stopped. " + (f"The last good checkpoint is {last}; resume it with a lower --lr (a resumed run may change "
                        f"--lr)" if last.exists() else "No checkpoint was written yet; start again with a lower --lr")
        + " or check the data"))


def end_epoch(run: Run, state: RunState, epoch: int, train_loss: float, seen: int, seconds: float,
              val_images: Sequence[np.ndarray], val_labels: Sequence[np.ndarray]) -> None:
    """Validate (rank 0), apply the stop rule, keep the best weights, save when due, log the epoch."""
    cfg, main = run.cfg, run.dist.is_main
    state.tiles_per_s = seen / seconds
    improved, due = False, False
    if main:
        s = run.setup
        t0 = time.monotonic()
        val, _ = evaluate(s.model, val_images, val_labels, loss=cfg.loss, tile=s.tile, device=s.device,
                          autocast=s.precision.eval_bf16, w0=cfg.w0, sigma=cfg.sigma, show_progress=True,
                          kind=cfg.mask_kind)
        run.validation_seconds = time.monotonic() - t0
        state.epoch, state.metrics = epoch + 1, val
        run.metrics.append({"epoch": epoch, "step": state.step, "train_loss": train_loss, "val_loss": val["loss"],
                            "val_pixel_error": val["pixel_error"], "val_iou": val["iou"],
                            "val_iou_background": val["iou_background"], "lr": s.optimizer.param_groups[0]["lr"],
                            "tiles_per_s": state.tiles_per_s, "epoch_s": seconds})
        improved = is_better(val, state.best, cfg.monitor)
        if improved:
            state.best, state.best_epoch, state.bad_epochs, state.best_metrics = val[cfg.monitor], epoch, 0, val
            state.best_model = {k: v.detach().to("cpu", copy=True) for k, v in s.model.state_dict().items()}
        else:
            state.bad_epochs += 1
        state.stop_reason = stop_rule(cfg, epoch, state.bad_epochs)
        if state.stop_reason is None and run.interrupted.is_set():
            state.stop_reason = "interrupted"
        due = state.stop_reason is not None or time.monotonic() - run.last_save >= cfg.checkpoint_every
    # rank 0 decides for all; the others wait here while it validates
    state.stop_reason, due = broadcast((state.stop_reason, due), run.dist)
    state.epoch, run.unsaved = epoch + 1, True
    if due:
        save(run, state, final=state.stop_reason is not None)
    if main:
        run.log(f"epoch {epoch} ({epoch + 1} of {cfg.epochs}): train loss {train_loss:.4f}, val loss "
                f"{state.metrics['loss']:.4f}, val IoU {state.metrics['iou']:.4f}, val pixel error "
                f"{state.metrics['pixel_error']:.4f}, lr {run.setup.optimizer.param_groups[0]['lr']:.3g}, "
                f"{state.tiles_per_s:.2f} tiles/s, {seconds:.0f} s"
                + (", best so far" if improved else f", no improvement for {state.bad_epochs} epoch(s)")
                + (", saved" if due else ""))


def save(run: Run, state: RunState, final: bool = False) -> None:
    """Write ``last.pt`` (the whole state), then ``best.pt`` if the best epoch changed since this process last
    wrote it, then ``config.json`` and ``curves.png``. Every process calls this (the generator states are gathered
    from all); rank 0 writes."""
    rng_states = gather_rng_states(run.dist)
    if not run.dist.is_main:
        return
    s, cfg, epoch = run.setup, run.cfg, state.epoch - 1
    config = asdict(cfg)
    last = {"format": 2, "model": s.model.state_dict(), "optimizer": s.optimizer.state_dict(),
            "scheduler": s.scheduler.state_dict(), "epoch": epoch, "step": state.step, "best": state.best,
            "best_epoch": state.best_epoch, "bad_epochs": state.bad_epochs, "metrics": state.metrics,
            "best_metrics": state.best_metrics,
            "best_model": None if state.best_epoch == epoch else state.best_model, "rng": rng_states[0],
            "stop_reason": state.stop_reason if final else None, "changes": state.changes, "config": config}
    if run.dist.enabled:
        last["rng_ranks"] = rng_states
    save_checkpoint(run.run_dir / "last.pt", last)
    if state.best_model is not None and run.best_saved_epoch != state.best_epoch:
        save_checkpoint(run.run_dir / "best.pt", {"kind": "best", "model": state.best_model,
                                                  "epoch": state.best_epoch, "metrics": state.best_metrics,
                                                  "config": config})
        run.best_saved_epoch = state.best_epoch
    write_config(run, state)
    plot_curves(run.metrics.rows, run.run_dir / "curves.png", cfg.loss, title=str(run.run_dir))
    run.last_save, run.unsaved = time.monotonic(), False


def write_config(run: Run, state: RunState) -> None:
    """``config.json``: the settings ``last.pt`` was made with (a resumed run's changes included) and the
    decisions they led to on this machine."""
    s = run.setup
    write_text(run.run_dir / "config.json", json.dumps(
        {**asdict(run.cfg), "world_size": run.dist.world_size, "effective_batch": effective_batch(run.cfg, run.dist),
         "precision": s.precision.record(), "workers_used": s.workers, "changes": state.changes},
        indent=2, default=str))


def announce(run: Run, state: RunState, resumed: bool) -> None:
    cfg, s = run.cfg, run.setup
    for c in state.changes:
        if c["from_epoch"] == state.epoch:
            run.log(f"resumed with {c['key']} changed from {c['old']!r} to {c['new']!r} from epoch {state.epoch}")
    if state.stop_reason is not None:
        run.log(f"{run.run_dir}: nothing left to train ({state.stop_reason}); last epoch {state.epoch - 1}")
        return
    workers = f"{s.workers} data worker(s)" + (" (chosen from the machine)" if cfg.workers is None else "")
    run.log(f"{'resuming at' if resumed else 'training from'} epoch {state.epoch} of {cfg.epochs} on "
            f"{run.dist.world_size} process(es), {s.device} ({s.precision.name}, {workers}): {cfg.model}, loss "
            f"{cfg.loss}, {cfg.steps_per_epoch} passes x {cfg.batch_size} tile(s) of {s.tile.input} px per epoch, "
            f"effective batch {effective_batch(cfg, run.dist)} tiles per optimizer step; checkpoints every "
            f"{duration(cfg.checkpoint_every) if cfg.checkpoint_every else 'epoch'}; run folder {run.run_dir}")


def expected_epoch_seconds(run: Run) -> float:
    """What the next epoch (with its validation and a save) should take: the median of this process's epochs."""
    return statistics.median(run.epoch_seconds) if run.epoch_seconds else 0.0


def would_overrun(run: Run) -> bool:
    """Whether the next epoch, and the scoring after it, would end after the run's deadline (rank 0 decides)."""
    if run.deadline is None:
        return False
    needed = expected_epoch_seconds(run) + run.reserve_validations * run.validation_seconds
    late = time.monotonic() + needed > run.deadline
    return bool(broadcast(late, run.dist))


@contextlib.contextmanager
def interrupts_finish_the_epoch(run: Run) -> Iterator[None]:
    """A first Ctrl-C or SIGTERM asks the run to stop after the current epoch (saved); a second one stops at once
    (KeyboardInterrupt), losing the work since the last save. Only the main thread can take signals: elsewhere
    (a run started from a worker thread) interrupts keep their default."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        if run.interrupted.is_set():
            raise KeyboardInterrupt
        run.interrupted.set()
        if run.dist.is_main:
            print(f"\ninterrupt: finishing epoch and saving (about {duration(expected_epoch_seconds(run))}); "
                  f"interrupt again to stop at once, losing the work since the last save", flush=True)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def log_error(log: RunLog, error: Exception) -> Exception:
    """Record why the run stopped in train.log (the entry point prints the error), then hand it back to be raised."""
    log.record(f"stopped: {error}")
    return error


def summary(run: Run, state: RunState, trained: int) -> dict[str, Any]:
    """What `train` returns (rank 0), after a last line in the log."""
    cfg = run.cfg
    if state.stop_reason not in (None, "time limit"):
        run.log(f"stopped: {state.stop_reason}; best epoch {state.best_epoch}")
    return {"best_epoch": state.best_epoch, "best": state.best_metrics or {}, "stop_reason": state.stop_reason,
            "finished": state.stop_reason not in (None, "time limit", "interrupted"),
            "trained_epochs": trained, "epochs_done": state.epoch, "optimizer_steps": state.step,
            "tiles_seen": state.epoch * run.samples_per_epoch, "tiles_per_s": state.tiles_per_s,
            "world_size": run.dist.world_size, "effective_batch": effective_batch(cfg, run.dist),
            "precision": run.setup.precision.record(), "workers": run.setup.workers,
            "train_seconds": sum(run.epoch_seconds)}


__all__ = ["CHECK_EVERY", "RunState", "decide_tile", "restore", "set_learning_rate", "train"]
