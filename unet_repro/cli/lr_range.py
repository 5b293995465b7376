"""Smith's learning-rate range test on a task's training data, with the network and optimizer of its preset.

    python -m experiments.lr_range_test --task isbi --preset quick --iters 100
    python -m experiments.lr_range_test --task isbi --preset paper --accumulate 4 --min-lr 1e-5 --max-lr 10
    python -m experiments.lr_range_test --task ph2 --preset quick --model segnet

The network, the optimizer (SGD with the preset's momentum, or Adam), the training tiles with the preset's
augmentation, the loss and the precision are exactly those of training (`unet_repro.training`); the validation images
are not used. The learning rate grows exponentially from --min-lr to --max-lr over --iters optimizer steps (each of
--accumulate passes of --batch-size tiles). Writes lr_range.csv, lr_range.png and lr_range.json (suggestion, whether
it is reliable, command, config, commit) to --out (default runs/lr_range-<task>-<preset>).
"""
from __future__ import annotations

import argparse
import sys
import time
import warnings
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch

from ..errors import RunFolderError, UsageError
from ..files import write_json
from ..lr_finder import SKIP_FRACTION, UnreliableSuggestionWarning, lr_range_test
from ..provenance import display_path
from ..tasks import TASKS, get_task
from ..training import resolve_device, seed_everything, set_up
from ..training.run_dir import check_run_dir
from .common import Parser, add_data_flags, add_train_flags, configure, data_options, make_parser, run_main

PROG = "python -m experiments.lr_range_test"
# Training flags that play no part in a range test (the LR is swept; nothing is validated or resumed).
NOT_USED = ("lr", "epochs", "steps_per_epoch", "schedule", "patience", "monitor")
OUTPUTS = ("lr_range.csv", "lr_range.png", "lr_range.json")


def build_parser(argv: list[str] | None, prog: str | None = None) -> argparse.ArgumentParser:
    # The presets and data flags (hence the rest of the parser) depend on --task: read it first.
    pre = Parser(prog=prog or PROG, add_help=False)  # one-line errors, as the full parser's
    pre.add_argument("--task", choices=sorted(TASKS), default="isbi",
                     help="whose data and presets (default: isbi)")
    known, _ = pre.parse_known_args(argv)
    task = get_task(known.task)
    parser = make_parser(prog, PROG, __doc__)
    parser.add_argument("--task", choices=sorted(TASKS), default="isbi", help="whose data and presets (default: isbi)")
    add_train_flags(parser, task, skip=NOT_USED)
    add_data_flags(parser, task)
    run = parser.add_argument_group("run")
    run.add_argument("--preset", choices=sorted(task.presets), default=None,
                     help=f"starting configuration (default: {task.default_preset})")
    run.add_argument("--out", type=Path, metavar="DIR", help="output folder (default: runs/lr_range-<task>-<preset>)")
    run.add_argument("--overwrite", action="store_true", help="replace the results of an earlier range test in --out (default: refuse)")
    run.add_argument("--show-config", action="store_true", help="print the effective configuration and exit")
    test = parser.add_argument_group("range test")
    test.add_argument("--min-lr", type=float, default=1e-6, help="LR of the first step (default 1e-6)")
    test.add_argument("--max-lr", type=float, default=1.0, help="LR of the last step (default 1)")
    test.add_argument("--iters", type=int, default=100, help="optimizer steps at most (default 100)")
    test.add_argument("--beta", type=float, default=0.98, help="loss smoothing factor (default 0.98)")
    test.add_argument("--diverge-factor", type=float, default=4.0,
                      help="stop when the smoothed loss exceeds this multiple of its best (default 4)")
    return parser


def check_range_flags(args: argparse.Namespace) -> None:
    if not 0 < args.min_lr < args.max_lr:
        raise UsageError(f"need 0 < --min-lr < --max-lr, got {args.min_lr} and {args.max_lr}")
    if args.iters < 2:
        raise UsageError(f"--iters must be >= 2, got {args.iters}")
    if not 0 <= args.beta < 1:
        raise UsageError(f"--beta must be in [0, 1), got {args.beta}")
    if args.diverge_factor <= 1:
        raise UsageError(f"--diverge-factor must be > 1, got {args.diverge_factor}")


def run(args: argparse.Namespace, prog: str, argv: list[str] | None) -> dict:
    task = get_task(args.task)
    check_range_flags(args)
    args = argparse.Namespace(**{**vars(args), "resume": None})
    done = configure(task, args, prog, argv)
    if done is None:
        return {}
    cfg = done.cfg
    preset = cfg.extra["preset"]
    out = args.out or Path("runs") / f"lr_range-{task.name}-{preset}"
    if any((out / name).exists() for name in OUTPUTS) and not args.overwrite:
        raise RunFolderError(f"{out} already holds a range test ({', '.join(n for n in OUTPUTS if (out / n).exists())});"
                             f" choose another --out or pass --overwrite")
    check_run_dir(out, None, overwrite=True)  # a file in the way of the folder is refused; a run in it is not ours
    splits = task.load(done.root, data_options(args, task))

    # Set up exactly as training does (one tile per pass of the test: the first epoch's tiles, none seen twice).
    device = resolve_device(cfg.device)
    seed_everything(cfg.seed)
    setup = set_up(cfg, splits.train.images, splits.train.labels, device,
                   samples_per_epoch=args.iters * cfg.accumulate * cfg.batch_size)
    setup.sampler.set_epoch(0)
    bf16 = setup.precision.train_bf16

    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnreliableSuggestionWarning)  # printed below as a `warning:` line instead
        result = lr_range_test(setup.model, setup.optimizer, setup.loader, setup.loss_fn, min_lr=args.min_lr,
                               max_lr=args.max_lr, iters=args.iters, accumulate=cfg.accumulate, beta=args.beta,
                               diverge_factor=args.diverge_factor, device=device,
                               autocast_dtype=torch.bfloat16 if bf16 else None)
    seconds = time.perf_counter() - t0

    out.mkdir(parents=True, exist_ok=True)
    result.to_csv(out / "lr_range.csv")
    momentum = f", momentum {cfg.momentum}" if cfg.optimizer == "sgd" else ""
    size = cfg.network_options()  # the network really tested: --widths / --base-width may override the preset's
    width = ("widths " + ",".join(map(str, size["widths"])) if "widths" in size else
             f"base width {size['base_width']}")
    result.plot(out / "lr_range.png",
                title=f"LR range test: {task.name} {preset}, {cfg.model} {width}\n({cfg.optimizer}{momentum}, "
                      f"{cfg.batch_size}x{cfg.accumulate} tiles/step)"
                      + (", stopped: diverged" if result.stopped_early else ""))
    i_min = int(np.nanargmin(result.smoothed)) if np.isfinite(result.smoothed).any() else None
    summary = {
        "suggested_lr": result.suggested_lr, "min_loss_lr": result.min_loss_lr,
        "min_smoothed_loss": result.smoothed[i_min] if i_min is not None else None,
        "reliable": result.reliable, "note": result.note,
        "stopped_early": result.stopped_early, "iterations_run": len(result.lrs), "last_lr": result.lrs[-1],
        "suggestion_rule": f"steepest descent of the smoothed loss vs log10(lr), between the first "
                           f"{SKIP_FRACTION:.0%} of the points and the minimum",
        "range_test": {"min_lr": args.min_lr, "max_lr": args.max_lr, "iters": args.iters, "beta": args.beta,
                       "diverge_factor": args.diverge_factor, "accumulate": cfg.accumulate,
                       "batch_size": cfg.batch_size},
        "precision": setup.precision.record(), "seconds": round(seconds, 1),
        **cfg.extra, "seed": cfg.seed, "config": asdict(cfg),
    }
    write_json(out / "lr_range.json", summary)
    print(f"suggested LR (steepest descent): {result.suggested_lr:.3g}; min-loss LR: {result.min_loss_lr:.3g}; "
          f"{len(result.lrs)} of {args.iters} steps"
          + (f", stopped at lr {result.lrs[-1]:.3g} (loss diverged)" if result.stopped_early else "")
          + f"; {seconds:.0f} s; results in {out}")
    if not result.reliable:
        print(f"warning: the suggested LR {result.suggested_lr:.3g} is unreliable: {result.note}", file=sys.stderr)
    return summary


def main(argv: list[str] | None = None, prog: str | None = None) -> dict:
    parser = build_parser(argv, prog)
    return run_main(lambda: run(parser.parse_args(argv), parser.prog, argv))


__all__ = ["build_parser", "main", "run"]
