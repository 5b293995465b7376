"""Smith's learning-rate range test on an experiment's training data, with the model and optimizer of its preset.

    python -m experiments.lr_range_test --experiment isbi --preset quick --iters 60
    python -m experiments.lr_range_test --experiment isbi --preset paper --accumulate 4 --min-lr 1e-5 --max-lr 10
    python -m experiments.lr_range_test --experiment ph2 --preset quick --model segnet

The network, the optimizer (SGD with the preset's momentum, or Adam), the training tiles with the preset's
augmentation and the loss are exactly those of training (`unet_repro.train`); the held-out validation slices are
not used. The learning rate grows exponentially from --min-lr to --max-lr over --iters optimizer steps (each of
--accumulate passes of --batch-size tiles); --lr, --epochs, --steps-per-epoch, --schedule, --patience and --resume
play no part. Writes ``lr_range.csv``, ``lr_range.png`` and ``lr_range.json`` (suggestion, command, config,
commit) to --out (default ``runs/lr_range-<experiment>-<preset>``).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from types import ModuleType
from typing import Callable

import numpy as np
import torch

from unet_repro.data import TileDataset
from unet_repro.losses import build_loss
from unet_repro.lr_finder import SKIP_FRACTION, lr_range_test
from unet_repro.models import MODELS
from unet_repro.train import make_model, make_optimizer, output_tile, resolve_device, seed_everything

from . import isbi, ph2
from .common import (add_training_flags, config_from_args, default_data_root, git_commit, hardware,
                     missing_data_exit)


@dataclass(frozen=True)
class Experiment:
    """What the range test needs of an experiment: its module (PRESETS, EXPECTED), its data folder's name under
    $UNET_REPRO_DATA, its own flags, a check that the data is there and a loader of the training split."""

    module: ModuleType
    presets: dict  # preset name -> TrainConfig fields
    data_name: str
    title: str
    add_flags: Callable[[argparse.ArgumentParser], None]
    has_data: Callable[[Path], bool]
    # (root, args) -> (training images, training labels), the split the experiment trains on
    load_train: Callable[[Path, argparse.Namespace], tuple[list[np.ndarray], list[np.ndarray]]]


# Known experiments; another dataset is one more entry here.
EXPERIMENTS: dict[str, Experiment] = {
    "isbi": Experiment(module=isbi, presets=isbi.PRESETS, data_name="isbi2012", title="ISBI-2012",
                       add_flags=isbi.add_data_flags, has_data=isbi.has_data,
                       load_train=lambda root, args: tuple(isbi.split(root, args)[0])),
    "ph2": Experiment(module=ph2, presets=ph2.TRAIN_PRESETS, data_name="ph2", title="PH2",
                      add_flags=ph2.add_data_flags, has_data=ph2.has_data, load_train=ph2.train_split),
}

IGNORED = ("lr", "epochs", "steps_per_epoch", "schedule", "patience", "resume")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    # The presets (hence --preset's choices) depend on --experiment: read it first.
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--experiment", choices=sorted(EXPERIMENTS), default="isbi",
                     help="which experiment's data and presets (default isbi)")
    known, _ = pre.parse_known_args(argv)
    experiment = EXPERIMENTS[known.experiment]

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     parents=[pre])
    add_training_flags(parser, experiment.presets)
    parser.add_argument("--model", choices=sorted(MODELS), help="network (default: the preset's, else unet)")
    experiment.add_flags(parser)
    test = parser.add_argument_group("range test")
    test.add_argument("--min-lr", type=float, default=1e-6, help="LR of the first step (default 1e-6)")
    test.add_argument("--max-lr", type=float, default=1.0, help="LR of the last step (default 1)")
    test.add_argument("--iters", type=int, default=100, help="optimizer steps at most (default 100)")
    test.add_argument("--beta", type=float, default=0.98, help="loss smoothing factor (default 0.98)")
    test.add_argument("--diverge-factor", type=float, default=4.0,
                      help="stop when the smoothed loss exceeds this multiple of its best (default 4)")
    args = parser.parse_args(argv)
    if not 0 < args.min_lr < args.max_lr:
        parser.error(f"need 0 < --min-lr < --max-lr, got {args.min_lr} and {args.max_lr}")
    if args.iters < 2:
        parser.error("--iters must be >= 2")
    if not 0 <= args.beta < 1:
        parser.error("--beta must be in [0, 1)")
    if args.diverge_factor <= 1:
        parser.error("--diverge-factor must be > 1")
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    experiment = EXPERIMENTS[args.experiment]
    root = args.data_root or default_data_root(experiment.data_name)
    if not experiment.has_data(root):
        missing_data_exit(experiment.title, root, experiment.module.EXPECTED)
    ignored = [f"--{k.replace('_', '-')}" for k in IGNORED if getattr(args, k, None) is not None]
    if ignored:
        print(f"note: {', '.join(ignored)} play no part in the range test; ignored", file=sys.stderr)
    cfg = config_from_args(args, experiment.presets)
    out = args.out or Path("runs") / f"lr_range-{args.experiment}-{args.preset}"
    cfg = replace(cfg, extra={"experiment": args.experiment, "preset": args.preset, "data_root": str(root),
                              **({"val_slices": args.val_slices} if hasattr(args, "val_slices") else {}),
                              "commit": git_commit(), "hardware": hardware()})
    if cfg.accumulate < 1 or cfg.batch_size < 1:
        sys.exit("error: --accumulate and --batch-size must be >= 1")
    images, labels = experiment.load_train(root, args)

    # Set up as `unet_repro.train.train` does.
    device = resolve_device(cfg.device)
    cuda = device.type == "cuda"
    if cuda:
        torch.backends.cudnn.benchmark = cfg.cudnn_benchmark
    seed_everything(cfg.seed)
    model = make_model(cfg)
    optimizer = make_optimizer(cfg, model)
    model.to(device)
    if cuda:
        optimizer.load_state_dict(optimizer.state_dict())
    augment = None
    if cfg.augment:
        from unet_repro.augment import paper_augmentation
        augment = paper_augmentation()
    # One tile per pass of the test: no tile is seen twice (the same tiles as the first epoch of training starts
    # with, for the same seed).
    dataset = TileDataset(images, labels, tile_in=cfg.tile, tile_out=output_tile(model, cfg.tile),
                          samples_per_epoch=args.iters * cfg.accumulate * cfg.batch_size, augment=augment,
                          w0=cfg.w0, sigma=cfg.sigma, seed=cfg.seed)
    loader = torch.utils.data.DataLoader(dataset, batch_size=cfg.batch_size, shuffle=False,
                                         num_workers=cfg.workers, pin_memory=cuda)

    t0 = time.perf_counter()
    result = lr_range_test(model, optimizer, loader, build_loss(cfg.loss), min_lr=args.min_lr,
                           max_lr=args.max_lr, iters=args.iters, accumulate=cfg.accumulate, beta=args.beta,
                           diverge_factor=args.diverge_factor, device=device,
                           autocast_dtype=torch.bfloat16 if cuda and cfg.bf16 else None)
    seconds = time.perf_counter() - t0

    out.mkdir(parents=True, exist_ok=True)
    result.to_csv(out / "lr_range.csv")
    momentum = f", momentum {cfg.momentum}" if cfg.optimizer == "sgd" else ""
    result.plot(out / "lr_range.png",
                title=f"LR range test: {args.experiment} {args.preset} ({cfg.optimizer}{momentum}, "
                      f"{cfg.batch_size}x{cfg.accumulate} tiles/step)"
                      + (", stopped: diverged" if result.stopped_early else ""))
    i_min = int(np.nanargmin(result.smoothed)) if np.isfinite(result.smoothed).any() else None
    summary = {
        "suggested_lr": result.suggested_lr, "min_loss_lr": result.min_loss_lr,
        "min_smoothed_loss": result.smoothed[i_min] if i_min is not None else None,
        "stopped_early": result.stopped_early, "iterations_run": len(result.lrs), "last_lr": result.lrs[-1],
        "suggestion_rule": f"steepest descent of the smoothed loss vs log10(lr), between the first "
                           f"{SKIP_FRACTION:.0%} of the points and the minimum",
        "range_test": {"min_lr": args.min_lr, "max_lr": args.max_lr, "iters": args.iters, "beta": args.beta,
                       "diverge_factor": args.diverge_factor, "accumulate": cfg.accumulate,
                       "batch_size": cfg.batch_size},
        "seconds": round(seconds, 1),
        "command": "python -m experiments.lr_range_test " + " ".join(argv if argv is not None else sys.argv[1:]),
        **cfg.extra, "seed": cfg.seed, "config": asdict(cfg),
    }
    (out / "lr_range.json").write_text(json.dumps(summary, indent=2, default=str))
    print(f"suggested LR (steepest descent): {result.suggested_lr:.3g}; min-loss LR: {result.min_loss_lr:.3g}; "
          f"{len(result.lrs)} of {args.iters} steps"
          + (f", stopped at lr {result.lrs[-1]:.3g} (loss diverged)" if result.stopped_early else "")
          + f"; {seconds:.0f} s; results in {out}")
    return summary


if __name__ == "__main__":
    main()
