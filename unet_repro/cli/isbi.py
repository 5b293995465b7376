"""Train the paper's U-Net on ISBI-2012 EM membranes.

    python -m experiments.isbi --preset quick                  # narrow network, minutes on a CPU
    python -m experiments.isbi --preset paper                  # the paper's network and settings, for a GPU
    python -m experiments.isbi --resume runs/isbi-quick/last.pt --epochs 20

The last --val-slices training slices are held out for validation. At the end the best checkpoint predicts them
with overlap-tile prediction and the run folder gets val_*.png (image | label | P(cell)), heldout_prob.tif and
final_metrics.json.

    python -m experiments.isbi --folds 6 --preset quick --out runs/isbi-cv-quick   # K-fold cross-validation
    python -m experiments.isbi --folds 6 --fold-list 0,3 --tta --predict-test

With --folds K the 30 slices are cut into K contiguous folds; each fold is trained on the others and held out
(RUN/fold_k/), then `experiments.isbi_eval` scores the held-out predictions with the challenge's metrics and writes
RUN/report.md. A killed cross-validation resumes when the same command is run again: finished folds are skipped and
an interrupted fold continues from its last.pt.
"""
from __future__ import annotations

import argparse
import json
from dataclasses import asdict, fields
from pathlib import Path

import numpy as np

from ..errors import RunFolderError, UsageError
from ..tasks import ISBI, Splits
from ..tasks.isbi import load_all
from ..training import RESUMABLE_KEYS, Distributed, TrainConfig, progress
from .common import add_data_flags, add_run_flags, add_train_flags, make_parser, run_main
from .runs import FINISHED, plan_run, train_planned

PROG = "python -m experiments.isbi"


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    parser = make_parser(prog, PROG, __doc__)
    add_train_flags(parser, ISBI)
    add_data_flags(parser, ISBI)
    add_run_flags(parser, ISBI)
    cv = parser.add_argument_group("cross-validation and evaluation")
    cv.add_argument("--folds", type=int, help="K-fold cross-validation over the training slices (e.g. 6)")
    cv.add_argument("--fold-list", type=lambda s: [int(v) for v in s.split(",")], metavar="K,K",
                    help="with --folds: run only these folds, e.g. 0,3 (default: all)")
    cv.add_argument("--tta", action="store_true",
                    help="average the held-out predictions over the 8 symmetries of the square")
    cv.add_argument("--predict-test", action="store_true",
                    help="with --folds: predict test-volume.tif with the folds' models, as a submission TIFF")
    return parser


def fold_slices(n: int, k: int) -> list[list[int]]:
    """K contiguous folds of slice indices 0..n-1, as equal as possible (30 slices, 6 folds: 5 each)."""
    if not 2 <= k <= n:
        raise UsageError(f"--folds must be between 2 and {n} (the number of training slices), got {k}")
    return [a.tolist() for a in np.array_split(np.arange(n), k)]


def run(args: argparse.Namespace, prog: str, argv: list[str] | None) -> dict:
    if args.folds is None:
        if args.fold_list is not None or args.predict_test:
            raise UsageError("--fold-list and --predict-test need --folds K")
        plan = plan_run(ISBI, args, prog, argv)
        if plan is None:
            return {}
        return train_planned(plan, ISBI.load(plan.root, plan.options), tta=args.tta)
    return cross_validate(args, prog, argv)


def _comparable(cfg: TrainConfig) -> dict:
    """The settings that make two cross-validations the same experiment (resumable ones may differ)."""
    return {f.name: getattr(cfg, f.name) for f in fields(TrainConfig)
            if f.name not in (*RESUMABLE_KEYS, "extra")}


def cross_validate(args: argparse.Namespace, prog: str, argv: list[str] | None) -> dict:
    if args.resume is not None:
        raise UsageError("with --folds, run the same command again to resume: finished folds are skipped and an "
                         "interrupted fold continues from its last.pt")
    if args.val_slices is not None:
        raise UsageError("--val-slices does not apply with --folds: each fold holds out its own slices")
    args.val_slices = 1  # the folds decide; only the data check reads it
    out = args.out or Path("runs") / f"isbi-cv-{args.preset or ISBI.default_preset}"
    first = plan_run(ISBI, args, prog, argv, out=out, claim=False)
    if first is None:
        return {}
    data = load_all(first.root)
    n = len(data)
    folds = fold_slices(n, args.folds)
    chosen = args.fold_list if args.fold_list is not None else list(range(args.folds))
    if any(not 0 <= k < args.folds for k in chosen):
        raise UsageError(f"--fold-list entries must be between 0 and {args.folds - 1}, got {chosen}")
    meta_path = out / "folds.json"
    meta = {"folds": folds, "run": chosen, "command": first.cfg.extra["command"], "preset": first.cfg.extra["preset"],
            "tta": args.tta, "config": json.loads(json.dumps(_comparable(first.cfg), default=list))}
    if meta_path.exists():
        old = json.loads(meta_path.read_text())
        if old.get("folds") != folds or (old.get("config") and old["config"] != meta["config"]):
            if not args.overwrite:
                raise RunFolderError(f"{out} holds a cross-validation with other folds or settings; choose another "
                                     f"--out (or --overwrite to replace it)")
    elif out.exists() and any(out.iterdir()) and not args.overwrite:
        raise RunFolderError(f"{out} is not empty and holds no cross-validation (folds.json); choose another --out")
    main = Distributed.from_env().is_main
    if main:
        out.mkdir(parents=True, exist_ok=True)
        meta_path.write_text(json.dumps(meta, indent=2))
    for k in progress(chosen, desc="folds"):
        fold_out = out / f"fold_{k}"
        if (fold_out / FINISHED).exists():
            print(f"fold {k}: finished earlier, skipped")
            continue
        resume = fold_out / "last.pt" if (fold_out / "last.pt").exists() else None
        val_idx = folds[k]
        train_idx = [i for i in range(n) if i not in val_idx]
        plan = plan_run(ISBI, args, prog, argv, out=fold_out, resume=resume)
        plan.cfg.extra.update({"fold": k, "folds": args.folds})
        splits = Splits(data.subset(train_idx), data.subset(val_idx), None,
                        {"train_slices": train_idx, "val_slices": val_idx, "fold": k})
        train_planned(plan, splits, tta=args.tta)
    if not main:
        return {}
    from .isbi_eval import evaluate_run
    return evaluate_run(out, first.root, predict_test=args.predict_test, tta=args.tta)


def main(argv: list[str] | None = None, prog: str | None = None) -> dict:
    parser = build_parser(prog)
    return run_main(lambda: run(parser.parse_args(argv), parser.prog, argv))


__all__ = ["build_parser", "cross_validate", "fold_slices", "main", "run"]
