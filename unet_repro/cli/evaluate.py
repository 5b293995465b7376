"""Score predictions against ground truth: IoU and Dice per class, object precision, recall, F1 and average
precision, and for binary EM the ISBI-2012 challenge metrics; per image and over all images.

    python -m experiments.evaluate --pred predictions --truth my_data/masks --out evaluation
    python -m experiments.evaluate --checkpoint runs/folder-quick/best.pt --images my_data/images \\
        --truth my_data/masks --out evaluation
    python -m experiments.evaluate --pred predictions --truth em_labels --isbi --out evaluation

Predictions: --pred DIR, a folder of ``predict`` outputs (<name>_mask.tif for the pixels and <name>_labels.tif for
the objects; _prob.tif is not read; other files are ignored), or --checkpoint CKPT --images DIR, which predicts
every image first as ``predict`` does (--threshold, --min-size, --tta, --tile, --device) and writes no prediction
files. Truth: --truth DIR, masks paired by name with the predictions (x_mask.tif and x_labels.tif, or the image
x.png, with the mask x.<ext> or x_mask.<ext>; a stack with a stack, page by page), read by the package's one rule
for masks (`unet_repro.data.masks`: binary masks, instance labels or class masks 0..K-1, the kind decided from the
whole set, or forced with --mask-kind and --classes). With --pred, --images DIR (optional) adds the images to the
figure.

What is scored (`unet_repro.evaluation`): pixels, the predicted mask against the true classes (instance labels as
foreground), IoU and Dice of every class, pooled and the mean over images; objects, the predicted labels against
the true objects (instance labels as given, the 4-connected cells of a binary mask, the objects of each class of a
class mask), matched one-to-one at IoU >= 0.5 and over 0.5:0.95; with --isbi (binary truth), pixel, Rand and
warping error, V_Rand and V_Info of the mask as it is (no threshold sweep: that is isbi-eval's), pooled as a stack.

Writes into --out: per_image.csv (one row per image), summary.json (over all images; null where a class is absent
from the truth), evaluation.md (the tables) and worst.png (the --worst images of lowest foreground IoU: image |
truth | prediction, classes on one fixed colour scale). Existing files there are refused unless --overwrite.
"""
from __future__ import annotations

import argparse
import csv
import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..data.folder import MASK_SUFFIX, pair_files
from ..data.images import list_image_files, read_image_file, some_names
from ..data.intensity import scale_percentile
from ..data.masks import KINDS, MaskSet, RawMask, describe_masks, read_mask_file, read_mask_set
from ..errors import DataError, DataNotFoundError, UsageError
from ..evaluation import ISBI_METRICS, Evaluation, evaluate, truth_classes, truth_objects
from ..files import write_json, write_text
from ..prediction import output_name, segment
from ..progress import progress
from ..provenance import display_path, provenance
from ..report import object_colours, pyplot, save_figure
from ..training import Trained, check_device, load_trained
from .common import make_parser, run_main
from .predict import check_flags as check_prediction_flags, check_image, predict_page

PROG = "python -m experiments.evaluate"
FILES = ("per_image.csv", "summary.json", "evaluation.md", "worst.png")
PREDICTING = ("threshold", "min_size", "tta", "tile", "device")  # the flags of --checkpoint only


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    parser = make_parser(prog, PROG, __doc__)
    parser.add_argument("--truth", type=Path, required=True, metavar="DIR", help="the true masks or labels")
    parser.add_argument("--out", type=Path, required=True, metavar="DIR", help="folder for the evaluation's files")
    parser.add_argument("--pred", type=Path, default=None, metavar="DIR",
                        help="a folder of predict outputs (<name>_mask.tif, <name>_labels.tif)")
    parser.add_argument("--checkpoint", type=Path, default=None, metavar="CKPT",
                        help="predict the --images with this best.pt or last.pt first (instead of --pred)")
    parser.add_argument("--images", type=Path, default=None, metavar="DIR",
                        help="the images (needed with --checkpoint; with --pred they only join the figure)")
    parser.add_argument("--mask-kind", choices=KINDS, default=None,
                        help="read the truth as this kind (default: decided from the masks)")
    parser.add_argument("--classes", type=int, default=None, metavar="K",
                        help="the truth holds K classes 0..K-1 (default: the largest value + 1)")
    parser.add_argument("--isbi", action="store_true",
                        help="also the ISBI-2012 challenge metrics (binary EM truth, images of one size)")
    parser.add_argument("--worst", type=int, default=4, metavar="N", help="images in the figure of the worst")
    group = parser.add_argument_group("predicting (with --checkpoint)")
    group.add_argument("--threshold", type=float, default=None,
                       help="the mask is P(foreground) > threshold (default: 0.5; not for K-class networks)")
    group.add_argument("--min-size", type=int, default=None, metavar="N",
                       help="objects of fewer than N pixels are left out (default: 0)")
    group.add_argument("--tile", type=int, default=None, help="input tile side (default: the run's own)")
    group.add_argument("--tta", action="store_true", help="average over the 8 symmetries of the square")
    group.add_argument("--device", default=None, help="auto, cpu, cuda or cuda:N (default: auto)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing files in --out")
    return parser


@dataclass
class Scored:
    """One image to score: its name, its truth as read, the predicted mask and labels, and where its image is
    (file and page, for the figure; None when no image was given)."""

    name: str
    truth: RawMask
    mask: np.ndarray
    labels: np.ndarray
    image: tuple[Path, int] | None


# -- flags and pairing ---------------------------------------------------------------------------------------------

def check_flags(args: argparse.Namespace) -> None:
    if (args.pred is None) == (args.checkpoint is None):
        raise UsageError("give either --pred DIR (predict outputs) or --checkpoint CKPT with --images DIR")
    if args.checkpoint is not None and args.images is None:
        raise UsageError("--checkpoint predicts the images of --images DIR first; give --images")
    if args.pred is not None:
        given = [f"--{f.replace('_', '-')}" for f in PREDICTING if getattr(args, f) not in (None, False)]
        if given:
            verb = "applies" if len(given) == 1 else "apply"
            raise UsageError(f"{', '.join(given)} {verb} only when predicting (--checkpoint); --pred folders are "
                             f"scored as they are")
    if args.worst < 0:
        raise UsageError(f"--worst must be a number of images >= 0, got {args.worst}")
    if args.out.exists() and not args.out.is_dir():
        raise UsageError(f"--out {args.out} is a file; --out names the folder the evaluation goes into")
    existing = [str(args.out / f) for f in FILES if (args.out / f).exists()]
    if existing and not args.overwrite:
        raise UsageError(f"{some_names(existing, 2)} already exist(s); choose another --out or pass --overwrite")


def prediction_files(folder: Path) -> dict[str, dict[str, Path]]:
    """name -> {"mask": path, "labels": path} of the predict outputs in `folder`; `DataError` for a folder without
    any and for a name with one of the two files only."""
    if not folder.is_dir():
        raise DataNotFoundError(f"prediction folder {folder} not found; pass the --out folder of predict")
    found: dict[str, dict[str, Path]] = {}
    for p in sorted(folder.iterdir()):
        for output in ("mask", "labels"):
            tail = output_name("", output)
            if p.is_file() and not p.name.startswith(".") and p.name.endswith(tail):
                found.setdefault(p.name[:-len(tail)], {})[output] = p
    if not found:
        raise DataError(f"{folder} holds no predictions (<name>_mask.tif and <name>_labels.tif, as predict writes "
                        f"them); pass the --out folder of predict")
    for name, files in found.items():
        if len(files) < 2:
            (have, path), = files.items()
            lacking = output_name(name, "labels" if have == "mask" else "mask")
            raise DataError(f"{folder}: {lacking} is missing beside {path.name}; predict writes both: predict again "
                            f"into an empty folder")
    return found


def pair_by_name(names: list[str], folder: Path, what: str, suffix: str | None) -> dict[str, Path]:
    """The file of `folder` for each of `names` (file name without extension, optionally with `suffix`);
    `DataError` naming the unpaired ones of either side and two files for one name."""
    wanted = set(names)
    paired: dict[str, Path] = {}
    for p in list_image_files(folder, what):
        stem = p.stem
        name = stem[:-len(suffix)] if suffix and stem.endswith(suffix) and stem[:-len(suffix)] in wanted else stem
        if name in paired:
            raise DataError(f"{folder} holds two {what} for {name}: {paired[name].name} and {p.name}; keep one")
        paired[name] = p
    lonely = sorted(wanted - set(paired))
    extra = sorted(set(paired) - wanted)
    if lonely or extra:
        parts = ([f"no {what} for {some_names(lonely)} in {folder}"] if lonely else []) + \
                ([f"no prediction for {some_names([paired[n].name for n in extra])}"] if extra else [])
        raise DataError(f"predictions and {what} are paired by name: " + "; ".join(parts)
                        + (f" (a mask may be named like its image, or with a {MASK_SUFFIX} suffix)" if suffix else ""))
    return paired


def page_names(name: str, pages: int) -> list[str]:
    return [name] if pages == 1 else [f"{name}[{k}]" for k in range(pages)]


def check_pages(truth: list[RawMask], truth_path: Path, pages: int, source: Path, what: str) -> None:
    """`DataError` when a truth file has another number of pages than its `what` (its prediction, its image)."""
    if len(truth) != pages:
        raise DataError(f"{truth_path} has {len(truth)} page(s) but its {what} {source} has {pages}; a stack "
                        f"pairs with a stack of as many pages")


def check_sizes(pairs: list[tuple[str, tuple[int, ...], str, tuple[int, ...]]], what: str) -> None:
    """`DataError` naming the first (name, shape, truth name, truth shape) whose `what` (its prediction, its
    image) and truth differ in size."""
    for name, shape, truth_name, truth_shape in pairs:
        if shape[:2] != truth_shape[:2]:
            raise DataError(f"{truth_name} is {truth_shape[1]}x{truth_shape[0]} but its {what} {name} is "
                            f"{shape[1]}x{shape[0]}; a truth mask must have its image's size")


# -- the predictions -----------------------------------------------------------------------------------------------

def read_label_planes(path: Path) -> list[np.ndarray]:
    f = read_image_file(path, palette="index")
    if f.channels != 1 or not np.issubdtype(f.dtype, np.integer):
        raise DataError(f"{path}: expected one channel of integers (as predict writes it), got {f.channels} "
                        f"channel(s) of {f.dtype}")
    return list(f.planes)


def from_predictions(args: argparse.Namespace) -> list[Scored]:
    """The --pred folder's predictions with their truth (and their images, with --images)."""
    files = prediction_files(args.pred)
    names = sorted(files)
    truths = pair_by_name(names, args.truth, "masks", MASK_SUFFIX)
    images = pair_by_name(names, args.images, "images", None) if args.images is not None else {}
    scored = []
    for name in progress(names, "reading"):
        masks, labels = read_label_planes(files[name]["mask"]), read_label_planes(files[name]["labels"])
        if len(masks) != len(labels) or any(m.shape != l.shape for m, l in zip(masks, labels)):
            raise DataError(f"{files[name]['mask']} and {files[name]['labels']} differ in pages or size; predict "
                            f"them again")
        truth = read_mask_file(truths[name])
        check_pages(truth, truths[name], len(masks), files[name]["mask"], "prediction")
        for k, (page, t, m, lab) in enumerate(zip(page_names(name, len(masks)), truth, masks, labels)):
            scored.append(Scored(page, t, m, lab, (images[name], k) if name in images else None))
    return scored


def checkpoint_inputs(args: argparse.Namespace) -> tuple[Trained, float, list[tuple[str, Path, list[RawMask]]]]:
    """The --checkpoint's network, the threshold, and each image paired with its truth, every file read and
    checked before the network runs."""
    check_device(args.device or "auto")
    trained = load_trained(args.checkpoint, device=args.device or "auto")
    threshold = check_prediction_flags(args, trained)
    read = []
    for name, image_path, truth_path in pair_files(args.images, args.truth):
        image = read_image_file(image_path)
        check_image(image, trained)
        truth = read_mask_file(truth_path)
        check_pages(truth, truth_path, image.pages, image_path, "image")
        check_sizes([(page, plane.shape, t.name, t.shape)
                     for page, plane, t in zip(image.names(full=True), image.planes, truth)], "image")
        read.append((name, image_path, truth))
    return trained, threshold, read


def predict_inputs(trained: Trained, threshold: float, read: list[tuple[str, Path, list[RawMask]]],
                   args: argparse.Namespace) -> list[Scored]:
    """Every page of every image predicted and segmented as predict does, paired with its truth."""
    scored = []
    for name, image_path, truth in progress(read, "predicting"):
        image = read_image_file(image_path)
        for k, (page, plane, t) in enumerate(zip(page_names(name, image.pages), image.planes, truth)):
            prob = predict_page(trained, plane, page, args.tile, args.tta)
            mask, labels = segment(prob, threshold, args.min_size or 0)
            scored.append(Scored(page, t, mask, labels, (image_path, k)))
    return scored


def check_network(trained: Trained, mask_set: MaskSet) -> None:
    """`DataError` when the network predicts other classes than the truth holds."""
    k, theirs = mask_set.classes or 2, trained.config.classes or 2
    if theirs != k:
        raise DataError(f"the network of {trained.path} predicts {theirs} classes but the truth masks are "
                        f"{mask_set.kind} ({k} classes); compare a network trained on masks of this kind")


def check_predicted_classes(scored: list[Scored], mask_set: MaskSet) -> None:
    """`DataError` for a predicted mask that holds a class the truth does not have."""
    k = mask_set.classes or 2
    for s in scored:
        top = int(s.mask.max())
        if top >= k:
            hint = "predict writes masks as 0/1" if k == 2 and top == 255 else \
                "compare predictions of a network trained on masks of this kind"
            raise DataError(f"{s.name}: the predicted mask holds class {top}, but the truth masks are {mask_set.kind} "
                            f"({k} classes: 0..{k - 1}); {hint}")


# -- writing -------------------------------------------------------------------------------------------------------

def number(value: Any, digits: int = 4) -> str:
    """A table cell: 'n/a' for NaN or None, integers as they are, other numbers with `digits` decimals."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return str(value) if isinstance(value, (int, np.integer)) else f"{value:.{digits}f}"


def csv_text(rows: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if isinstance(v, float) and math.isnan(v) else v for k, v in row.items()})
    return buffer.getvalue()


OBJECT_LINES = (("precision", "object precision (IoU >= 0.5)", "at_threshold"),
                ("recall", "object recall (IoU >= 0.5)", "at_threshold"),
                ("f1", "object F1 (IoU >= 0.5)", "at_threshold"),
                ("average_precision", "average precision TP / (TP + FP + FN) (IoU >= 0.5)", "at_threshold"),
                ("average_precision", "average precision, mean over IoU 0.5:0.95", "mean_over_thresholds"),
                ("mean_matched_iou", "mean IoU of the matched objects (IoU >= 0.5)", "at_threshold"))
ISBI_NAMES = {"pixel_error": "pixel error", "rand_error": "Rand error", "warping_error": "warping error",
              "v_rand": "V_Rand (thinned)", "v_info": "V_Info (thinned)"}


def markdown(ev: Evaluation, head: list[str]) -> str:
    """evaluation.md: what was compared, the scores over all images (pooled and mean over images), per image."""
    px, ob, k = ev.pixels, ev.objects, ev.n_classes
    lines = ["# Evaluation", "", *[f"- {line}" for line in head], "", "## Over all images", "",
             "| | pooled | mean over images |", "|---|---|---|",
             f"| IoU (foreground{' classes' if k > 2 else ''}) | {number(px['pooled']['mean_iou_foreground'])} | "
             f"{number(px['image_mean']['mean_iou_foreground'])} |",
             f"| Dice (foreground{' classes' if k > 2 else ''}) | {number(px['pooled']['mean_dice_foreground'])} | "
             f"{number(px['image_mean']['mean_dice_foreground'])} |"]
    for metric in ("iou", "dice"):
        for c in range(k):
            lines.append(f"| {'IoU' if metric == 'iou' else 'Dice'} of class {c}{' (background)' if c == 0 else ''} "
                         f"| {number(px['pooled'][metric][c])} | {number(px['image_mean'][metric][c])} |")
    for key, label, where in OBJECT_LINES:
        lines.append(f"| {label} | {number(ob['pooled'][where][key])} | {number(ob['image_mean'][where][key])} |")
    lines.append(f"| objects: true / predicted | {ob['pooled']['n_true']} / {ob['pooled']['n_pred']} | |")
    if ev.isbi is not None:
        for m in ISBI_METRICS:
            flag = " (degenerate: a mask all cell or all membrane)" if ev.isbi[m]["degenerate"] else ""
            lines.append(f"| ISBI {ISBI_NAMES[m]}{flag} | {number(ev.isbi[m]['value'])} | "
                         f"{number(float(np.mean(ev.isbi[m]['per_slice'])))} |")
    columns = ["IoU", "Dice", "objects true / predicted", "precision", "recall", "F1", "AP 0.5", "AP 0.5:0.95"]
    columns += [ISBI_NAMES[m] for m in ISBI_METRICS] if ev.isbi is not None else []
    lines += ["", "## Per image (objects at IoU >= 0.5)", "", "| image | " + " | ".join(columns) + " |",
              "|---" * (len(columns) + 1) + "|"]
    for r in ev.rows():
        cells = [number(r["iou"]), number(r["dice"]), f"{r['n_true']} / {r['n_pred']}", number(r["precision"]),
                 number(r["recall"]), number(r["f1"]), number(r["ap_50"]), number(r["ap_50_95"])]
        cells += [number(r[m], 5) for m in ISBI_METRICS] if ev.isbi is not None else []
        lines.append(f"| {r['image']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def image_plane(where: tuple[Path, int] | None) -> np.ndarray | None:
    """An image for the figure, scaled by its 1st and 99.8th percentiles to [0, 1] (clipped)."""
    if where is None:
        return None
    plane = read_image_file(where[0]).planes[where[1]]
    return np.clip(scale_percentile(plane), 0.0, 1.0)


def worst_figure(path: Path, ev: Evaluation, scored: list[Scored], truth_masks: list[np.ndarray],
                 truth_labels: list[np.ndarray], kind: str, n: int) -> None:
    """worst.png: the `n` worst images, one row each: image | truth | prediction; classes on one fixed scale, or
    for instance labels the true and the predicted objects, each in a random colour."""
    plt = pyplot()
    worst, k, rows = ev.worst(n), ev.n_classes, ev.rows()
    images = [image_plane(scored[i].image) for i in worst]
    columns = 3 if any(a is not None for a in images) else 2
    fig, axes = plt.subplots(len(worst), columns, figsize=(4.0 * columns + 1.0, 4.2 * len(worst)), squeeze=False,
                             layout="constrained")
    cmap = plt.get_cmap("tab10" if k <= 10 else "tab20", k)
    truth_what = {"binary": "foreground", "instances": "foreground of the labels", "classes": "classes"}[kind]
    shown = None
    for row, i, image in zip(axes, worst, images):
        r = rows[i]
        panels = [("truth: " + truth_what, truth_masks[i]), ("prediction: mask", scored[i].mask)]
        if kind == "instances":
            panels = [("truth: objects (random colours)", object_colours(truth_labels[i])),
                      ("prediction: objects (random colours)", object_colours(scored[i].labels))]
        if columns == 3:
            panels.insert(0, ("image (1st-99.8th percentile = black-white)", image))
        header = (f"{r['image']}: IoU {number(r['iou'], 3)}, object F1 {number(r['f1'], 3)} "
                  f"({r['n_true']} true, {r['n_pred']} predicted objects)")
        for column, (ax, (title, a)) in enumerate(zip(row, panels)):
            ax.axis("off")
            ax.set_title(f"{header}\n{title}" if column == 0 else f"\n{title}", fontsize=9,
                         loc="left" if column == 0 else "center")
            if a is None:
                continue
            if title.startswith("image") or a.ndim == 3:
                ax.imshow(a, cmap="gray" if a.ndim == 2 else None, vmin=0.0, vmax=1.0)
            else:
                shown = ax.imshow(a, cmap=cmap, vmin=-0.5, vmax=k - 0.5, interpolation="nearest")
    if shown is not None:
        fig.colorbar(shown, ax=axes.ravel().tolist(), ticks=range(k), fraction=0.03, label="class (0 = background)")
    fig.suptitle(f"the {len(worst)} image(s) of lowest foreground IoU, worst first", fontsize=11)
    save_figure(fig, path)


# -- the command ---------------------------------------------------------------------------------------------------

def describe_predictions(args: argparse.Namespace, trained: Trained | None) -> str:
    if trained is None:
        return f"predictions: {display_path(args.pred)} (the _mask.tif and _labels.tif of predict)"
    rule = (f"the most probable of {trained.config.classes} classes" if trained.config.classes else
            f"P(foreground) > {0.5 if args.threshold is None else args.threshold:g}")
    return (f"predictions: {display_path(args.checkpoint)} on {display_path(args.images)} ({rule}, min size "
            f"{args.min_size or 0}{', --tta' if args.tta else ''})")


def run(args: argparse.Namespace, argv: list[str] | None, prog: str) -> Evaluation:
    check_flags(args)
    trained = None
    if args.pred is not None:
        scored = from_predictions(args)
        raw = [s.truth for s in scored]
        check_sizes([(s.name, s.mask.shape, s.truth.name, s.truth.shape) for s in scored], "prediction")
    else:
        trained, threshold, read = checkpoint_inputs(args)
        raw = [t for _, _, truth in read for t in truth]
    mask_set = read_mask_set(raw, args.mask_kind, args.classes)
    if args.isbi and mask_set.kind != "binary":
        raise UsageError(f"--isbi scores binary EM masks, but the truth masks are {mask_set.kind} ({mask_set.why}); "
                         f"leave out --isbi, or pass --mask-kind binary")
    if args.isbi and len({r.shape for r in raw}) > 1:
        raise DataError(f"--isbi pools a stack of one image size, but the truth masks differ in size "
                        f"({some_names([f'{r.name} {r.shape[1]}x{r.shape[0]}' for r in raw], 2)}); leave out --isbi")
    if trained is not None:
        check_network(trained, mask_set)
        scored = predict_inputs(trained, threshold, read, args)
    check_predicted_classes(scored, mask_set)
    kind, k = mask_set.kind, mask_set.classes or 2
    truth_masks = [truth_classes(m, kind) for m in mask_set.masks]
    truth_labels = [truth_objects(m, kind) for m in mask_set.masks]
    ev = evaluate(truth_masks, [s.mask for s in scored], truth_labels,
                  [s.labels for s in scored], k, [s.name for s in scored], isbi=args.isbi)
    head = [describe_predictions(args, trained), f"truth: {display_path(args.truth)}", *describe_masks(mask_set),
            f"images: {len(scored)}"]
    args.out.mkdir(parents=True, exist_ok=True)
    write_text(args.out / "per_image.csv", csv_text(ev.rows()))
    write_json(args.out / "summary.json", {"predictions": head[0], "truth": display_path(args.truth), "kind": kind,
                                           "truth_read_as": mask_set.why, **ev.summary(),
                                           **provenance(prog, argv)})
    write_text(args.out / "evaluation.md", markdown(ev, head))
    if args.worst:
        worst_figure(args.out / "worst.png", ev, scored, truth_masks, truth_labels, kind, args.worst)
    pooled = ev.summary()
    print(f"{len(scored)} image(s): IoU {number(pooled['pixels']['pooled']['mean_iou_foreground'], 3)} (pooled), "
          f"object F1 {number(pooled['objects']['pooled']['at_threshold']['f1'], 3)}, average precision "
          f"{number(pooled['objects']['pooled']['at_threshold']['average_precision'], 3)} (IoU >= 0.5), "
          f"{number(pooled['objects']['pooled']['mean_over_thresholds']['average_precision'], 3)} (0.5:0.95); "
          f"written to {args.out}")
    return ev


def main(argv: list[str] | None = None, prog: str | None = None) -> Evaluation:
    parser = build_parser(prog)
    return run_main(lambda: run(parser.parse_args(argv), argv, parser.prog))


__all__ = ["build_parser", "main", "pair_by_name", "prediction_files", "run"]
