"""PH2 skin-lesion segmentation: which architecture and which loss work best, on one held-out test set.

    python -m experiments.ph2 --preset quick                     # the whole grid, narrow, on a CPU
    python -m experiments.ph2 --preset full --models unet_same,segnet --losses dice,combo --seeds 0,1,2

Every run of the grid (model x loss x seed) trains on the same seeded 100 / 50 / 50 split (saved as split.json),
keeps the checkpoint with the best validation IoU (early stopping), and is evaluated once on the test split. The grid
folder gets results.csv (one row per run), results.md (model x loss: test IoU and Dice, mean ± std over seeds),
results.png (bar chart), val_curves.png and test_predictions.png (image | truth | each model). A killed grid resumes
when the same command is run again: finished runs are skipped, the interrupted one continues from its last.pt.
"""
from __future__ import annotations

import argparse
import csv
import json
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from ..errors import DivergedError, RunFolderError, UsageError
from ..inference import predict_tiled
from ..losses import LOSSES
from ..metrics.segmentation import segmentation_report
from ..models import MODELS
from ..tasks import PH2, Splits
from ..training import Distributed, progress, read_metrics, train
from .common import (add_data_flags, add_run_flags, add_train_flags, build_config, check_data, data_options,
                     load_trained, make_parser, name_list, provenance, run_main, show_config)
from .runs import RunPlan, plan_run, write_json

PROG = "python -m experiments.ph2"
ALL_MODELS = ["unet", "unet_same", "unet_strided", "unet_unpool", "unet_dilated", "segnet", "segnet_nearest"]
ALL_LOSSES = ["bce", "dice", "focal", "tversky", "combo"]
GRIDS = {"quick": dict(models=ALL_MODELS, losses=ALL_LOSSES, seeds=[0]),
         "cpu": dict(models=["unet_same"], losses=["tversky"], seeds=[0, 1, 2]),
         "full": dict(models=ALL_MODELS, losses=ALL_LOSSES, seeds=[0, 1, 2])}


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    parser = make_parser(prog, PROG, __doc__)
    grid = parser.add_argument_group("grid")
    grid.add_argument("--models", type=name_list, metavar="A,B",
                      help=f"networks, from {', '.join(ALL_MODELS)} (presets: quick, full: all; cpu: unet_same)")
    grid.add_argument("--losses", type=name_list, metavar="A,B",
                      help=f"losses, from {', '.join(ALL_LOSSES)} (presets: quick, full: all; cpu: tversky)")
    grid.add_argument("--seeds", type=lambda s: [int(v) for v in name_list(s)], metavar="0,1",
                      help="seeds (presets: quick: 0; cpu, full: 0,1,2)")
    add_train_flags(parser, PH2, skip=("model", "loss", "seed", "widths"))
    add_data_flags(parser, PH2)
    add_run_flags(parser, PH2, resume=False)
    return parser


def cell_args(args: argparse.Namespace, model: str, loss: str, seed: int) -> argparse.Namespace:
    """The flags of one grid cell: the grid's flags with its model, loss and seed."""
    return argparse.Namespace(**{**vars(args), "model": model, "loss": loss, "seed": seed, "resume": None})


def run(args: argparse.Namespace, prog: str, argv: list[str] | None) -> dict:
    preset = args.preset or PH2.default_preset
    grid = {k: getattr(args, k) or v for k, v in GRIDS[preset].items()}
    unknown = [m for m in grid["models"] if m not in MODELS] + [f"loss {l}" for l in grid["losses"] if l not in LOSSES]
    if unknown:
        raise UsageError(f"unknown {', '.join(unknown)}; models: {', '.join(sorted(MODELS))}; losses: "
                         f"{', '.join(sorted(LOSSES))}")
    root, info = check_data(PH2, args)
    if args.show_config:
        for m in grid["models"]:
            show_config(build_config(PH2, cell_args(args, m, grid["losses"][0], grid["seeds"][0]), info))
        return {}
    for m in grid["models"]:  # every cell's settings are checked before the first one trains
        for loss in grid["losses"]:
            build_config(PH2, cell_args(args, m, loss, grid["seeds"][0]), info)
    out = args.out or Path("runs") / f"ph2-{preset}"
    options = data_options(args)
    splits = PH2.load(root, options)
    split_file = out / "split.json"
    if split_file.exists() and json.loads(split_file.read_text()) != splits.description:
        raise RunFolderError(f"{split_file} holds another split; use a new --out for another --split-seed or --size")
    main = Distributed.from_env().is_main
    if main:
        out.mkdir(parents=True, exist_ok=True)
        split_file.write_text(json.dumps(splits.description, indent=2))
    record = provenance(prog, argv)
    cells = [(m, loss, s) for s in grid["seeds"] for m in grid["models"] for loss in grid["losses"]]
    rows = []
    for model, loss, seed in progress(cells, desc="grid"):
        run_dir = out / f"{model}-{loss}-s{seed}"
        result_file = run_dir / "test_metrics.json"
        if not result_file.exists():
            resume = run_dir / "last.pt" if (run_dir / "last.pt").exists() else None
            plan = plan_run(PH2, cell_args(args, model, loss, seed), prog, argv, out=run_dir, resume=resume)
            try:
                seconds = train_timed(plan, splits)
            except DivergedError as e:
                print(f"{run_dir.name}: {e}")
                continue
            if not main:
                continue
            result = {"model": model, "loss": loss, "seed": seed, "train_seconds": seconds,
                      **evaluate_test(run_dir, splits), **record, "config": asdict(plan.cfg),
                      "preset": preset, "size": options.size or 256, "split_seed": options.split_seed}
            write_json(result_file, result)
        rows.append(json.loads(result_file.read_text()))
    if not main or not rows:
        return {}
    summary = write_results(out, rows, splits)
    print(f"results of {len(rows)} runs in {out / 'results.md'}")
    return summary


def train_timed(plan: RunPlan, splits: Splits) -> float:
    """Train one grid cell (no per-run final evaluation: the grid scores every run once on the test split)."""
    t0 = time.perf_counter()
    train(plan.cfg, splits.train.images, splits.train.labels, splits.val.images, splits.val.labels, plan.out,
          resume=plan.resume)
    return time.perf_counter() - t0


def evaluate_test(run_dir: Path, splits: Splits) -> dict:
    """Predict the test images with the run's best checkpoint; per-image metrics (mean ± std over images)."""
    trained = load_trained(run_dir / "best.pt")
    probs = np.stack([predict_tiled(trained.model, image) for image in
                      progress(splits.test.images, desc=f"test {run_dir.name}", leave=False)])
    report = segmentation_report(probs > 0.5, splits.test.labels)
    np.save(run_dir / "test_probs.npy", probs.astype(np.float16))
    return {"best_epoch": trained.checkpoint["epoch"],
            "parameters": sum(p.numel() for p in trained.model.parameters()), **report}


def _fmt(values: list[float]) -> str:
    return f"{np.mean(values):.3f} ± {np.std(values):.3f}" if len(values) > 1 else f"{values[0]:.3f}"


def write_results(out: Path, rows: list[dict], splits: Splits) -> dict:
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
    cfg = first["config"]
    (out / "results.md").write_text(f"""# PH2: architectures x losses

Test split: 50 images of a seeded 100 / 50 / 50 split (split seed {first['split_seed']}, `split.json`), resized to
{first['size']}x{first['size']}. Each run keeps its checkpoint of best validation IoU; test metrics are per-image
means at threshold 0.5{', then mean ± std over seeds ' + str(seeds) if len(seeds) > 1 else ' (seed ' + str(seeds[0]) + ')'}.
IoU = Jaccard of the lesion; thresholded Jaccard = ISIC 2018 style (per image IoU if >= 0.65, else 0).
Sorted by test IoU.

{chr(10).join(table)}

- Command: `{first['command']}`
- Commit: `{first['commit']}`; hardware: {first['hardware']}; date {first.get('date', '?')}; preset `{first['preset']}`
  (base width {cfg.get('base_width')}, {cfg['epochs']} epochs at most, {cfg['optimizer']} lr {cfg['lr']}, batch
  {cfg['batch_size']}).
- Per-run rows: `results.csv`; figures: `results.png`, `val_curves.png`, `test_predictions.png`.
""")
    plot_results(out, ranked, rows, splits)
    return {"runs": len(rows), "best": {"model": ranked[0][0][0], "loss": ranked[0][0][1],
                                        "iou": float(np.mean([r["iou"]["mean"] for r in ranked[0][1]]))}}


def plot_results(out: Path, ranked: list, rows: list[dict], splits: Splits) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{m}\n{l}" for (m, l), _ in ranked]
    means = [np.mean([r["iou"]["mean"] for r in rs]) for _, rs in ranked]
    errs = [np.std([r["iou"]["mean"] for r in rs]) if len(rs) > 1 else rs[0]["iou"]["std"] for _, rs in ranked]
    fig, ax = plt.subplots(figsize=(max(6, 0.45 * len(labels)), 4.8))
    ax.bar(range(len(labels)), means, yerr=errs, capsize=2)
    ax.set_xticks(range(len(labels)), labels, rotation=90, fontsize=7)
    ax.set_ylabel("test IoU (mean over images)")
    ax.set_ylim(0, 1)
    ax.set_title("PH2 test IoU per model and loss (error bars: "
                 + ("std over seeds)" if any(len(rs) > 1 for _, rs in ranked) else "std over test images)"), fontsize=9)
    fig.tight_layout()
    fig.savefig(out / "results.png", dpi=100)
    plt.close(fig)

    # One panel per model, one line per loss (and seed), so that a grid of 35 runs stays readable.
    models = list(dict.fromkeys(r["model"] for r in rows))
    cols = min(4, len(models))
    fig, axes = plt.subplots((len(models) + cols - 1) // cols, cols, figsize=(3.6 * cols, 2.9 * ((len(models) + cols - 1) // cols)),
                             squeeze=False, sharey=True)
    for ax, model in zip(axes.ravel(), models):
        for r in (r for r in rows if r["model"] == model):
            metrics = read_metrics(out / f"{r['model']}-{r['loss']}-s{r['seed']}" / "metrics.csv")
            ax.plot([m["epoch"] for m in metrics], [m["val_iou"] for m in metrics], "o-", ms=3, lw=1,
                    label=f"{r['loss']}" + (f" s{r['seed']}" if len({x['seed'] for x in rows}) > 1 else ""))
        ax.set_title(model, fontsize=9)
        ax.set_ylim(0, 1)
        ax.set_xlabel("epoch", fontsize=8)
        ax.legend(fontsize=6, loc="lower right")
        ax.grid(alpha=0.3)
    for ax in axes.ravel()[len(models):]:
        ax.axis("off")
    for ax in axes[:, 0]:
        ax.set_ylabel("validation IoU", fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "val_curves.png", dpi=100)
    plt.close(fig)

    # image | truth | each model (its best loss, first seed) on four test images
    best_per_model = {}
    for (model, loss), rs in ranked:
        best_per_model.setdefault(model, rs[0])
    show = list(range(min(4, len(splits.test))))
    cols = 2 + len(best_per_model)
    fig, axes = plt.subplots(len(show), cols, figsize=(2 * cols, 2 * len(show) + 0.4), squeeze=False)
    for i in show:
        axes[i, 0].imshow(splits.test.images[i])
        axes[i, 1].imshow(splits.test.labels[i], cmap="gray", vmin=0, vmax=1)
        for j, (model, r) in enumerate(best_per_model.items()):
            probs = np.load(out / f"{model}-{r['loss']}-s{r['seed']}" / "test_probs.npy")
            axes[i, 2 + j].imshow(probs[i] > 0.5, cmap="gray", vmin=0, vmax=1)
            if i == 0:
                axes[i, 2 + j].set_title(f"{model}\n({r['loss']})", fontsize=7)
        if i == 0:
            axes[i, 0].set_title("image", fontsize=7)
            axes[i, 1].set_title("truth", fontsize=7)
    for ax in axes.ravel():
        ax.axis("off")
    fig.suptitle("test images: lesion masks at P > 0.5", fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "test_predictions.png", dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None, prog: str | None = None) -> dict:
    parser = build_parser(prog)
    return run_main(lambda: run(parser.parse_args(argv), parser.prog, argv))


__all__ = ["ALL_LOSSES", "ALL_MODELS", "build_parser", "main", "run"]
