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
import io
from pathlib import Path

import numpy as np
import tifffile

from ..errors import DivergedError, RunFolderError, UsageError
from ..files import write_json, write_text
from ..losses import LOSSES
from ..models import NETWORKS
from ..progress import duration
from ..report import pyplot, save_figure
from ..runs import RunPlan, run_and_score
from ..tasks import PH2, Splits
from ..training import Distributed, Resume, TrainConfig, defining_settings, is_finished, read_metrics, read_result
from .common import (add_data_flags, add_run_flags, add_train_flags, build_config, check_data, configure,
                     data_options, deadline, make_parser, name_list, plan_run, run_main, seed_list, show_config)

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
    grid.add_argument("--seeds", type=seed_list, metavar="0,1",
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
    unknown = ([f"model {m}" for m in grid["models"] if m not in NETWORKS]
               + [f"loss {name}" for name in grid["losses"] if name not in LOSSES])
    if unknown:
        raise UsageError(f"unknown {', '.join(unknown)} in --models / --losses; models: {', '.join(sorted(NETWORKS))}; "
                         f"losses: {', '.join(sorted(LOSSES))}")
    root, info = check_data(PH2, args)
    if args.show_config:
        for m in grid["models"]:
            show_config(build_config(PH2, cell_args(args, m, grid["losses"][0], grid["seeds"][0]), info))
        return {}
    out = args.out or Path("runs") / f"ph2-{preset}"
    cells = [(m, loss, s) for s in grid["seeds"] for m in grid["models"] for loss in grid["losses"]]
    plans = [plan_cell(args, prog, argv, out, *cell) for cell in cells]  # every cell checked before one trains
    splits = PH2.load(root, data_options(args, PH2))
    main = Distributed.from_env().is_main
    if main:
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / "split.json", splits.description)
    limit = deadline(args)
    rows = []
    for n, ((model, loss, seed), plan) in enumerate(zip(cells, plans), start=1):
        name = plan.out.name
        if is_finished(plan.out) and not args.overwrite:
            print(f"{name} ({n} of {len(cells)}): finished earlier, reused")
        else:
            print(f"{name} ({n} of {len(cells)}): training")
            plan.deadline = limit
            try:
                result = run_and_score(plan, splits)
            except DivergedError as e:
                print(f"{name}: {e}")
                continue
            if not main:
                continue
            if not result.get("finished", True):
                print(f"{name}: stopped ({result.get('stop_reason')}); run the same command again to continue")
                break
            print(f"{name}: test IoU {result['test']['iou']:.4f} in {duration(result['wall_seconds'])}")
        rows.append(grid_row(read_result(plan.out), model, loss, seed))
    if not main or not rows:
        return {}
    summary = write_results(out, rows, splits)
    print(f"results of {len(rows)} runs in {out / 'results.md'}")
    return summary


def plan_cell(args: argparse.Namespace, prog: str, argv: list[str] | None, out: Path, model: str, loss: str,
              seed: int) -> RunPlan:
    """The plan of one grid cell. A cell folder is reused (finished: its result; interrupted: resumed) only when it
    was made with the same settings and data; ``--overwrite`` replaces every cell; a cell that never saved a
    checkpoint starts again."""
    cell_dir, cell = out / f"{model}-{loss}-s{seed}", cell_args(args, model, loss, seed)
    last = cell_dir / "last.pt"
    if args.overwrite or not cell_dir.exists() or not (last.exists() or is_finished(cell_dir)):
        return plan_run(PH2, argparse.Namespace(**{**vars(cell), "overwrite": True}), prog, argv, out=cell_dir)
    wanted = configure(PH2, cell, prog, argv)
    result = read_result(cell_dir)
    saved = result["config"] if result else Resume.load(last, task=PH2.name).state["config"]
    same = (defining_settings(TrainConfig.from_dict(saved)) == defining_settings(wanted.cfg)
            and all(saved.get("extra", {}).get(k) == wanted.cfg.extra.get(k) for k in ("size", "split_seed")))
    if not same:
        raise RunFolderError(f"{cell_dir} holds a run of other settings or data than this grid's; choose another "
                             f"--out, or pass --overwrite to replace the whole grid")
    if is_finished(cell_dir):  # reused as it is: a plan only to say where it is
        return RunPlan(PH2, wanted.cfg, cell_dir, None, wanted.root, data_options(cell, PH2), wanted.info)
    return plan_run(PH2, cell, prog, argv, out=cell_dir, resume=last)


def grid_row(result: dict, model: str, loss: str, seed: int) -> dict:
    """One run of the grid as results.csv and results.md see it: the test metrics per image (mean, std)."""
    return {"model": model, "loss": loss, "seed": seed, "parameters": result["parameters"],
            "train_seconds": result["train_seconds"], "best_epoch": result["best_epoch"],
            **result["test_per_image"], "command": result["command"], "commit": result["commit"],
            "hardware": result["hardware"], "date": result.get("date"), "preset": result.get("preset"),
            "size": result.get("size"), "split_seed": result.get("split_seed"), "config": result["config"]}


def _fmt(values: list[float]) -> str:
    return f"{np.mean(values):.3f} ± {np.std(values):.3f}" if len(values) > 1 else f"{values[0]:.3f}"


def write_results(out: Path, rows: list[dict], splits: Splits) -> dict:
    """results.csv, results.md, results.png, val_curves.png and test_predictions.png of the grid."""
    metrics = ["iou", "dice", "pixel_accuracy", "sensitivity", "specificity", "thresholded_jaccard"]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["model", "loss", "seed", "parameters", "train_seconds", "best_epoch",
                     *[f"test_{m}_{s}" for m in metrics for s in ("mean", "std")]])
    for r in rows:
        writer.writerow([r["model"], r["loss"], r["seed"], r["parameters"], round(r["train_seconds"], 1),
                         r["best_epoch"], *[r[m][s] for m in metrics for s in ("mean", "std")]])
    write_text(out / "results.csv", buffer.getvalue())
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
    write_text(out / "results.md", f"""# PH2: architectures x losses

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
    plt = pyplot()
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
    save_figure(fig, out / "results.png")

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
    save_figure(fig, out / "val_curves.png")

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
            probs = tifffile.imread(out / f"{model}-{r['loss']}-s{r['seed']}" / "test_prob.tif")
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
    save_figure(fig, out / "test_predictions.png")


def main(argv: list[str] | None = None, prog: str | None = None) -> dict:
    parser = build_parser(prog)
    return run_main(lambda: run(parser.parse_args(argv), parser.prog, argv))


__all__ = ["ALL_LOSSES", "ALL_MODELS", "build_parser", "main", "run"]
