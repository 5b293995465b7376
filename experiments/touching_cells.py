"""The paper's claim, measured on real images: touching cells come out separated when a network is trained on
instance labels with separation borders and the weight map of objects, and not when it is trained on plain binary
masks of the same cells.

    python -m experiments.touching_cells --out runs/touching-cells         # the quick preset: 2 x ~10 min on a CPU

The ISBI-2012 labels are turned into touching instances (`unet_repro.instances.touching_cells`: every membrane pixel
given to its nearest cell, so neighbouring cells touch), as the paper's HeLa and U373 ground truth have cells that
touch. Training slices 0-24, held-out slices 25-29 (as the quick preset), the quick preset's network and schedule, the
same seed, one run per arm:

* ``instances``: the paper's target: separation borders drawn between touching cells (``--border-width``), trained on
  the foreground after the borders with the weight map of objects (w0 = 10, sigma = 5);
* ``binary``: the ablation: the plain binary mask of the same cells, i.e. the cells with nothing between them (every
  pixel is a cell), with the binary weight map;
* ``no_border_weight`` (with ``--arms``): the borders, but w0 = 0: the weight map's border term left out.

Scored on the held-out slices: predicted cells are the 4-connected components of P(foreground) > 0.5, matched one to
one with the true touching cells (`unet_repro.metrics.objects`): object-level precision, recall and F1 at IoU 0.5 and
the mean over IoU 0.5:0.95, and the number of cells found. Writes ``touching_cells.json``, ``touching_cells.md`` and
``touching_cells.png`` (a held-out slice: image | true cells | each arm's predicted cells) to ``--out``.
"""
from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from unet_repro.cli.common import make_parser, minutes, run_main
from unet_repro.errors import UsageError
from unet_repro.files import write_json, write_text
from unet_repro.instances import predicted_instances, separation_borders, touching_cells
from unet_repro.metrics.objects import object_report
from unet_repro.provenance import display_path, provenance
from unet_repro.report import object_colours, pyplot, save_figure
from unet_repro.tasks import ISBI, DataOptions, find_data_root
from unet_repro.tasks.isbi import load_all
from unet_repro.training import load_trained, train
from unet_repro.training.validate import foreground

PROG = "python -m experiments.touching_cells"
ARMS = ("instances", "binary", "no_border_weight")
HELD_OUT = 5


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    parser = make_parser(prog, PROG, __doc__)
    parser.add_argument("--out", type=Path, default=Path("runs/touching-cells"), metavar="DIR",
                        help="where the runs and the results go (default: runs/touching-cells)")
    parser.add_argument("--data-root", type=Path, default=None, metavar="DIR",
                        help="the ISBI-2012 folder (default: $UNET_REPRO_DATA/isbi2012, else datasets/isbi2012)")
    parser.add_argument("--arms", default="instances,binary", help=f"which of {', '.join(ARMS)} (default: "
                                                                   f"instances,binary)")
    parser.add_argument("--border-width", type=int, default=1, help="separation border width, 1 or 2 (default 1)")
    parser.add_argument("--val-slices", type=int, default=HELD_OUT, help="the last N slices are held out (default 5)")
    parser.add_argument("--epochs", type=int, default=None, help="epochs (default: the quick preset's)")
    parser.add_argument("--steps-per-epoch", type=int, default=None, help="passes per epoch (default: the preset's)")
    parser.add_argument("--widths", default=None, help="the U-Net's widths (default: the quick preset's)")
    parser.add_argument("--device", default="cpu", help="auto, cpu or cuda (default: cpu)")
    parser.add_argument("--time-limit", type=minutes, default=None, help="minutes per arm (default: none)")
    return parser


def arm_data(arm: str, cells: list[np.ndarray], width: int) -> list[np.ndarray]:
    """The labels an arm trains on: bordered instance labels, or the plain binary mask of the cells."""
    if arm == "binary":
        return [(c != 0).astype(np.uint8) for c in cells]
    return [separation_borders(c, width) for c in cells]


def run(args: argparse.Namespace, prog: str, argv: list[str] | None) -> dict:
    arms = [a.strip() for a in args.arms.split(",") if a.strip()]
    if not arms or any(a not in ARMS for a in arms):
        raise UsageError(f"--arms must name some of {', '.join(ARMS)}, got {args.arms!r}")
    root = find_data_root(ISBI, args.data_root)
    ISBI.check(root, DataOptions(val_slices=args.val_slices))
    data = load_all(root)
    cells = [touching_cells(label) for label in data.labels]
    n = len(cells)
    train_idx, val_idx = list(range(n - args.val_slices)), list(range(n - args.val_slices, n))
    base = ISBI.preset("quick")
    for key in ("epochs", "steps_per_epoch"):
        if getattr(args, key) is not None:
            base = replace(base, **{key: getattr(args, key)})
    if args.widths:
        base = replace(base, widths=tuple(int(w) for w in args.widths.split(",")))
    record = provenance(prog, argv)
    results = {}
    for arm in arms:
        cfg = replace(base, device=args.device, mask_kind="binary" if arm == "binary" else "instances",
                      w0=0.0 if arm == "no_border_weight" else base.w0,
                      extra={"task": "isbi", "preset": "quick", "arm": arm, **record})
        labels = arm_data(arm, cells, args.border_width)
        out = args.out / arm
        t0 = time.monotonic()
        deadline = t0 + 60 * args.time_limit if args.time_limit else None
        summary = train(cfg, [data.images[i] for i in train_idx], [labels[i] for i in train_idx],
                        [data.images[i] for i in val_idx], [labels[i] for i in val_idx], out, deadline=deadline)
        results[arm] = score(out, [data.images[i] for i in val_idx], [cells[i] for i in val_idx])
        results[arm].update({"train_minutes": summary["train_seconds"] / 60, "stop_reason": summary["stop_reason"],
                             "tiles_seen": summary["tiles_seen"], "arithmetic": summary["precision"]["name"]})
        print(f"{arm}: object F1 at IoU 0.5 {results[arm]['f1']:.3f} ({results[arm]['n_pred']} cells found of "
              f"{results[arm]['n_true']}) in {(time.monotonic() - t0) / 60:.1f} min")
    report = {"arms": results, "held_out_slices": val_idx, "border_width": args.border_width, **record,
              "data_root": display_path(root), "config": {k: v for k, v in vars(base).items() if k != "extra"}}
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / "touching_cells.json", report)
    write_text(args.out / "touching_cells.md", render(report))
    draw(args.out, data.images[val_idx[0]], cells[val_idx[0]], arms, val_idx[0])
    return report


def score(run_dir: Path, images: list[np.ndarray], truths: list[np.ndarray]) -> dict:
    trained = load_trained(run_dir / "best.pt", device="cpu")
    preds = [predicted_instances(foreground(trained.predict(image)) > 0.5) for image in images]
    np.savez_compressed(run_dir / "predicted_cells.npz", *preds)
    report = object_report(truths, preds)
    pooled = report["pooled"]
    return {**pooled["at_threshold"], "mean_over_thresholds": pooled["mean_over_thresholds"],
            "n_true": pooled["n_true"], "n_pred": pooled["n_pred"], "best_epoch": trained.epoch}


def draw(out: Path, image: np.ndarray, truth: np.ndarray, arms: list[str], index: int) -> None:
    """A held-out slice: the image, its true touching cells and each arm's predicted cells, in random colours (the
    same colour does not mean the same cell across panels; background black)."""
    plt = pyplot()
    panels = [("image", image, "gray"), (f"true cells ({truth.max()})", object_colours(truth), None)]
    for arm in arms:
        with np.load(out / arm / "predicted_cells.npz") as z:
            pred = z["arr_0"]
        panels.append((f"{arm}: predicted cells ({pred.max()})", object_colours(pred), None))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4.6), squeeze=False)
    for ax, (title, a, cmap) in zip(axes[0], panels):
        ax.imshow(a, cmap=cmap)
        ax.set_title(title, fontsize=10)
        ax.axis("off")
    fig.suptitle(f"held-out ISBI-2012 slice {index}: cells in random colours, background black", fontsize=11)
    fig.tight_layout()
    save_figure(fig, out / "touching_cells.png")


def render(r: dict) -> str:
    rows = "\n".join(f"| {arm} | {a['f1']:.3f} | {a['precision']:.3f} | {a['recall']:.3f} | "
                     f"{a['mean_over_thresholds']['f1']:.3f} | {a['n_pred']} of {a['n_true']} | {a['tiles_seen']} | "
                     f"{a['train_minutes']:.1f} |" for arm, a in r["arms"].items())
    return f"""# Touching cells: separation borders and the weight map of objects, against plain binary masks

Held-out ISBI-2012 slices {r['held_out_slices'][0]}-{r['held_out_slices'][-1]}; the ISBI labels turned into touching
cells (every membrane pixel given to its nearest cell); predicted cells = the 4-connected components of
P(foreground) > 0.5, matched one to one with the true cells. Separation border width {r['border_width']}.

| arm | F1 at IoU 0.5 | precision | recall | F1, mean over IoU 0.5:0.95 | cells found | tiles seen | training min |
|---|---|---|---|---|---|---|---|
{rows}

- Command: `{r['command']}`
- Commit `{r['commit']}`; {r['hardware']}; {r['date']}; seed {r['config']['seed']} (the quick preset: widths
  {tuple(r['config']['widths'])}, {r['config']['epochs']} epochs x {r['config']['steps_per_epoch']} tiles).
- Figure: [touching_cells.png](touching_cells.png) (the first held-out slice).
"""


def main(argv: list[str] | None = None, prog: str | None = None) -> dict:
    parser = build_parser(prog)
    return run_main(lambda: run(parser.parse_args(argv), parser.prog, argv))


if __name__ == "__main__":
    main()
