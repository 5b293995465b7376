"""PH2 skin-lesion segmentation: which architecture and which loss work best, on one held-out test set.

    python -m experiments.ph2 --preset quick                     # the whole grid, narrow, on a CPU
    python -m experiments.ph2 --preset full --models unet_same,segnet --losses dice,combo --seeds 0,1,2

Every run of the grid (model x loss x seed) trains on the same seeded 100 / 50 / 50 split (saved as
``split.json``), keeps the checkpoint with the best validation IoU (early stopping), and is evaluated once on the
test split. The grid directory gets ``results.csv`` (one row per run), ``results.md`` (model x loss: test IoU and
Dice, mean ± std over seeds), ``results.png`` (bar chart), ``val_curves.png`` and ``test_predictions.png`` (image |
truth | each model). A killed grid resumes: finished runs are skipped, the interrupted one continues from its
``last.pt``.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from unet_repro.data import load_ph2, split_ph2
from unet_repro.inference import predict_tiled
from unet_repro.losses import LOSSES
from unet_repro.metrics.segmentation import segmentation_report
from unet_repro.models import MODELS
from unet_repro.train import (Distributed, DivergedError, TrainConfig, load_checkpoint, make_model,
                              read_metrics, resolve_device, train)

from .common import default_data_root, git_commit, hardware, missing_data_exit

ALL_MODELS = ["unet", "unet_same", "unet_strided", "unet_unpool", "unet_dilated", "segnet", "segnet_nearest"]
ALL_LOSSES = ["bce", "dice", "focal", "tversky", "combo"]
PRESETS = {
    # Narrow networks (base width 8) and a very short schedule, so that the whole grid (35 runs, 6-23 s per epoch
    # each) fits in about half an hour on 2 CPU cores: it shows the pipeline, not the architectures' potential.
    "quick": dict(models=ALL_MODELS, losses=ALL_LOSSES, seeds=[0], base_width=8, epochs=3, patience=0,
                  batch_size=8, optimizer="adam", lr=1e-3),
    # Full-width networks, long training with early stopping: for a GPU.
    "full": dict(models=ALL_MODELS, losses=ALL_LOSSES, seeds=[0, 1, 2], base_width=64, epochs=150, patience=20,
                 batch_size=8, optimizer="adam", lr=1e-4),
}
EXPECTED = "'PH2 Dataset images/IMDxxx/...' (the original PH2 layout)"
# One training configuration per preset, for tools that train a single network (the LR range test): the grid's
# settings with unet_same and BCE.
TRAIN_PRESETS = {name: dict(model="unet_same", loss="bce", in_channels=3, base_width=p["base_width"], tile=256,
                            dropout=0.0, optimizer=p["optimizer"], lr=p["lr"], momentum=0.9,
                            batch_size=p["batch_size"])
                 for name, p in PRESETS.items()}


def add_data_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--size", type=int, default=256, help="images are resized to size x size (default 256)")
    parser.add_argument("--split-seed", type=int, default=0, help="seed of the 100/50/50 split (default 0)")


def has_data(root: Path) -> bool:
    return (root / "PH2 Dataset images").is_dir()


def train_split(root: Path, args: argparse.Namespace) -> tuple[np.ndarray, np.ndarray]:
    """The training images and masks of the seeded split."""
    data = load_ph2(root, size=args.size)
    index = {n: i for i, n in enumerate(data.names)}
    train = [index[n] for n in split_ph2(data.names, seed=args.split_seed)["train"]]
    return data.images[train], data.masks[train]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    csv_list = lambda s: [v.strip() for v in s.split(",") if v.strip()]  # noqa: E731
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=sorted(PRESETS), default="quick")
    parser.add_argument("--models", type=csv_list, help=f"comma-separated, from {', '.join(ALL_MODELS)}")
    parser.add_argument("--losses", type=csv_list, help=f"comma-separated, from {', '.join(ALL_LOSSES)}")
    parser.add_argument("--seeds", type=lambda s: [int(v) for v in csv_list(s)], help="e.g. 0,1,2")
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--patience", type=int)
    parser.add_argument("--base-width", type=int)
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--optimizer", choices=["adam", "sgd"])
    parser.add_argument("--lr", type=float)
    add_data_flags(parser)
    parser.add_argument("--data-root", type=Path, help="PH2 folder (default: $UNET_REPRO_DATA/ph2)")
    parser.add_argument("--out", type=Path, help="grid directory (default: runs/ph2-<preset>)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--workers", type=int, default=0)
    args = parser.parse_args(argv)
    for key, value in PRESETS[args.preset].items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)
    unknown = [m for m in args.models if m not in MODELS] + [f"loss {l}" for l in args.losses if l not in LOSSES]
    if unknown:
        parser.error(f"unknown {', '.join(unknown)}; models: {', '.join(sorted(MODELS))}; losses: "
                     f"{', '.join(sorted(LOSSES))}")
    return args


def run_config(args: argparse.Namespace, model: str, loss: str, seed: int) -> TrainConfig:
    """One grid cell's training configuration. The paper's valid-convolution U-Net gets input tiles whose output
    covers the image (overlap-tile prediction with mirrored context) and its dropout; the others see whole images."""
    cfg = TrainConfig(model=model, loss=loss, in_channels=3, base_width=args.base_width, widths=(), padding="valid",
                      dropout=0.5 if model == "unet" else 0.0, tile=args.size, optimizer=args.optimizer, lr=args.lr,
                      momentum=0.9, batch_size=args.batch_size, accumulate=1, epochs=args.epochs,
                      steps_per_epoch=math.ceil(100 / args.batch_size), patience=args.patience, monitor="iou",
                      seed=seed, device=args.device, workers=args.workers)
    if model == "unet":
        net = make_model(cfg)
        out = next(o for o in range(args.size, 4 * args.size) if _valid_output(net, o))
        cfg = replace(cfg, tile=net.input_size(out))
    return cfg


def _valid_output(net, n: int) -> bool:
    try:
        net.input_size(n)
        return True
    except ValueError:
        return False


def evaluate_test(run_dir: Path, images: np.ndarray, masks: np.ndarray) -> dict:
    """Predict the test images with the run's best checkpoint; per-image metrics (mean ± std over images)."""
    ckpt = load_checkpoint(run_dir / "best.pt")
    cfg = TrainConfig.from_dict(ckpt["config"])
    model = make_model(cfg)
    model.load_state_dict(ckpt["model"])
    model.to(resolve_device(cfg.device))
    probs = np.stack([predict_tiled(model, image) for image in images])
    report = segmentation_report(probs > 0.5, masks)
    np.save(run_dir / "test_probs.npy", probs.astype(np.float16))
    return {"best_epoch": ckpt["epoch"], "parameters": sum(p.numel() for p in model.parameters()),
            **{k: v for k, v in report.items()}}


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    root = args.data_root or default_data_root("ph2")
    if not has_data(root):
        missing_data_exit("PH2", root, EXPECTED)
    out = args.out or Path("runs") / f"ph2-{args.preset}"
    out.mkdir(parents=True, exist_ok=True)
    data = load_ph2(root, size=args.size)
    split = split_ph2(data.names, seed=args.split_seed)
    split_file = out / "split.json"
    if split_file.exists() and json.loads(split_file.read_text()) != split:
        sys.exit(f"error: {split_file} holds another split; use a new --out for another --split-seed or --size")
    split_file.write_text(json.dumps(split, indent=2))
    index = {n: i for i, n in enumerate(data.names)}
    part = {k: [index[n] for n in v] for k, v in split.items()}
    command = "python -m experiments.ph2 " + " ".join(argv if argv is not None else sys.argv[1:])
    extra = {"experiment": "ph2", "preset": args.preset, "data_root": str(root), "size": args.size,
             "split_seed": args.split_seed, "commit": git_commit(), "hardware": hardware()}

    grid = [(m, loss, s) for s in args.seeds for m in args.models for loss in args.losses]
    rows = []
    for model, loss, seed in tqdm(grid, desc="grid"):
        run_dir = out / f"{model}-{loss}-s{seed}"
        result_file = run_dir / "test_metrics.json"
        if not result_file.exists():
            cfg = replace(run_config(args, model, loss, seed), extra=extra)
            resume = run_dir / "last.pt" if (run_dir / "last.pt").exists() else None
            t0 = time.perf_counter()
            try:
                train(cfg, data.images[part["train"]], data.masks[part["train"]], data.images[part["val"]],
                      data.masks[part["val"]], run_dir, resume=resume)
            except DivergedError as e:
                print(f"{run_dir.name}: {e}", file=sys.stderr)
                continue
            if not Distributed.from_env().is_main:  # under torchrun, rank 0 alone evaluates and writes
                continue
            result = {"model": model, "loss": loss, "seed": seed, "train_seconds": time.perf_counter() - t0,
                      **evaluate_test(run_dir, data.images[part["test"]], data.masks[part["test"]]),
                      "command": command, **extra, "config": asdict(cfg)}
            result_file.write_text(json.dumps(result, indent=2, default=float))
        rows.append(json.loads(result_file.read_text()))
    if not Distributed.from_env().is_main:
        return {}
    summary = write_results(out, rows, data, part, args)
    print(f"results of {len(rows)} runs in {out / 'results.md'}")
    return summary


def _fmt(values: list[float]) -> str:
    return f"{np.mean(values):.3f} ± {np.std(values):.3f}" if len(values) > 1 else f"{values[0]:.3f}"


def write_results(out: Path, rows: list[dict], data, part: dict, args: argparse.Namespace) -> dict:
    """results.csv, results.md, results.png, val_curves.png and test_predictions.png of the grid."""
    metrics = ["iou", "dice", "pixel_accuracy", "sensitivity", "specificity", "thresholded_jaccard"]
    with open(out / "results.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["model", "loss", "seed", "parameters", "train_seconds", "best_epoch",
                         *[f"test_{m}_{s}" for m in metrics for s in ("mean", "std")]])
        for r in rows:
            writer.writerow([r["model"], r["loss"], r["seed"], r["parameters"], round(r["train_seconds"], 1),
                             r["best_epoch"], *[r[m][s] for m in metrics for s in ("mean", "std")]])
    cells: dict[tuple[str, str], list[dict]] = {}
    for r in rows:
        cells.setdefault((r["model"], r["loss"]), []).append(r)
    table = ["| model | loss | params | test IoU | test Dice | thresholded Jaccard | train s |",
             "|---|---|---|---|---|---|---|"]
    ranked = sorted(cells.items(), key=lambda kv: -np.mean([r["iou"]["mean"] for r in kv[1]]))
    for (model, loss), rs in ranked:
        table.append(f"| {model} | {loss} | {rs[0]['parameters']:,} | {_fmt([r['iou']['mean'] for r in rs])} | "
                     f"{_fmt([r['dice']['mean'] for r in rs])} | "
                     f"{_fmt([r['thresholded_jaccard']['mean'] for r in rs])} | "
                     f"{np.mean([r['train_seconds'] for r in rs]):.0f} |")
    first = rows[0]
    seeds = sorted({r["seed"] for r in rows})
    (out / "results.md").write_text(f"""# PH2: architectures x losses

Test split: 50 images of a seeded 100 / 50 / 50 split (split seed {first['split_seed']}, `split.json`), resized to
{first['size']}x{first['size']}. Each run keeps its checkpoint of best validation IoU; test metrics are per-image
means at threshold 0.5{', then mean ± std over seeds ' + str(seeds) if len(seeds) > 1 else ' (seed ' + str(seeds[0]) + ')'}.
IoU = Jaccard of the lesion; thresholded Jaccard = ISIC 2018 style (per image IoU if >= 0.65, else 0).
Sorted by test IoU.

{chr(10).join(table)}

- Command: `{first['command']}`
- Commit: `{first['commit']}`; hardware: {first['hardware']}; preset `{first['preset']}` (base width
  {first['config'].get('base_width')}, {first['config']['epochs']} epochs at most, {first['config']['optimizer']} lr
  {first['config']['lr']}, batch {first['config']['batch_size']}).
- Per-run rows: `results.csv`; figures: `results.png`, `val_curves.png`, `test_predictions.png`.
""")
    plot_results(out, ranked, rows, data, part)
    return {"runs": len(rows), "best": {"model": ranked[0][0][0], "loss": ranked[0][0][1],
                                        "iou": float(np.mean([r["iou"]["mean"] for r in ranked[0][1]]))}}


def plot_results(out: Path, ranked: list, rows: list[dict], data, part: dict) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{m}\n{l}" for (m, l), _ in ranked]
    means = [np.mean([r["iou"]["mean"] for r in rs]) for _, rs in ranked]
    errs = [np.std([r["iou"]["mean"] for r in rs]) if len(rs) > 1 else rs[0]["iou"]["std"] for _, rs in ranked]
    fig, ax = plt.subplots(figsize=(max(6, 0.45 * len(labels)), 4.5))
    ax.bar(range(len(labels)), means, yerr=errs, capsize=2)
    ax.set_xticks(range(len(labels)), labels, rotation=90, fontsize=7)
    ax.set_ylabel("test IoU (mean over images)")
    ax.set_ylim(0, 1)
    fig.tight_layout()
    fig.savefig(out / "results.png", dpi=100)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for r in rows:
        metrics = read_metrics(out / f"{r['model']}-{r['loss']}-s{r['seed']}" / "metrics.csv")
        ax.plot([m["epoch"] for m in metrics], [m["val_iou"] for m in metrics], lw=1,
                label=f"{r['model']}/{r['loss']}/s{r['seed']}")
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation IoU (pooled pixels)")
    if len(rows) <= 12:
        ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(out / "val_curves.png", dpi=100)
    plt.close(fig)

    # image | truth | each model (its best loss, first seed) on four test images
    best_per_model = {}
    for (model, loss), rs in ranked:
        best_per_model.setdefault(model, rs[0])
    show = part["test"][:4]
    cols = 2 + len(best_per_model)
    fig, axes = plt.subplots(len(show), cols, figsize=(2 * cols, 2 * len(show)), squeeze=False)
    for i, k in enumerate(show):
        axes[i, 0].imshow(data.images[k])
        axes[i, 1].imshow(data.masks[k], cmap="gray")
        for j, (model, r) in enumerate(best_per_model.items()):
            probs = np.load(out / f"{model}-{r['loss']}-s{r['seed']}" / "test_probs.npy")
            axes[i, 2 + j].imshow(probs[i] > 0.5, cmap="gray")
            if i == 0:
                axes[i, 2 + j].set_title(f"{model}\n({r['loss']})", fontsize=7)
        if i == 0:
            axes[i, 0].set_title("image", fontsize=7)
            axes[i, 1].set_title("truth", fontsize=7)
    for ax in axes.ravel():
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(out / "test_predictions.png", dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    main()
