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
import json
import sys
from pathlib import Path

import numpy as np
import tifffile
from scipy import ndimage

from ..errors import DataNotFoundError, UsageError
from ..inference import predict_tiled
from ..metrics.isbi import DEFAULT_THRESHOLDS, Mismatch, threshold_sweep, warping_mismatches
from ..tasks import ISBI, DataOptions, find_data_root
from ..tasks.isbi import load_all, load_test
from ..training import load_trained, progress
from .common import git_commit, make_parser, run_main, save_panels

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
    models = [load_trained(run / f"fold_{k}" / "best.pt", task="isbi").model for k in folds]
    probs = np.stack([np.mean([predict_tiled(m, image, tta=tta) for m in models], axis=0)
                      for image in progress(test, desc="test slices")]).astype(np.float32)
    out = run / "test-probabilities.tif"
    tifffile.imwrite(out, probs, photometric="minisblack")
    return out


def evaluate_run(run: Path, data_root: Path, predict_test: bool = False, tta: bool = False,
                 thresholds: np.ndarray = DEFAULT_THRESHOLDS) -> dict:
    """Score the held-out predictions of every finished fold of `run`; write the report files into `run`."""
    meta = json.loads((run / "folds.json").read_text())
    data = load_all(data_root)
    folds = [k for k in range(len(meta["folds"])) if (run / f"fold_{k}" / "final_metrics.json").exists()]
    if not folds:
        raise UsageError(f"no finished fold in {run} (expected fold_k/final_metrics.json); train the folds with "
                         f"`python -m experiments.isbi --folds K --out {run}` first")
    per_fold, rows, pooled_p, pooled_t, info = {}, [], [], [], {}
    for k in progress(folds, desc="scoring folds"):
        final = json.loads((run / f"fold_{k}" / "final_metrics.json").read_text())
        final["validation_slices"] = idx = final["split"]["val_slices"]
        probs, truth = read_probs(run / f"fold_{k}" / "heldout_prob.tif"), data.labels[idx]
        sweep = threshold_sweep(probs, truth, thresholds)
        per_fold[k] = {m: sweep[m]["value"] for m, _ in COLUMNS}
        per_fold[k]["thresholds"] = {m: sweep[m]["threshold"] for m, _ in COLUMNS}
        per_fold[k]["degenerate"] = {m: sweep[m]["degenerate"] for m, _ in COLUMNS}
        per_fold[k]["degenerate_thresholds"] = sweep["degenerate_thresholds"]
        for j, i in enumerate(idx):
            rows.append({"slice": i, "fold": k, **{m: sweep[m]["per_slice"][j] for m, _ in COLUMNS}})
        pooled_p.append(probs)
        pooled_t.append(truth)
        info[k] = final
    pooled = threshold_sweep(np.concatenate(pooled_p), np.concatenate(pooled_t), thresholds)
    overall = {m: pooled[m]["value"] for m, _ in COLUMNS}
    overall_t = {m: pooled[m]["threshold"] for m, _ in COLUMNS}
    overall_degenerate = {m: pooled[m]["degenerate"] for m, _ in COLUMNS}
    mean = {m: float(np.mean([per_fold[k][m] for k in folds])) for m, _ in COLUMNS}
    std = {m: float(np.std([per_fold[k][m] for k in folds])) for m, _ in COLUMNS}
    # a mean over folds is no result if any fold's value is not
    mean_degenerate = {m: any(per_fold[k]["degenerate"][m] for k in folds) for m, _ in COLUMNS}

    with open(run / "per_slice.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    # Best and worst held-out slices by the challenge's pixel error, at the pooled best threshold.
    order = sorted(rows, key=lambda r: r["pixel_error"])
    figures = []
    for tag, row in (("best", order[0]), ("worst", order[-1])):
        i, k = row["slice"], row["fold"]
        j = info[k]["validation_slices"].index(i)
        prob = read_probs(run / f"fold_{k}" / "heldout_prob.tif")[j]
        name = f"{tag}_slice_{i:02d}.png"
        threshold = pooled["pixel_error"]["threshold"]
        errors = (f"errors at threshold {threshold:.1f}\nred: false membrane, blue: missed membrane\n"
                  f"yellow: split/merge (warping error)")
        save_panels(run / name, [("image", data.images[i]), ("P(cell)", prob),
                                 (errors, error_overlay(data.images[i], data.labels[i] > 0, prob > threshold))],
                    probability=("P(cell)",),
                    title=f"{tag} held-out slice {i} (fold {k}): pixel error {row['pixel_error']:.4f}, "
                          f"Rand error {row['rand_error']:.4f}")
        figures.append((tag, i, name))
    predict_test_path = None
    if predict_test:
        test_path = predict_test_volume(run, folds, data_root, tta)
        predict_test_path = test_path.name

    first = info[folds[0]]
    summary = {"folds_run": folds, "folds_total": len(meta["folds"]), "fold_slices": meta["folds"],
               "per_fold": per_fold, "pooled": overall, "pooled_thresholds": overall_t,
               "pooled_degenerate": overall_degenerate,
               "pooled_degenerate_thresholds": pooled["degenerate_thresholds"], "mean": mean, "std": std,
               "mean_degenerate": mean_degenerate,
               "paper_table1": PAPER, "tta": bool(first.get("tta")), "train_command": meta.get("command"),
               "train_commits": sorted({info[k].get("commit", "?") for k in folds}),
               "report_commit": git_commit(), "report_command": f"{PROG} --run {run}"
               + (" --predict-test" if predict_test else "") + (" --tta" if predict_test and tta else ""), "hardware": first.get("hardware"), "seed": first.get("seed"),
               "config": first.get("config"), "test_probabilities": predict_test_path}
    (run / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    (run / "report.md").write_text(render_report(summary, folds, per_fold, info, figures))
    print(f"pooled over {len(rows)} held-out slices: "
          + ", ".join(f"{label} {fmt_flagged(overall[m], overall_degenerate[m])}" for m, label in COLUMNS)
          + f"; report in {run / 'report.md'}")
    flagged = [label for m, label in COLUMNS if overall_degenerate[m]]
    if flagged:
        print(f"warning: {', '.join(flagged)}: every threshold gives a held-out slice with no cell or no membrane "
              f"pixel; the pooled value is not a segmentation result", file=sys.stderr)
    return summary


def degenerate_sentences(s: dict, folds: list[int], per_fold: dict) -> str:
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
    for k in folds:
        fold = [labels[m] for m, _ in COLUMNS if per_fold[k]["degenerate"][m] and m not in pooled]
        if fold:
            lines.append(f"{WARN} Fold {k}: {', '.join(fold)} only at degenerate thresholds (a held-out slice all "
                         f"membrane or all cell); marked {WARN} in the table, also in the mean over folds.")
    return "".join("\n" + line + "\n" for line in lines)


def render_report(s: dict, folds: list[int], per_fold: dict, info: dict, figures: list) -> str:
    cfg = s["config"] or {}
    header = "| | " + " | ".join(label for _, label in COLUMNS) + " |\n|---|" + "---|" * len(COLUMNS) + "\n"
    lines = ["| **paper, Table 1** (hidden test set) | " + " | ".join(
        fmt(PAPER.get(m)) for m, _ in COLUMNS) + " |"]
    lines.append("| **ours, pooled** (all held-out slices) | " + " | ".join(
        fmt_flagged(s['pooled'][m], s['pooled_degenerate'][m], bold=True) for m, _ in COLUMNS) + " |")
    if len(folds) > 1:
        lines.append("| ours, mean ± std over folds | " + " | ".join(
            fmt_flagged(s['mean'][m], s['mean_degenerate'][m]) + f" ± {fmt(s['std'][m])}" for m, _ in COLUMNS)
            + " |")
    for k in folds:
        sl = info[k]["validation_slices"]
        lines.append(f"| fold {k} (slices {sl[0]}-{sl[-1]}) | " + " | ".join(
            fmt_flagged(per_fold[k][m], per_fold[k]["degenerate"][m]) for m, _ in COLUMNS) + " |")
    thresholds = " | ".join(f"{s['pooled_thresholds'][m]:.1f}" for m, _ in COLUMNS)
    degenerate_note = degenerate_sentences(s, folds, per_fold)
    ran = (f"fold {folds[0]} of {s['folds_total']} was run" if len(folds) == 1 else
           f"{len(folds)} of {s['folds_total']} folds were run (folds {', '.join(map(str, folds))})")
    reduced = (f"**Reduced protocol:** {ran}, with the `{info[folds[0]].get('preset')}` preset "
               f"({cfg.get('epochs')} epochs x {cfg.get('steps_per_epoch')} tiles, widths "
               f"{tuple(cfg.get('widths', ()))}).\n" if len(folds) < s["folds_total"] else
               f"All {s['folds_total']} folds were run with the `{info[folds[0]].get('preset')}` preset.\n")
    return f"""# ISBI-2012: cross-validated reproduction of the paper's Table 1

**Not the same test set.** Our figures are {s['folds_total']}-fold cross-validated on the 30 public *training*
slices: each held-out slice is predicted by the model that did not train on it. The paper's figures are on the 30
*test* slices, whose labels are hidden and which the challenge organisers scored. The two are comparable in kind, not
in value; the paper's network was also trained far longer (10 h on a GPU).

{reduced}
Held-out slices were predicted whole with overlap-tile prediction{' averaged over the 8 symmetries of the square (test-time augmentation)' if s['tta'] else ''}; each metric was evaluated at the challenge's
10 thresholds of P(cell) (0.0, 0.1, ..., 0.9) and is reported at its best threshold, as the challenge did, never at
one where a held-out slice is all cell or all membrane while another threshold is available.

{header}{chr(10).join(lines)}

Best thresholds (pooled): {thresholds} (same column order).
{degenerate_note}
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
- This report: `{s['report_command']}` at commit `{s['report_commit']}`.
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
    root = find_data_root(ISBI, args.data_root)
    ISBI.check(root, DataOptions(val_slices=1))
    if not (args.run / "folds.json").exists():
        raise UsageError(f"{args.run / 'folds.json'} not found: pass the folder of an "
                         f"`experiments.isbi --folds K` run")
    if args.tta and not args.predict_test:
        raise UsageError("--tta here applies to --predict-test only (the held-out maps were predicted in training)")
    return evaluate_run(args.run, root, predict_test=args.predict_test, tta=args.tta)


def main(argv: list[str] | None = None, prog: str | None = None) -> dict:
    parser = build_parser(prog)
    return run_main(lambda: run(parser.parse_args(argv)))
