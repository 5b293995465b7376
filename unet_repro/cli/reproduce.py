"""Reproduce the paper's results within a time budget, on whatever hardware this is.

    python -m experiments.reproduce --minutes 60
    python -m experiments.reproduce --minutes 540 --out runs/reproduce       # call again to go on

Picks the preset from the hardware: on a GPU the paper's network and settings (`paper` ISBI preset; PH2's best cell,
unet_same + Tversky, at the paper's base width 64), on a CPU the `cpu` presets. Then, within the budget:

1. ISBI-2012 (the paper's Table 1): the next unfinished fold of the 6-fold cross-validation of the 30 training
   slices (`experiments.isbi --folds 6`), scored with test-time augmentation; an interrupted fold continues;
2. PH2, when its data is there: the PH2 cell for 3 seeds (`experiments.ph2`).

A training that would overrun the budget stops cleanly (saved, resumable) and the next call continues it; a unit is
reported only when it is finished. Every call rewrites ``REPRODUCTION.md`` and ``reproduction.json`` in ``--out``:
Table 1 and ours side by side (pooled over the finished folds, beside the trivial all-cell prediction), the folds
and seeds done, hardware, precision, commits, tiles seen and minutes per unit, and the calls made so far.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import DataNotFoundError, UsageError
from ..files import write_json, write_text
from ..progress import duration
from ..provenance import display_path, provenance
from ..tasks import ISBI, PH2, DataOptions, find_data_root
from ..training import is_finished, read_result
from . import isbi as isbi_command
from . import ph2 as ph2_command
from .common import make_parser, minutes, run_main

PROG = "python -m experiments.reproduce"
FOLDS = 6
SEEDS = (0, 1, 2)
PH2_CELL = ("unet_same", "tversky")  # the best cell of the PH2 grid (results/ph2_quick)
# The literature's PH2 test Jaccard (README, "Paper vs ours"): what the PH2 unit is compared with.
PH2_LITERATURE = "0.80-0.87"
# Flags of the training commands that reproduce passes on (for short runs and tests).
PASSED = ("epochs", "steps_per_epoch", "widths", "base_width", "batch_size", "workers", "tile", "device", "lr")


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    parser = make_parser(prog, PROG, __doc__)
    parser.add_argument("--minutes", type=minutes, required=True, help="the budget of this call, in minutes")
    parser.add_argument("--out", type=Path, default=Path("runs/reproduce"), metavar="DIR",
                        help="where the runs and the report go (default: runs/reproduce)")
    parser.add_argument("--isbi-root", type=Path, default=None, metavar="DIR",
                        help="the ISBI-2012 folder (default: $UNET_REPRO_DATA/isbi2012, else datasets/isbi2012)")
    parser.add_argument("--ph2-root", type=Path, default=None, metavar="DIR",
                        help="the PH2 folder (default: $UNET_REPRO_DATA/ph2); PH2 is skipped when it is not there")
    parser.add_argument("--preset", choices=["auto", "paper", "cpu", "quick"], default="auto",
                        help="auto: paper on a GPU, cpu on a CPU; quick: minutes, to see the pipeline")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    short = parser.add_argument_group("for short runs (passed on to every training; default: the presets')")
    for flag, kind, text in (("--epochs", int, "epochs"), ("--steps-per-epoch", int, "forward passes per epoch"),
                             ("--widths", str, "the U-Net's channels per level, e.g. 16,32,64,128,256"),
                             ("--base-width", int, "first-level channels (PH2's network)"),
                             ("--batch-size", int, "tiles per forward pass"), ("--workers", int, "data workers"),
                             ("--tile", int, "input tile side"), ("--lr", float, "learning rate")):
        short.add_argument(flag, type=kind, help=f"{text} (default: the preset's)")
    short.add_argument("--size", type=int, help="PH2 image side (default 256)")
    return parser


def choose_presets(preset: str, device: str) -> tuple[str, str, dict[str, Any]]:
    """(ISBI preset, PH2 preset, extra PH2 flags) for this hardware."""
    gpu = torch.cuda.is_available() if device == "auto" else device.startswith("cuda")
    if preset == "auto":
        preset = "paper" if gpu else "cpu"
    if preset == "paper":
        return "paper", "cpu", {"base_width": "64"}  # the PH2 cell's recipe at the paper's width
    return preset, preset, {}


def passed_flags(args: argparse.Namespace) -> list[str]:
    flags = []
    for key in PASSED:
        value = getattr(args, key, None)
        if value is not None:
            flags += [f"--{key.replace('_', '-')}", str(value)]
    return flags


def run(args: argparse.Namespace, prog: str, argv: list[str] | None) -> dict:
    start = time.monotonic()
    deadline = start + 60 * args.minutes
    isbi_preset, ph2_preset, ph2_extra = choose_presets(args.preset, args.device)
    isbi_root = find_data_root(ISBI, args.isbi_root)
    ISBI.check(isbi_root, DataOptions(val_slices=1))
    out = args.out
    record = provenance(prog, argv)
    done: list[str] = []

    cv = out / f"isbi-cv-{isbi_preset}"
    fold = next((k for k in range(FOLDS) if not is_finished(cv / f"fold_{k}")), None)
    if fold is not None:
        left = (deadline - time.monotonic()) / 60
        print(f"reproduce: ISBI-2012 fold {fold} of {FOLDS} ({isbi_preset} preset), {left:.1f} min left")
        isbi_command.main(["--data-root", str(isbi_root), "--preset", isbi_preset, "--folds", str(FOLDS),
                           "--fold-list", str(fold), "--tta", "--out", str(cv), "--time-limit", f"{left:.3f}",
                           *passed_flags(args)], prog=f"{prog} (isbi)")
        done.append(f"ISBI fold {fold}" + ("" if is_finished(cv / f"fold_{fold}") else " (not finished)"))

    ph2_root = find_data_root(PH2, args.ph2_root)
    ph2_out = out / f"ph2-{ph2_preset}"
    left = (deadline - time.monotonic()) / 60
    if ph2_root is not None and _has_ph2(ph2_root) and left > 1:
        print(f"reproduce: PH2 {PH2_CELL[0]} + {PH2_CELL[1]}, seeds {','.join(map(str, SEEDS))}, {left:.1f} min left")
        ph2_flags = [*passed_flags(args), *(["--size", str(args.size)] if args.size else [])]
        for key, value in ph2_extra.items():
            if f"--{key.replace('_', '-')}" not in ph2_flags:
                ph2_flags += [f"--{key.replace('_', '-')}", value]
        ph2_command.main(["--data-root", str(ph2_root), "--preset", ph2_preset, "--models", PH2_CELL[0],
                          "--losses", PH2_CELL[1], "--seeds", ",".join(map(str, SEEDS)), "--out", str(ph2_out),
                          "--time-limit", f"{left:.3f}", *ph2_flags], prog=f"{prog} (ph2)")
        done.append("PH2")
    elif ph2_root is None or not _has_ph2(ph2_root):
        print("reproduce: PH2 data not found; skipped (datasets/README.md says how to get it)")

    call = {**record, "minutes_budget": args.minutes, "minutes_used": (time.monotonic() - start) / 60,
            "worked_on": done}
    return write_report(out, cv, ph2_out, call)


def _has_ph2(root: Path) -> bool:
    try:
        PH2.check(root, DataOptions())
    except DataNotFoundError:
        return False
    return True


def fold_rows(cv: Path) -> list[dict]:
    rows = []
    for k in range(FOLDS):
        result = read_result(cv / f"fold_{k}")
        state = "finished" if is_finished(cv / f"fold_{k}") else ("in progress" if (cv / f"fold_{k}" / "last.pt")
                                                                 .exists() else "not started")
        row = {"fold": k, "state": state}
        if result is not None:
            row.update({"tiles_seen": result.get("tiles_seen"), "epochs_done": result.get("epochs_done"),
                        "minutes": (result.get("wall_seconds") or 0) / 60, "precision": result.get("precision"),
                        "commit": result.get("commit"), "hardware": result.get("hardware"),
                        "stop_reason": result.get("stop_reason")})
        rows.append(row)
    return rows


def seed_rows(ph2_out: Path) -> list[dict]:
    rows = []
    for seed in SEEDS:
        cell = ph2_out / f"{PH2_CELL[0]}-{PH2_CELL[1]}-s{seed}"
        result = read_result(cell)
        row = {"seed": seed, "state": "finished" if is_finished(cell) else
               ("in progress" if (cell / "last.pt").exists() else "not started")}
        if result is not None and is_finished(cell):
            row.update({"test_jaccard": result["test_per_image"]["iou"]["mean"],
                        "test_dice": result["test_per_image"]["dice"]["mean"],
                        "minutes": (result.get("wall_seconds") or 0) / 60, "tiles_seen": result.get("tiles_seen"),
                        "precision": result.get("precision"), "commit": result.get("commit"),
                        "hardware": result.get("hardware")})
        rows.append(row)
    return rows


def write_report(out: Path, cv: Path, ph2_out: Path, call: dict) -> dict:
    """``REPRODUCTION.md`` and ``reproduction.json`` from what is finished so far."""
    out.mkdir(parents=True, exist_ok=True)
    previous = json.loads((out / "reproduction.json").read_text()) if (out / "reproduction.json").exists() else {}
    summary_path = cv / "summary.json"
    isbi = json.loads(summary_path.read_text()) if summary_path.exists() else None
    folds, seeds = fold_rows(cv), seed_rows(ph2_out)
    report = {"calls": [*previous.get("calls", []), call], "isbi_folds": folds, "ph2_seeds": seeds,
              "isbi": None if isbi is None else {k: isbi[k] for k in ("pooled", "pooled_degenerate", "all_cell",
                                                                        "paper_table1", "units", "tta")},
              "isbi_run": display_path(cv), "ph2_run": display_path(ph2_out)}
    write_json(out / "reproduction.json", report)
    write_text(out / "REPRODUCTION.md", render(report))
    print(f"reproduce: {', '.join(call['worked_on']) or 'nothing left to do'} in "
          f"{duration(call['minutes_used'] * 60)}; report in {out / 'REPRODUCTION.md'}")
    return report


def render(r: dict) -> str:
    from .isbi_eval import COLUMNS, PAPER, fmt, fmt_flagged
    shown = [(m, label) for m, label in COLUMNS if m in ("warping_error", "rand_error", "pixel_error")]
    header = "| | " + " | ".join(label for _, label in shown) + " |\n|---|" + "---|" * len(shown)
    finished = [f for f in r["isbi_folds"] if f["state"] == "finished"]
    lines = [f"| paper, Table 1 (hidden test set) | " + " | ".join(fmt(PAPER[m]) for m, _ in shown) + " |"]
    if r["isbi"] is not None and finished:
        isbi = r["isbi"]
        lines.append(f"| ours, {len(finished)} of {FOLDS} folds pooled ({', '.join(isbi['units'])}) | " + " | ".join(
            fmt_flagged(isbi["pooled"][m], isbi["pooled_degenerate"][m], bold=True) for m, _ in shown) + " |")
        lines.append("| all cell (trivial prediction, same slices) | " + " | ".join(
            fmt(isbi["all_cell"][m]) for m, _ in shown) + " |")
    else:
        lines.append("| ours | no fold finished yet | | |")
    fold_lines = [f"| {f['fold']} | {f['state']} | {f.get('epochs_done', '-')} | {f.get('tiles_seen', '-')} | "
                  f"{f['minutes']:.1f} |" if "minutes" in f else f"| {f['fold']} | {f['state']} | - | - | - |"
                  for f in r["isbi_folds"]]
    seed_lines = []
    for s in r["ph2_seeds"]:
        if "test_jaccard" in s:
            seed_lines.append(f"| {s['seed']} | finished | {s['test_jaccard']:.4f} | {s['test_dice']:.4f} | "
                              f"{s['minutes']:.1f} |")
        else:
            seed_lines.append(f"| {s['seed']} | {s['state']} | - | - | - |")
    jaccards = [s["test_jaccard"] for s in r["ph2_seeds"] if "test_jaccard" in s]
    ph2_line = (f"Test Jaccard over {len(jaccards)} finished seed(s): **{np.mean(jaccards):.3f} ± {np.std(jaccards):.3f}** "
                f"(literature: {PH2_LITERATURE})." if jaccards else "No PH2 seed finished yet.")
    sources = [*(f for f in r["isbi_folds"] if "hardware" in f), *(s for s in r["ph2_seeds"] if "hardware" in s)]
    hardware = sorted({s["hardware"] for s in sources if s.get("hardware")})
    precision = sorted({(s.get("precision") or {}).get("name", "?") for s in sources})
    commits = sorted({s["commit"] for s in sources if s.get("commit")})
    calls = "\n".join(f"- {c['date']}: `{c['command']}` at `{c['commit']}`: {c['minutes_used']:.1f} of "
                      f"{c['minutes_budget']:g} min; {', '.join(c['worked_on']) or 'nothing left to do'}"
                      for c in r["calls"])
    return f"""# Reproducing the U-Net paper: where this reproduction stands

Written by `python -m experiments.reproduce` (`unet_repro/cli/reproduce.py`) after every call; a unit is reported
only when it is finished. Runs: `{r['isbi_run']}` (ISBI-2012) and `{r['ph2_run']}` (PH2).

## ISBI-2012, Table 1

**Not the same test set**: ours are 6-fold cross-validated on the 30 public training slices, each held-out slice
predicted (with test-time augmentation) by the model that did not train on it; the paper's are on the hidden test
slices, scored by the organisers. Each metric at its best threshold, as the challenge did.

{header}
{chr(10).join(lines)}

| fold | state | epochs | tiles seen | minutes |
|---|---|---|---|---|
{chr(10).join(fold_lines)}

## PH2 (unet_same + Tversky, 3 seeds)

{ph2_line}

| seed | state | test Jaccard | test Dice | minutes |
|---|---|---|---|---|
{chr(10).join(seed_lines)}

## How it was made

- Hardware: {'; '.join(hardware) or '-'}
- Precision: {'; '.join(precision) or '-'}
- Training commits: {', '.join(f'`{c}`' for c in commits) or '-'}
- Calls:
{calls}
"""


def main(argv: list[str] | None = None, prog: str | None = None) -> dict:
    parser = build_parser(prog)
    return run_main(lambda: run(parser.parse_args(argv), parser.prog, argv))


__all__ = ["build_parser", "main", "run"]
