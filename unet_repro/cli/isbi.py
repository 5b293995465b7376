"""Train the paper's U-Net on ISBI-2012 EM membranes.

    python -m experiments.isbi --preset quick                  # narrow network, minutes on a CPU
    python -m experiments.isbi --preset paper                  # the paper's network and settings, for a GPU
    python -m experiments.isbi --resume runs/isbi-quick/last.pt --epochs 20

The last --val-slices training slices are held out for validation. At the end the best checkpoint predicts them
with overlap-tile prediction and the run folder gets val_*.png (image | label | P(cell)), heldout_prob.tif and
final_metrics.json, and the held-out slices are scored with the challenge's metrics (report.md).

    python -m experiments.isbi --folds 6 --preset quick --out runs/isbi-cv-quick   # K-fold cross-validation
    python -m experiments.isbi --folds 6 --fold-list 0,3 --tta --predict-test

With --folds K the 30 slices are cut into K contiguous folds; each fold is trained on the others and held out
(RUN/fold_k/), then `experiments.isbi_eval` scores the held-out predictions with the challenge's metrics and writes
RUN/report.md. A killed cross-validation resumes when the same command is run again: finished folds are skipped and
an interrupted fold continues from its last.pt. A fold is reused only if it was made with the same settings and
held out the same slices; --overwrite replaces the whole cross-validation.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from ..errors import RunFolderError, UsageError
from ..files import write_json
from ..progress import duration
from ..runs import run_and_score
from ..tasks import ISBI, Splits
from ..tasks.isbi import load_all
from ..training import Distributed, defining_settings, is_finished, read_result
from ..training.run_dir import run_files
from .common import add_data_flags, add_run_flags, add_train_flags, configure, make_parser, plan_run, run_main

PROG = "python -m experiments.isbi"


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    parser = make_parser(prog, PROG, __doc__)
    add_train_flags(parser, ISBI)
    add_data_flags(parser, ISBI)
    add_run_flags(parser, ISBI)
    cv = parser.add_argument_group("cross-validation and evaluation")
    cv.add_argument("--folds", type=int, help="K-fold cross-validation over the training slices (e.g. 6)")
    cv.add_argument("--fold-list", type=fold_list, metavar="K,K",
                    help="with --folds: run only these folds, e.g. 0,3 (default: all)")
    cv.add_argument("--tta", action="store_true",
                    help="average the held-out predictions over the 8 symmetries of the square")
    cv.add_argument("--predict-test", action="store_true",
                    help="with --folds: predict test-volume.tif with the folds' models, as a submission TIFF")
    return parser


def fold_list(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated fold numbers, got {text!r}") from None


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
        splits = ISBI.load(plan.root, plan.options)
        result = run_and_score(plan, splits)
        if Distributed.from_env().is_main and "validation" in result:
            from .isbi_eval import report_single_run
            result["challenge"] = report_single_run(plan.out, splits)
        return result
    return cross_validate(args, prog, argv)


def cross_validate(args: argparse.Namespace, prog: str, argv: list[str] | None) -> dict:
    if args.resume is not None:
        raise UsageError("with --folds, run the same command again to resume: finished folds are skipped and an "
                         "interrupted fold continues from its last.pt")
    if args.val_slices is not None:
        raise UsageError("--val-slices does not apply with --folds: each fold holds out its own slices")
    started = time.monotonic()
    args.val_slices = 1  # the folds decide; only the data check reads it
    out = args.out or Path("runs") / f"isbi-cv-{args.preset or ISBI.default_preset}"
    first = configure(ISBI, args, prog, argv)
    if first is None:
        return {}
    data = load_all(first.root)
    folds = fold_slices(len(data), args.folds)
    chosen = args.fold_list if args.fold_list is not None else list(range(args.folds))
    if any(not 0 <= k < args.folds for k in chosen):
        raise UsageError(f"--fold-list entries must be between 0 and {args.folds - 1}, got {chosen}")
    meta = {"folds": folds, "run": chosen, "command": first.cfg.extra["command"], "preset": first.cfg.extra["preset"],
            "data_root": first.cfg.extra.get("data_root"), "tta": args.tta, "config": defining_settings(first.cfg)}
    check_design(out, meta, args.overwrite)
    main = Distributed.from_env().is_main
    if main:
        if args.overwrite:  # the whole design is replaced: no fold of the old one may be reported with it
            for old in sorted(out.glob("fold_*")):
                for path in run_files(old):
                    path.unlink()
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / "folds.json", meta)
    for n, k in enumerate(chosen, start=1):
        fold_out = out / f"fold_{k}"
        if is_finished(fold_out):
            print(f"fold {k} ({n} of {len(chosen)}): finished earlier, reused")
            continue
        resume = fold_out / "last.pt" if (fold_out / "last.pt").exists() else None
        val_idx = folds[k]
        train_idx = [i for i in range(len(data)) if i not in val_idx]
        plan = plan_run(ISBI, args, prog, argv, out=fold_out, resume=resume)
        plan.cfg.extra.update({"fold": k, "folds": args.folds})
        if args.time_limit is not None:
            plan.deadline = started + 60 * args.time_limit
        print(f"fold {k} ({n} of {len(chosen)}): slices {val_idx[0]}-{val_idx[-1]} held out; "
              f"{duration(time.monotonic() - started)} so far")
        splits = Splits(data.subset(train_idx), data.subset(val_idx), None,
                        {"train_slices": train_idx, "val_slices": val_idx, "fold": k})
        result = run_and_score(plan, splits)
        if main and not result.get("finished", True):
            print(f"fold {k}: stopped ({result.get('stop_reason')}); run the same command again to continue")
            return {}
    if not main:
        return {}
    from .isbi_eval import evaluate_run
    return evaluate_run(out, first.root, predict_test=args.predict_test, tta=args.tta)


def check_design(out: Path, meta: dict, overwrite: bool) -> None:
    """A cross-validation folder is reused only for the same design (folds, settings); with ``--overwrite`` the
    whole design is replaced (every fold is trained again). A folder holding something else is refused."""
    if out.exists() and not out.is_dir():
        raise RunFolderError(f"--out {out} is a file, not a folder; choose a folder for the cross-validation")
    if overwrite or not out.exists():
        return
    old_path = out / "folds.json"
    if old_path.exists():
        old = json.loads(old_path.read_text())
        differs = [k for k in ("folds", "config") if old.get(k) != meta[k]]
        if differs:
            keys = sorted(k for k in meta["config"] if old.get("config", {}).get(k) != meta["config"][k])
            raise RunFolderError(f"{out} holds a cross-validation of another design (different "
                                 f"{', '.join(keys or differs)}); choose another --out, or pass --overwrite to "
                                 f"replace the whole cross-validation")
        for k in range(len(meta["folds"])):
            result = read_result(out / f"fold_{k}")
            if result is not None and result.get("split", {}).get("val_slices") != meta["folds"][k]:
                raise RunFolderError(f"{out / f'fold_{k}'} held out other slices than fold {k} of this design; "
                                     f"choose another --out or pass --overwrite")
    elif any(out.iterdir()):
        raise RunFolderError(f"{out} is not empty and holds no cross-validation (folds.json); choose another --out")


def main(argv: list[str] | None = None, prog: str | None = None) -> dict:
    parser = build_parser(prog)
    return run_main(lambda: run(parser.parse_args(argv), parser.prog, argv))


__all__ = ["build_parser", "cross_validate", "fold_slices", "main", "run"]
