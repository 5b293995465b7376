"""Score an ISBI-2012 cross-validation run the way the challenge scored submissions, and write ``report.md``.

    python -m experiments.isbi_eval --run runs/isbi-cv-quick
    python -m experiments.isbi_eval --run runs/isbi-cv-quick --predict-test --tta

Reads the held-out probability maps that ``python -m experiments.isbi --folds K`` left in ``RUN/fold_k/``, sweeps
each metric of `unet_repro.metrics.isbi` over the challenge's 10 thresholds and reports it at its best, per fold,
pooled over all held-out slices, and as mean ± std over folds, next to the paper's Table 1. Thresholds at which a
held-out slice is predicted all cell or all membrane (degenerate) are not chosen while another exists; a value that
could only be had at one (every threshold degenerate, e.g. a barely trained model) is flagged with ⚠ in the report and
``degenerate: true`` in ``summary.json``, never shown in bold as a result. Writes ``report.md``,
``summary.json``, ``per_slice.csv`` and figures of the best and worst slices with their errors marked. With
``--predict-test`` the folds' models (averaged) also predict ``test-volume.tif`` into ``test-probabilities.tif``.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import os
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tifffile
from scipy import ndimage

from ..errors import DataNotFoundError, UsageError
from ..files import write_json, write_text
from ..metrics.isbi import DEFAULT_THRESHOLDS, Mismatch, threshold_sweep, warping_mismatches
from ..progress import progress
from ..provenance import display_path, git_commit
from ..report import save_panels
from ..runs import write_stack
from ..tasks import ISBI, DataOptions, Splits, find_data_root
from ..tasks.isbi import load_all, load_test
from ..training import TrainConfig, defining_settings, load_trained, read_result
from .common import make_parser, run_main

PROG = "python -m experiments.isbi_eval"

# Ronneberger et al. 2015, Table 1: U-Net on the ISBI-2012 test set (hidden labels), scored by the organisers.
PAPER = {"warping_error": 0.000353, "rand_error": 0.0382, "pixel_error": 0.0611}
COLUMNS = [("warping_error", "warping error"), ("rand_error", "Rand error"), ("pixel_error", "pixel error"),
           ("topological_error", "topological error"), ("v_rand", "V_Rand"), ("v_info", "V_Info"),
           ("pixel_mismatch", "misclassified")]
#: Marks a value chosen at a degenerate threshold (a held-out slice all cell or all membrane there).
WARN = "⚠"


def read_probs(path: Path) -> np.ndarray:
    probs = tifffile.imread(path)
    return probs[None] if probs.ndim == 2 else probs


@dataclass
class HeldOut:
    """The held-out slices of one trained model (a fold, or a single run): their slice numbers, images, labels
    and the model's P(cell) maps, and the run's result record."""

    name: str
    slices: list[int]
    images: np.ndarray
    labels: np.ndarray
    probs: np.ndarray
    result: dict


def all_cell_scores(labels: np.ndarray) -> dict[str, float]:
    """The challenge's metrics of the trivial prediction "everything is cell" on the held-out labels, pooled as
    for a model: what a segmentation must beat to be one."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # every threshold of a constant map is degenerate
        sweep = threshold_sweep(np.ones(labels.shape, np.float32), labels, thresholds=[0.5])
    return {m: sweep[m]["value"] for m, _ in COLUMNS}


def error_overlay(image: np.ndarray, truth: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """RGB figure of a slice's errors: red = membrane predicted inside a cell, blue = membrane missed, yellow =
    split/merge pixels of the warping error (dilated to be visible)."""
    rgb = np.repeat(image[..., None].astype(np.float32) / 255 * 0.7, 3, axis=2)
    rgb[~pred & truth] = (1.0, 0.15, 0.15)
    rgb[pred & ~truth] = (0.2, 0.4, 1.0)
    mismatches = warping_mismatches(pred, truth)
    topo = np.isin(mismatches, [Mismatch.SPLIT, Mismatch.MERGE])
    rgb[ndimage.binary_dilation(topo, iterations=3)] = (1.0, 0.9, 0.0)
    return (rgb * 255).astype(np.uint8)


def fmt(v: float) -> str:
    return "-" if v is None or not np.isfinite(v) else f"{v:.4g}"


def fmt_flagged(v: float, degenerate: bool, bold: bool = False) -> str:
    """A table cell: ``⚠ value`` (never bold) when the value comes from a degenerate threshold, else the value,
    in bold if asked."""
    if degenerate:
        return f"{WARN} {fmt(v)}"
    return f"**{fmt(v)}**" if bold else fmt(v)


def predict_test_volume(run: Path, folds: list[int], data_root: Path, tta: bool) -> Path:
    """Average the folds' best models over ``test-volume.tif``; write P(cell) as the submission stack."""
    try:
        test = load_test(data_root)
    except DataNotFoundError as e:
        raise DataNotFoundError(f"--predict-test needs the test stack: {e}") from None
    models = [load_trained(run / f"fold_{k}" / "best.pt", task="isbi") for k in folds]
    probs = [np.mean([m.predict(image, tta=tta) for m in models], axis=0)
             for image in progress(test, desc="test slices")]
    out = run / "test-probabilities.tif"
    write_stack(out, probs)
    return out


def fold_units(run: Path, data_root: Path) -> list[HeldOut]:
    """The finished folds of a cross-validation that belong to its design (`folds.json`: the same settings and
    held-out slices)."""
    meta = json.loads((run / "folds.json").read_text())
    data = load_all(data_root)
    units = []
    for k, slices in enumerate(meta["folds"]):
        result = read_result(run / f"fold_{k}")
        if result is None or not result.get("finished", True) or result["split"]["val_slices"] != slices:
            continue
        if meta.get("config") and defining_settings(TrainConfig.from_dict(result["config"])) != meta["config"]:
            continue
        units.append(HeldOut(f"fold {k}", slices, data.images[slices], data.labels[slices],
                             read_probs(run / f"fold_{k}" / "heldout_prob.tif"), result))
    if not units:
        raise UsageError(f"no finished fold of this design in {run} (expected fold_k/final_metrics.json); train the "
                         f"folds with `python -m experiments.isbi --folds K --out {run}` first")
    return units


def evaluate_run(run: Path, data_root: Path, predict_test: bool = False, tta: bool = False,
                 thresholds: np.ndarray = DEFAULT_THRESHOLDS) -> dict:
    """Score the held-out predictions of every finished fold of the cross-validation in `run`; write the report
    files into `run`."""
    meta = json.loads((run / "folds.json").read_text())
    units = fold_units(run, data_root)
    test_path = None
    if predict_test:
        test_path = predict_test_volume(run, [int(u.name.split()[-1]) for u in units], data_root, tta).name
    command = f"{PROG} --run {display_path(run)}" + (" --predict-test" if predict_test else "") + \
        (" --tta" if predict_test and tta else "")
    return score_held_out(run, units, len(meta["folds"]), meta.get("command"), command, thresholds, test_path,
                          {"fold_slices": meta["folds"], "folds_run": [int(u.name.split()[-1]) for u in units]})


def report_single_run(run: Path, splits: Splits, thresholds: np.ndarray = DEFAULT_THRESHOLDS) -> dict:
    """The challenge's metrics of one run's held-out slices (its ``heldout_prob.tif``), beside the paper's Table 1
    and the trivial all-cell prediction: ``report.md`` and a few lines on screen."""
    result = read_result(run)
    slices = splits.description["val_slices"]
    unit = HeldOut(run.name, slices, np.asarray(splits.val.images), np.asarray(splits.val.labels),
                   read_probs(run / "heldout_prob.tif"), result)
    return score_held_out(run, [unit], None, result.get("command"), None, thresholds, None, {})


def score_held_out(out: Path, units: list[HeldOut], folds_total: int | None, train_command: str | None,
                   report_command: str | None, thresholds: np.ndarray, test_path: str | None, extra: dict) -> dict:
    """Sweep each metric over the thresholds per unit and pooled, score the all-cell prediction, draw the best and
    worst slices, and write ``report.md``, ``summary.json`` and ``per_slice.csv``."""
    per_unit, rows = {}, []
    for u in progress(units, desc="scoring held-out slices"):
        sweep = threshold_sweep(u.probs, u.labels, thresholds)
        per_unit[u.name] = {m: sweep[m]["value"] for m, _ in COLUMNS}
        per_unit[u.name]["thresholds"] = {m: sweep[m]["threshold"] for m, _ in COLUMNS}
        per_unit[u.name]["degenerate"] = {m: sweep[m]["degenerate"] for m, _ in COLUMNS}
        per_unit[u.name]["degenerate_thresholds"] = sweep["degenerate_thresholds"]
        for j, i in enumerate(u.slices):
            rows.append({"slice": i, "unit": u.name, **{m: sweep[m]["per_slice"][j] for m, _ in COLUMNS}})
    labels = np.concatenate([u.labels for u in units])
    pooled = threshold_sweep(np.concatenate([u.probs for u in units]), labels, thresholds)
    names = [u.name for u in units]
    first = units[0].result
    summary = {
        "units": names, "folds_total": folds_total, "per_unit": per_unit,
        "pooled": {m: pooled[m]["value"] for m, _ in COLUMNS},
        "pooled_thresholds": {m: pooled[m]["threshold"] for m, _ in COLUMNS},
        "pooled_degenerate": {m: pooled[m]["degenerate"] for m, _ in COLUMNS},
        "pooled_degenerate_thresholds": pooled["degenerate_thresholds"],
        "mean": {m: float(np.mean([per_unit[n][m] for n in names])) for m, _ in COLUMNS},
        "std": {m: float(np.std([per_unit[n][m] for n in names])) for m, _ in COLUMNS},
        # a mean over folds is no result if any fold's value is not
        "mean_degenerate": {m: any(per_unit[n]["degenerate"][m] for n in names) for m, _ in COLUMNS},
        "all_cell": all_cell_scores(labels), "paper_table1": PAPER, "tta": bool(first.get("tta")),
        "train_command": train_command, "train_commits": sorted({u.result.get("commit", "?") for u in units}),
        "report_commit": git_commit(), "report_command": report_command, "hardware": first.get("hardware"),
        "seed": first.get("seed"), "preset": first.get("preset"), "config": first.get("config"),
        "test_probabilities": test_path, "slices": sum((u.slices for u in units), []), **extra,
    }
    write_per_slice(out / "per_slice.csv", rows)
    figures = draw_best_and_worst(out, units, rows, pooled["pixel_error"]["threshold"])
    write_json(out / "summary.json", summary)
    write_text(out / "report.md", render_report(summary, figures))
    print(challenge_lines(summary, out))
    flagged = [label for m, label in COLUMNS if summary["pooled_degenerate"][m]]
    if flagged:
        print(f"warning: {', '.join(flagged)}: every threshold gives a held-out slice with no cell or no membrane "
              f"pixel; the pooled value is not a segmentation result", file=sys.stderr)
    return summary


def write_per_slice(path: Path, rows: list[dict]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_text(path, buffer.getvalue())


def draw_best_and_worst(out: Path, units: list[HeldOut], rows: list[dict], threshold: float) -> list:
    """Figures of the best and worst held-out slices by the challenge's pixel error, at the pooled best threshold."""
    order = sorted(rows, key=lambda r: r["pixel_error"])
    by_name = {u.name: u for u in units}
    figures = []
    for tag, row in (("best", order[0]), ("worst", order[-1])):
        u = by_name[row["unit"]]
        j = u.slices.index(row["slice"])
        name = f"{tag}_slice_{row['slice']:02d}.png"
        errors = (f"errors at threshold {threshold:.1f}\nred: false membrane, blue: missed membrane\n"
                  f"yellow: split/merge (warping error)")
        save_panels(out / name, [("image", u.images[j]), ("P(cell)", u.probs[j]),
                                 (errors, error_overlay(u.images[j], u.labels[j] > 0, u.probs[j] > threshold))],
                    probability=("P(cell)",),
                    title=f"{tag} held-out slice {row['slice']} ({u.name}): pixel error {row['pixel_error']:.4f}, "
                          f"Rand error {row['rand_error']:.4f}")
        figures.append((tag, row["slice"], name))
    return figures


def challenge_lines(s: dict, out: Path) -> str:
    """The screen's summary: the three metrics of Table 1 for the paper, ours and the all-cell prediction."""
    shown = [("warping_error", "warping error"), ("rand_error", "Rand error"), ("pixel_error", "pixel error")]
    n = len(s["slices"])
    head = f"{'':34}" + "".join(f"{label:>15}" for _, label in shown)
    lines = [f"ISBI-2012 challenge metrics on {n} held-out slice(s), each at its best threshold:", head,
             f"{'paper, Table 1 (hidden test set)':34}" + "".join(f"{fmt(PAPER[m]):>15}" for m, _ in shown),
             f"{'ours':34}" + "".join(f"{fmt_flagged(s['pooled'][m], s['pooled_degenerate'][m]):>15}"
                                      for m, _ in shown),
             f"{'all cell (trivial prediction)':34}" + "".join(f"{fmt(s['all_cell'][m]):>15}" for m, _ in shown),
             f"report: {out / 'report.md'}; figures: {out}/*.png"]
    return "\n".join(lines)


def degenerate_sentences(s: dict) -> str:
    """The report's paragraphs on degenerate thresholds (a held-out slice all cell or all membrane there): which
    thresholds were degenerate (pooled), and a warning for every value that could only be had at one. Each
    paragraph is preceded by an empty line; "" when there is nothing to say."""
    lines = []
    if s["pooled_degenerate_thresholds"]:
        lines.append("Degenerate thresholds (pooled; a held-out slice had no cell or no membrane pixel there), not "
                     "chosen while another was available: t = "
                     + ", ".join(f"{t:.1f}" for t in s["pooled_degenerate_thresholds"]) + ".")
    labels = dict(COLUMNS)
    pooled = [m for m, _ in COLUMNS if s["pooled_degenerate"][m]]
    if pooled:
        lines.append(f"{WARN} **Degenerate, not a result:** {', '.join(labels[m] for m in pooled)} (pooled): at "
                     f"every threshold some held-out slice was predicted all membrane or all cell, so the value "
                     f"shown is that of such a prediction (an all-membrane prediction has warping error 0), not of a "
                     f"segmentation.")
    for name in s["units"]:
        flagged = [labels[m] for m, _ in COLUMNS if s["per_unit"][name]["degenerate"][m] and m not in pooled]
        if flagged and len(s["units"]) > 1:
            lines.append(f"{WARN} {name.capitalize()}: {', '.join(flagged)} only at degenerate thresholds (a held-out "
                         f"slice all membrane or all cell); marked {WARN} in the table, also in the mean over folds.")
    return "".join("\n" + line + "\n" for line in lines)


def span(slices: list[int]) -> str:
    return f"{slices[0]}-{slices[-1]}" if slices == list(range(slices[0], slices[-1] + 1)) else \
        ", ".join(map(str, slices))


def render_report(s: dict, figures: list) -> str:
    cfg = s["config"] or {}
    cv = s["folds_total"] is not None
    header = "| | " + " | ".join(label for _, label in COLUMNS) + " |\n|---|" + "---|" * len(COLUMNS) + "\n"
    lines = ["| **paper, Table 1** (hidden test set) | " + " | ".join(fmt(PAPER.get(m)) for m, _ in COLUMNS) + " |"]
    lines.append(f"| **ours{', pooled' if cv else ''}** (held-out slices {span(s['slices'])}) | " + " | ".join(
        fmt_flagged(s['pooled'][m], s['pooled_degenerate'][m], bold=True) for m, _ in COLUMNS) + " |")
    if len(s["units"]) > 1:
        lines.append("| ours, mean ± std over folds | " + " | ".join(
            fmt_flagged(s['mean'][m], s['mean_degenerate'][m]) + f" ± {fmt(s['std'][m])}" for m, _ in COLUMNS)
            + " |")
        for name in s["units"]:
            lines.append(f"| {name} | " + " | ".join(
                fmt_flagged(s["per_unit"][name][m], s["per_unit"][name]["degenerate"][m]) for m, _ in COLUMNS)
                + " |")
    lines.append("| all cell (trivial prediction, same slices) | " + " | ".join(
        fmt(s["all_cell"][m]) for m, _ in COLUMNS) + " |")
    thresholds = " | ".join(f"{s['pooled_thresholds'][m]:.1f}" for m, _ in COLUMNS)
    network = (f"`{s.get('preset')}` preset ({cfg.get('epochs')} epochs x {cfg.get('steps_per_epoch')} passes of "
               f"{cfg.get('batch_size')} tile(s), widths {tuple(cfg.get('widths', ()))})")
    if cv:
        ran = (f"**Reduced protocol:** {len(s['units'])} of {s['folds_total']} folds were run "
               f"({', '.join(s['units'])})" if len(s["units"]) < s["folds_total"] else
               f"All {s['folds_total']} folds were run")
        setting = (f"Our figures are {s['folds_total']}-fold cross-validated on the 30 public *training* slices: each "
                   f"held-out slice is predicted by the model that did not train on it. {ran}, with the {network}.")
    else:
        setting = (f"Our figures are on {len(s['slices'])} public *training* slices held out from training (slices "
                   f"{span(s['slices'])}), predicted by one model trained on the others with the {network}.")
    return f"""# ISBI-2012: the paper's Table 1 and ours

**Not the same test set.** {setting} The paper's figures are on the 30 *test* slices, whose labels are hidden and
which the challenge organisers scored. The two are comparable in kind, not in value; the paper's network was also
trained far longer (10 h on a GPU). The last row is the trivial prediction "everything is cell" on the same slices:
a segmentation has to beat it to be one.

Held-out slices were predicted whole with overlap-tile prediction{' averaged over the 8 symmetries of the square (test-time augmentation)' if s['tta'] else ''}; each metric was evaluated at the challenge's
10 thresholds of P(cell) (0.0, 0.1, ..., 0.9) and is reported at its best threshold, as the challenge did, never at
one where a held-out slice is all cell or all membrane while another threshold is available.

{header}{chr(10).join(lines)}

Best thresholds ({'pooled' if cv else 'ours'}): {thresholds} (same column order).
{degenerate_sentences(s)}
Definitions (`unet_repro/metrics/isbi.py`, following the challenge's Fiji code): pixel error = 1 - F1 of the
cell pixels; Rand error = 1 - foreground-restricted Rand F-score; warping error = split and merge pixels left after
warping the truth towards the prediction with simple-point flips, over all pixels (the challenge's, as in Table 1);
topological error = all pixels left after that warp, also hole and object additions / deletions (Jain et al.
2010; not fooled by an all-membrane prediction, which has warping error 0); V_Rand / V_Info = foreground-restricted
Rand / information F-scores after thinning the predicted boundaries (higher is better, Arganda-Carreras et al.
2015); "misclassified" = fraction of wrong pixels. Errors: lower is better. Cells are 4-connected throughout.

## Figures

{chr(10).join(f'- {tag} held-out slice {i}: [{name}]({name})' for tag, i, name in figures)}

Red: membrane predicted inside a cell; blue: membrane missed; yellow: split/merge pixels of the warping error.

## Provenance

- Training: `{s['train_command']}` at commit(s) {', '.join(f'`{c}`' for c in s['train_commits'])}; seed
  {s['seed']}; {s['hardware']}.
- This report: {f"`{s['report_command']}`" if s['report_command'] else 'written by the training command'} at commit `{s['report_commit']}`.
- Per-slice values: `per_slice.csv`; everything above: `summary.json`.
{'- Test-set submission: `' + s['test_probabilities'] + '` (30 x 512 x 512 float32, P(cell): membrane = 0 like the labels).' if s['test_probabilities'] else ''}
"""


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    parser = make_parser(prog, PROG, __doc__)
    parser.add_argument("--run", type=Path, required=True, metavar="DIR",
                        help="the folder of an `experiments.isbi --folds K` run, holding folds.json (required)")
    parser.add_argument("--data-root", type=Path, metavar="DIR",
                        help="the ISBI-2012 folder (default: $UNET_REPRO_DATA/isbi2012, else the repository's "
                             "datasets/isbi2012)")
    parser.add_argument("--predict-test", action="store_true",
                        help="also predict test-volume.tif with the folds' models (test-probabilities.tif)")
    parser.add_argument("--tta", action="store_true", help="with --predict-test: average over the 8 symmetries")
    return parser


def run(args: argparse.Namespace) -> dict:
    if not (args.run / "folds.json").exists():
        raise UsageError(f"{args.run / 'folds.json'} not found: pass the folder of an "
                         f"`experiments.isbi --folds K` run")
    if args.tta and not args.predict_test:
        raise UsageError("--tta here applies to --predict-test only (the held-out maps were predicted in training)")
    root = recorded_data_root(args.run, args.data_root)
    ISBI.check(root, DataOptions(val_slices=1))
    return evaluate_run(args.run, root, predict_test=args.predict_test, tta=args.tta)


def recorded_data_root(run: Path, given: Path | None) -> Path:
    """The ISBI folder to score against: ``--data-root`` if given, else the one the run recorded (when it is
    still there), else the default lookup; says which."""
    if given is not None:
        print(f"scoring against {given} (--data-root)")
        return given
    recorded = json.loads((run / "folds.json").read_text()).get("data_root")
    if recorded and Path(os.path.expandvars(recorded)).is_dir():
        print(f"scoring against the data the run was trained on: {recorded}")
        return Path(os.path.expandvars(recorded))
    root = find_data_root(ISBI)
    print(f"scoring against {display_path(root)}" + (f" (the run's own data, {recorded}, is not there)"
                                                      if recorded else ""))
    return root


def main(argv: list[str] | None = None, prog: str | None = None) -> dict:
    parser = build_parser(prog)
    return run_main(lambda: run(parser.parse_args(argv)))
