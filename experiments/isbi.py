"""Train the paper's U-Net on ISBI-2012 EM membranes.

    python -m experiments.isbi --preset quick          # narrow network, a few minutes on a CPU
    python -m experiments.isbi --preset paper          # the paper's network and settings, for a GPU
    python -m experiments.isbi --resume runs/isbi-quick/last.pt

The last ``--val-slices`` training slices are held out for validation. At the end the best checkpoint predicts
them with overlap-tile prediction and the run directory gets ``val_XX.png`` (image | label | prediction) and
``final_metrics.json``.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

from unet_repro.data import ISBIData, load_isbi
from unet_repro.train import (DivergedError, TrainConfig, evaluate, load_checkpoint, make_model, resolve_device,
                              train)
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


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_training_flags(parser, PRESETS)
    add_data_flags(parser)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    root = args.data_root or default_data_root("isbi2012")
    if not has_data(root):
        missing_data_exit("ISBI-2012", root, EXPECTED)
    cfg = config_from_args(args, PRESETS)
    out = args.out or Path("runs") / f"isbi-{args.preset}"
    cfg = replace(cfg, extra={"experiment": "isbi", "preset": args.preset, "data_root": str(root),
                              "val_slices": args.val_slices, "commit": git_commit(), "hardware": hardware()})
    train_set, val_set = split(root, args)
    train_images, train_labels, val_images, val_labels = *train_set, *val_set

    t0 = time.perf_counter()
    try:
        summary = train(cfg, train_images, train_labels, val_images, val_labels, out, resume=args.resume)
    except DivergedError as e:
        sys.exit(f"error: {e}")
    train_s = time.perf_counter() - t0

    # Final evaluation of the best checkpoint: metrics + image | label | prediction figures.
    best = load_checkpoint(out / "best.pt")
    model = make_model(TrainConfig.from_dict(best["config"]))
    model.load_state_dict(best["model"])
    model.to(resolve_device(cfg.device))
    weights = [border_weight_map(lab, w0=cfg.w0, sigma=cfg.sigma) for lab in val_labels]
    metrics, probs = evaluate(model, val_images, val_labels, weights)
    first_val = len(train_images)
    for k, (image, label, p) in enumerate(zip(val_images, val_labels, probs)):
        save_panels(out / f"val_{first_val + k:02d}.png",
                    [(f"slice {first_val + k}", image), ("label (cell = white)", label),
                     ("prediction P(cell)", p)])
    result = {"validation": metrics, "validation_slices": list(range(first_val, first_val + len(val_images))),
              "best_epoch": best["epoch"], "stop_reason": summary["stop_reason"],
              "optimizer_steps": summary["optimizer_steps"], "train_seconds": round(train_s, 1),
              "tiles_per_s_last_epoch": summary["tiles_per_s"], "command": "python -m experiments.isbi " +
              " ".join(argv if argv is not None else sys.argv[1:]), **cfg.extra, "seed": cfg.seed,
              "config": asdict(cfg)}
    (out / "final_metrics.json").write_text(json.dumps(result, indent=2, default=str))
    print(f"validation (slices {first_val}-{first_val + len(val_images) - 1}, best epoch {best['epoch']}): "
          f"pixel error {metrics['pixel_error']:.4f}, IoU {metrics['iou']:.4f}, "
          f"membrane IoU {metrics['iou_background']:.4f}, loss {metrics['loss']:.4f}; "
          f"trained {train_s:.0f} s; results in {out}")
    return result


if __name__ == "__main__":
    main()
