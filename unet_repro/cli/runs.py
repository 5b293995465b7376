"""One training run from the command line, the same for every task: check the data and the flags in the first
seconds, claim the run folder, train, then score the best checkpoint once on the held-out images and write the
run's results (``final_metrics.json``, figures)."""
from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from ..errors import UsageError
from ..files import atomic_write
from ..tasks import DataInfo, DataOptions, Images, Splits, Task
from ..training import (Distributed, RunLog, TrainConfig, claim_run_dir, evaluate, finished_reason, load_checkpoint,
                        output_tile, train)
from ..training.checkpoint import resume_point
from ..training.loop import resume_changes
from .common import build_config, check_data, data_options, load_trained, provenance, save_panels, show_config

# What a finished run adds to its folder beside the training files (deleted with them by --overwrite).
RESULT_FILES = ("final_metrics.json", "heldout_prob.tif", "val_*.png", "test_metrics.json")
FINISHED = "final_metrics.json"


@dataclass
class RunPlan:
    """Everything a run needs, decided and checked before any data is loaded."""

    task: Task
    cfg: TrainConfig
    out: Path
    resume: Path | None
    root: Path | None
    options: DataOptions
    info: DataInfo


def plan_run(task: Task, args: argparse.Namespace, prog: str, argv: list[str] | None, out: Path | None = None,
             resume: Path | None = None, claim: bool = True) -> RunPlan | None:
    """Check the data and the configuration, decide the run folder and claim it; None after ``--show-config``.

    The folder: ``--out``, else the resumed checkpoint's own folder, else ``runs/<task>-<preset>``. A finished run
    (its ``final_metrics.json`` written, nothing left to train) is refused with what to do; a new run refuses a
    folder holding another run unless ``--overwrite`` (`unet_repro.training.run_dir.claim_run_dir`).
    """
    resume = resume if resume is not None else getattr(args, "resume", None)
    resume = resume_point(resume) if resume is not None else None
    args = argparse.Namespace(**{**vars(args), "resume": resume})
    if resume is not None:
        args = with_saved_data_flags(task, args, resume)
    root, info = check_data(task, args)
    cfg = build_config(task, args, info)
    if getattr(args, "show_config", False):
        show_config(cfg)
        return None
    preset = cfg.extra.get("preset") if resume else (args.preset or task.default_preset)
    record = provenance(prog, argv)
    if resume is not None:
        saved = dict(cfg.extra)
        cfg = replace(cfg, extra={**saved, "resumed": [*saved.get("resumed", []), record]})
    else:
        data = {k: str(v) if isinstance(v, Path) else v for k, v in asdict(data_options(args)).items()
                if k in task.data_flags}
        cfg = replace(cfg, extra={"task": task.name, "preset": preset, "data_root": str(root) if root else None,
                                  **data, **record})
    out = out or getattr(args, "out", None) or (Path(resume).parent if resume else Path("runs") / f"{task.name}-{preset}")
    out = Path(out)
    reason = None
    if resume is not None:
        ckpt = load_checkpoint(resume, task=task.name)
        resume_changes(ckpt["config"], cfg, resume, ckpt["epoch"] + 1)  # refuses what a resume cannot change
        reason = finished_reason(ckpt, cfg)
        if reason and (out / FINISHED).exists():
            raise UsageError(f"the run in {out} is finished ({reason}; best epoch {ckpt.get('best_epoch')}); to train "
                             f"it longer, resume with a larger --epochs (it has {cfg.epochs})"
                             + (" or --patience" if cfg.patience else ""))
    if claim and Distributed.from_env().is_main:
        claim_run_dir(out, resume, getattr(args, "overwrite", False), extra_files=RESULT_FILES)
        if resume is not None and not reason:
            (out / FINISHED).unlink(missing_ok=True)  # training goes on: the run is no longer finished
    return RunPlan(task, cfg, out, resume, root, data_options(args), info)


def with_saved_data_flags(task: Task, args: argparse.Namespace, resume: Path) -> argparse.Namespace:
    """A resumed run reads its data as it was first read: data flags not given now come from the checkpoint."""
    extra = load_checkpoint(resume, task=task.name)["config"].get("extra", {}) or {}
    saved = {}
    for key in (*task.data_flags, "data_root"):
        given, old = getattr(args, key, None), extra.get(key)
        if old is None:
            continue
        old = Path(old) if key in ("images", "masks", "data_root") else old
        if given is None:
            saved[key] = old
        elif key != "data_root" and given != old:  # the data may move, but not change
            raise UsageError(f"--{key.replace('_', '-')} {given} differs from the resumed run's {old}; a resumed run "
                             f"reads its data as it was first read: leave the flag out")
    if "data_root" in saved and not saved["data_root"].exists():  # moved since: look for it as a new run would
        del saved["data_root"]
    return argparse.Namespace(**{**vars(args), **saved})


def train_planned(plan: RunPlan, splits: Splits, tta: bool = False) -> dict[str, Any]:
    """Train the planned run on `splits`, then `finish_run`."""
    summary = train(plan.cfg, splits.train.images, splits.train.labels, splits.val.images, splits.val.labels,
                    plan.out, resume=plan.resume)
    if not Distributed.from_env().is_main:  # under torchrun, rank 0 alone evaluates and writes
        return summary
    return finish_run(plan, splits, summary, tta)


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Atomically: a killed write never leaves half a results file (``final_metrics.json`` marks a finished run)."""
    with atomic_write(path) as f:
        f.write(json.dumps(data, indent=2, default=str).encode())


def _names_for_files(images: Images) -> list[str]:
    return [n.replace(" ", "_").replace("/", "_") for n in images.names]


def finish_run(plan: RunPlan, splits: Splits, summary: dict[str, Any], tta: bool = False) -> dict[str, Any]:
    """Score the best checkpoint once on the validation images (and a labelled test split): figures of each
    validation image (image | label | P(foreground) on a 0-1 scale), ``heldout_prob.tif`` and
    ``final_metrics.json`` (metrics, the stop reason, the configuration and how the result was made)."""
    out, cfg = plan.out, plan.cfg
    log = RunLog(out)
    trained = load_trained(out / "best.pt", device=cfg.device)
    tile = output_tile(trained.model, trained.config.tile)
    log(f"scoring best.pt (epoch {trained.checkpoint['epoch']}) on {len(splits.val)} validation image(s)"
        + (" with test-time augmentation" if tta else ""))
    metrics, probs = evaluate(trained.model, splits.val.images, splits.val.labels, loss=cfg.loss, tile=tile,
                              tta=tta, w0=cfg.w0, sigma=cfg.sigma, show_progress=True)
    for name, image, label, p in zip(_names_for_files(splits.val), splits.val.images, splits.val.labels, probs):
        save_panels(out / f"val_{name}.png", [("image", image), ("label (foreground = white)", label),
                                              ("P(foreground)", p)], probability=("P(foreground)",),
                    title=f"{name}: best.pt of {out.name}")
    if len({p.shape for p in probs}) == 1:
        tifffile.imwrite(out / "heldout_prob.tif", np.stack(probs).astype(np.float32), photometric="minisblack")
    result: dict[str, Any] = {
        "validation": metrics, "validation_images": splits.val.names, "tta": tta,
        "best_epoch": trained.checkpoint["epoch"], "stop_reason": summary["stop_reason"],
        "optimizer_steps": summary["optimizer_steps"], "precision": summary.get("precision"),
        "tiles_per_s_last_epoch": summary["tiles_per_s"], "split": splits.description,
        **{k: v for k, v in cfg.extra.items()}, "seed": cfg.seed, "config": asdict(cfg),
    }
    if splits.test is not None and splits.test.labels is not None:
        log(f"scoring best.pt on {len(splits.test)} test image(s)")
        test, _ = evaluate(trained.model, splits.test.images, splits.test.labels, loss=cfg.loss, tile=tile, tta=tta,
                           w0=cfg.w0, sigma=cfg.sigma, show_progress=True)
        result["test"] = test
        result["test_images"] = splits.test.names
    write_json(out / FINISHED, result)
    line = ", ".join(f"{k.replace('_', ' ')} {v:.4f}" for k, v in metrics.items())
    log(f"validation ({len(splits.val)} image(s), best epoch {trained.checkpoint['epoch']}): {line}"
        + (f"; test IoU {result['test']['iou']:.4f}" if "test" in result else "") + f"; results in {out}")
    return result
