"""Train the paper's U-Net on ISBI-2012 EM membranes.

    python -m experiments.isbi --preset quick          # narrow network, a few minutes on a CPU
    python -m experiments.isbi --preset paper          # the paper's network and settings, for a GPU
    python -m experiments.isbi --resume runs/isbi-quick/last.pt

The last ``--val-slices`` training slices are held out for validation. At the end the best checkpoint predicts
them with overlap-tile prediction and the run directory gets ``val_XX.png`` (image | label | prediction),
``heldout_prob.tif`` (P(cell) of the held-out slices, float32) and ``final_metrics.json``.

    python -m experiments.isbi --folds 6 --preset quick --out runs/isbi-cv   # K-fold cross-validation
    python -m experiments.isbi --folds 6 --fold-list 0,3 --tta --predict-test

With ``--folds K`` the 30 slices are cut into K contiguous folds; each fold is trained on the others and held out
(``RUN/fold_k/``), then `experiments.isbi_eval` scores the held-out predictions with the challenge's metrics and
writes ``RUN/report.md``. A killed cross-validation resumes: finished folds are skipped and an interrupted fold
continues from its ``last.pt``.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import tifffile
from tqdm.auto import tqdm

from unet_repro.data import ISBIData, load_isbi
from unet_repro.train import (Distributed, DivergedError, TrainConfig, evaluate, load_checkpoint, make_model,
                              resolve_device, train)
from unet_repro.weightmap import border_weight_map

from .common import (add_training_flags, config_from_args, default_data_root, git_commit, hardware,
                     missing_data_exit, save_panels)

PRESETS = {
    # The paper: full widths, one 572x572 tile per pass, SGD with momentum 0.99, w0=10, sigma=5, elastic
    # deformation + shift/rotation/gray values, dropout 0.5, constant learning rate. Meant for a GPU. The paper gives
    # no learning rate; 0.001 is what the LR range test and short runs found stable for the narrow network (0.01
    # diverges there): run `python -m experiments.lr_range_test --preset paper` on your GPU before a long run.
    "paper": dict(widths=(64, 128, 256, 512, 1024), tile=572, optimizer="sgd", lr=0.001, momentum=0.99,
                  dropout=0.5, w0=10.0, sigma=5.0, augment=True, epochs=60, steps_per_epoch=250, accumulate=1,
                  patience=15),
    # The same method with a 4x narrower network and a short run: about 7 minutes on 2 CPU cores.
    "quick": dict(widths=(16, 32, 64, 128, 256), tile=572, optimizer="sgd", lr=0.001, momentum=0.99,
                  dropout=0.5, w0=10.0, sigma=5.0, augment=True, epochs=12, steps_per_epoch=70, accumulate=1,
                  patience=0),
}
EXPECTED = "train-volume.tif, train-labels.tif (and test-volume.tif): the official ISBI-2012 stacks"


def add_data_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--val-slices", type=int, default=5, help="last N training slices held out (default 5)")


def has_data(root: Path) -> bool:
    return (root / "train-volume.tif").exists() or (root / "train-volume").is_dir()


def split(root: Path, args: argparse.Namespace) -> tuple[ISBIData, ISBIData]:
    """Training and validation slices: the last ``--val-slices`` training slices are held out."""
    data = load_isbi(root)
    n_val = args.val_slices
    if not 0 < n_val < len(data.images):
        sys.exit(f"error: --val-slices must be between 1 and {len(data.images) - 1}")
    return (ISBIData(data.images[:-n_val], data.labels[:-n_val]),
            ISBIData(data.images[-n_val:], data.labels[-n_val:]))


def fold_slices(n: int, k: int) -> list[list[int]]:
    """K contiguous folds of slice indices 0..n-1, as equal as possible (30 slices, 6 folds: 5 each)."""
    if not 2 <= k <= n:
        raise ValueError(f"--folds must be between 2 and {n}, got {k}")
    return [a.tolist() for a in np.array_split(np.arange(n), k)]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_training_flags(parser, PRESETS)
    add_data_flags(parser)
    cv = parser.add_argument_group("cross-validation and evaluation")
    cv.add_argument("--folds", type=int, help="K-fold cross-validation over the training slices (e.g. 6)")
    cv.add_argument("--fold-list", type=lambda s: [int(v) for v in s.split(",")],
                    help="run only these folds, e.g. 0,3 (default: all)")
    cv.add_argument("--tta", action="store_true", help="average held-out predictions over the 8 square symmetries")
    cv.add_argument("--predict-test", action="store_true",
                    help="with --folds: predict test-volume.tif with the folds' models, as a submission TIFF")
    return parser.parse_args(argv)


def run_split(cfg: TrainConfig, data: ISBIData, train_idx: list[int], val_idx: list[int], out: Path,
              resume: Path | None, tta: bool, command: str) -> dict:
    """Train on the slices `train_idx`, then predict and score the held-out slices `val_idx` with the best
    checkpoint; write the figures, ``heldout_prob.tif`` and ``final_metrics.json`` into `out`."""
    val_images, val_labels = data.images[val_idx], data.labels[val_idx]
    t0 = time.perf_counter()
    try:
        summary = train(cfg, data.images[train_idx], data.labels[train_idx], val_images, val_labels, out,
                        resume=resume)
    except DivergedError as e:
        sys.exit(f"error: {e}")
    train_s = time.perf_counter() - t0
    if not Distributed.from_env().is_main:  # under torchrun, rank 0 alone evaluates and writes
        return summary

    best = load_checkpoint(out / "best.pt")
    model = make_model(TrainConfig.from_dict(best["config"]))
    model.load_state_dict(best["model"])
    model.to(resolve_device(cfg.device))
    weights = [border_weight_map(lab, w0=cfg.w0, sigma=cfg.sigma) for lab in val_labels]
    metrics, probs = evaluate(model, val_images, val_labels, weights, tta=tta)
    for i, image, label, p in zip(val_idx, val_images, val_labels, probs):
        save_panels(out / f"val_{i:02d}.png",
                    [(f"slice {i}", image), ("label (cell = white)", label), ("prediction P(cell)", p)])
    tifffile.imwrite(out / "heldout_prob.tif", np.stack(probs).astype(np.float32), photometric="minisblack")
    result = {"validation": metrics, "validation_slices": [int(i) for i in val_idx], "tta": tta,
              "best_epoch": best["epoch"], "stop_reason": summary["stop_reason"],
              "optimizer_steps": summary["optimizer_steps"], "train_seconds": round(train_s, 1),
              "tiles_per_s_last_epoch": summary["tiles_per_s"], "command": command, **cfg.extra,
              "seed": cfg.seed, "config": asdict(cfg)}
    (out / "final_metrics.json").write_text(json.dumps(result, indent=2, default=str))
    print(f"validation (slices {val_idx[0]}-{val_idx[-1]}, best epoch {best['epoch']}): "
          f"pixel error {metrics['pixel_error']:.4f}, IoU {metrics['iou']:.4f}, "
          f"membrane IoU {metrics['iou_background']:.4f}, loss {metrics['loss']:.4f}; "
          f"trained {train_s:.0f} s; results in {out}")
    return result


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    root = args.data_root or default_data_root("isbi2012")
    if not has_data(root):
        missing_data_exit("ISBI-2012", root, EXPECTED)
    cfg = config_from_args(args, PRESETS)
    out = args.out or Path("runs") / (f"isbi-cv-{args.preset}" if args.folds else f"isbi-{args.preset}")
    command = "python -m experiments.isbi " + " ".join(argv if argv is not None else sys.argv[1:])
    extra = {"experiment": "isbi", "preset": args.preset, "data_root": str(root), "commit": git_commit(),
             "hardware": hardware()}
    data = load_isbi(root)
    n = len(data.images)
    if not args.folds:
        if not 0 < args.val_slices < n:
            sys.exit(f"error: --val-slices must be between 1 and {n - 1}")
        val_idx = list(range(n - args.val_slices, n))
        return run_split(replace(cfg, extra={**extra, "val_slices": args.val_slices}), data,
                         list(range(n - args.val_slices)), val_idx, out, args.resume, args.tta, command)

    if args.resume:
        sys.exit("error: with --folds, rerun the same command to resume: finished folds are skipped and an "
                 "interrupted fold continues from its last.pt")
    try:
        folds = fold_slices(n, args.folds)
    except ValueError as e:
        sys.exit(f"error: {e}")
    chosen = args.fold_list if args.fold_list is not None else list(range(args.folds))
    if any(not 0 <= k < args.folds for k in chosen):
        sys.exit(f"error: --fold-list entries must be between 0 and {args.folds - 1}")
    out.mkdir(parents=True, exist_ok=True)
    (out / "folds.json").write_text(json.dumps({"folds": folds, "run": chosen, "command": command,
                                                "preset": args.preset, "tta": args.tta}, indent=2))
    for k in tqdm(chosen, desc="folds"):
        fold_out = out / f"fold_{k}"
        if (fold_out / "final_metrics.json").exists():
            print(f"fold {k}: finished earlier, skipped")
            continue
        resume = fold_out / "last.pt" if (fold_out / "last.pt").exists() else None
        val_idx = folds[k]
        train_idx = [i for i in range(n) if i not in val_idx]
        run_split(replace(cfg, extra={**extra, "fold": k, "folds": args.folds}), data, train_idx, val_idx,
                  fold_out, resume, args.tta, command)
    if not Distributed.from_env().is_main:
        return {}
    from .isbi_eval import evaluate_run
    return evaluate_run(out, root, predict_test=args.predict_test, tta=args.tta)


if __name__ == "__main__":
    main()
