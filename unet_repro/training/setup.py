"""Setting up a run, with one obvious place for each choice: the network (`build_network`), the optimizer
(`build_optimizer`), the learning-rate schedule (`build_scheduler`), the training tiles (`build_train_dataset`,
`build_train_loader`) and the loss. `set_up` puts them together for the training loop and the LR range test alike.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from ..data.tiles import EpochSampler, TileDataset
from ..geometry import Tile
from ..losses import build_loss, uses_weight_map
from ..models import build_model
from .config import TrainConfig
from .hardware import Precision, apply_precision, decide_precision, decide_workers

Augment = Callable[..., tuple[np.ndarray, np.ndarray, np.ndarray]]


def build_network(cfg: TrainConfig) -> nn.Module:
    """The network of `cfg`, on the CPU. Its weights are drawn from the CPU generator seeded with ``cfg.seed`` inside
    a fork of it, so the network is the same whatever ran before, and no other generator (CUDA's, which draws
    dropout masks on a GPU) is touched."""
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(cfg.seed)
        return build_model(cfg.model, **cfg.network_options())


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


def build_train_dataset(cfg: TrainConfig, images: Sequence[np.ndarray], labels: Sequence[np.ndarray], tile: Tile,
                        samples_per_epoch: int, augment: Augment | None) -> TileDataset:
    """Random tiles of `tile` with their labels, and weight maps only for a loss that uses them."""
    return TileDataset(images, labels, tile_in=tile.input, tile_out=tile.output, samples_per_epoch=samples_per_epoch,
                       augment=augment if cfg.augment else None, w0=cfg.w0, sigma=cfg.sigma, seed=cfg.seed,
                       weighted=uses_weight_map(cfg.loss), kind=cfg.mask_kind)


def build_train_loader(dataset: TileDataset, sampler: EpochSampler, cfg: TrainConfig, workers: int,
                       pin_memory: bool) -> torch.utils.data.DataLoader:
    """One DataLoader for the whole run: `sampler` yields global sample ids, so ``sampler.set_epoch`` alone moves
    it to the next epoch.

    With workers they persist across epochs (no re-forking, no cold start each epoch) and the loader draws their
    seeds from its own generator: a persistent loader draws them once per run, not once per iteration, and drawing
    from the global generator would shift the dropout masks of a resumed run against an uninterrupted one. The
    tiles never depend on those seeds. Without workers each iteration draws one number from the global generator,
    as it always has, which keeps earlier single-process runs reproducible bit for bit.
    """
    persistent = workers > 0
    return torch.utils.data.DataLoader(dataset, batch_size=cfg.batch_size, sampler=sampler, num_workers=workers,
                                       pin_memory=pin_memory, persistent_workers=persistent,
                                       generator=torch.Generator().manual_seed(cfg.seed) if persistent else None)


@dataclass
class Setup:
    """What a run trains with: the network (on its device, not wrapped), its optimizer and schedule, the tiles and
    the loader, the loss, and the decisions it was made with (device, precision, workers, tile)."""

    cfg: TrainConfig
    device: torch.device
    precision: Precision
    workers: int
    tile: Tile
    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    sampler: EpochSampler
    loader: torch.utils.data.DataLoader
    loss_fn: nn.Module


def set_up(cfg: TrainConfig, images: Sequence[np.ndarray], labels: Sequence[np.ndarray], device: torch.device,
           samples_per_epoch: int, rank: int = 0, world_size: int = 1, augment: Augment | None = None) -> Setup:
    """Build everything a run trains with. The caller has seeded the global generators (dropout masks)."""
    precision = decide_precision(cfg.bf16, device)
    apply_precision(precision, device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = cfg.cudnn_benchmark
    model = build_network(cfg)
    optimizer = build_optimizer(cfg, model)
    scheduler = build_scheduler(cfg, optimizer)
    model.to(device)
    if device.type == "cuda" and cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    if cfg.augment and augment is None:
        from ..augment import paper_augmentation
        augment = paper_augmentation()
    tile = cfg.input_tile()
    workers = decide_workers(cfg.workers, device)
    dataset = build_train_dataset(cfg, images, labels, tile, samples_per_epoch, augment)
    sampler = EpochSampler(samples_per_epoch, rank, world_size)
    loader = build_train_loader(dataset, sampler, cfg, workers, pin_memory=device.type == "cuda")
    return Setup(cfg, device, precision, workers, tile, model, optimizer, scheduler, sampler, loader,
                 build_loss(cfg.loss))


def move_optimizer_state(optimizer: torch.optim.Optimizer) -> None:
    """After restoring an optimizer's state onto a network on a GPU: its state tensors follow the parameters."""
    optimizer.load_state_dict(optimizer.state_dict())


__all__ = ["Setup", "build_network", "build_optimizer", "build_scheduler", "build_train_dataset",
           "build_train_loader", "lr_factor", "move_optimizer_state", "optimizer_steps_per_epoch", "set_up"]
