"""One run, the same for every task and entry point: train (the folder is claimed only once every check has
passed), then score the best checkpoint once on the held-out images and write the run's result.

The result, ``final_metrics.json``, is the run's record: the validation metrics (and, with a labelled test split,
the test metrics, pooled and per image), whether the run is finished (trained to its stop rule) or was stopped by a
time limit or an interrupt, the configuration, the data it read and how it was made (command, commit, hardware,
precision, tiles seen). Beside it: ``val_<name>.png`` (image | label | P(foreground) on a fixed 0-1 scale),
``heldout_prob.tif`` and ``test_prob.tif`` (float32 probability stacks that Fiji and napari open).
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import tifffile

from .files import atomic_write, write_json
from .data.targets import training_target, training_targets
from .instances import predicted_instances
from .metrics.classes import class_report
from .metrics.objects import object_report
from .metrics.segmentation import segmentation_report
from .progress import duration
from .report import save_panels
from .tasks import DataInfo, DataOptions, Images, Splits, Task
from .training import Distributed, Resume, RunLog, TrainConfig, evaluate, load_trained, train
from .training.init_from import StartingWeights
from .training.validate import foreground, predicted_classes
from .errors import UsageError
from .training.run_dir import RESULT, read_result


@dataclass
class RunPlan:
    """Everything a run needs, decided and checked before any data is loaded or any file is touched."""

    task: Task
    cfg: TrainConfig
    out: Path
    resume: Resume | None
    root: Path | None
    options: DataOptions
    info: DataInfo
    overwrite: bool = False
    tta: bool = False
    deadline: float | None = None  # time.monotonic() by which the run must have ended, scoring included
    init: StartingWeights | None = None  # fine-tuning: the weights the new run starts from


def run_and_score(plan: RunPlan, splits: Splits) -> dict[str, Any]:
    """Train the planned run on `splits`, then `score_run` (rank 0; the other processes return the summary)."""
    t0 = time.monotonic()
    main = Distributed.from_env().is_main
    if plan.resume is not None and main:
        mark_continued(plan.out)
    summary = train(plan.cfg, splits.train.images, splits.train.labels, splits.val.images, splits.val.labels,
                    plan.out, resume=plan.resume, overwrite=plan.overwrite, deadline=plan.deadline,
                    reserve_validations=scoring_cost(plan, splits), init=plan.init)
    if not main:
        return summary
    if summary["stop_reason"] == "interrupted":  # asked to stop: scoring can wait for the resumed run
        raise KeyboardInterrupt
    if summary["epochs_done"] == 0:
        raise UsageError(f"--time-limit left no time for one epoch of {plan.out}; give it more minutes"
                         + ("" if plan.resume else " and --overwrite (the folder holds only the start of this run)"))
    result = score_run(plan.out, plan.cfg, splits, summary, plan.tta)
    result["wall_seconds"] = time.monotonic() - t0
    write_json(plan.out / RESULT, result)
    return result


def mark_continued(out: Path) -> None:
    """A finished run that trains on is no longer finished: its result stays readable but says so (the new result
    replaces it when the run is scored again)."""
    result = read_result(out)
    if result is not None and result.get("finished", True):
        write_json(out / RESULT, {**result, "finished": False, "continued": True})


def scoring_cost(plan: RunPlan, splits: Splits) -> float:
    """What scoring costs, in validations of the held-out images: each scored image is predicted once (8 times with
    test-time augmentation), plus figures."""
    scored = len(splits.val) + (len(splits.test) if splits.test is not None else 0)
    return (8 if plan.tta else 1) * scored / max(1, len(splits.val)) + 0.5


def score_run(out: Path, cfg: TrainConfig, splits: Splits, summary: dict[str, Any], tta: bool = False) -> dict[str, Any]:
    """Score the best checkpoint once on the validation images (and a labelled test split): figures of each
    validation image, ``heldout_prob.tif`` (and ``test_prob.tif``), and the result record (written by the caller
    as ``final_metrics.json``). Instance labels are also scored object by object (`object_scores`)."""
    log = RunLog(out)
    trained = load_trained(out / "best.pt", device=cfg.device)
    log(f"scoring best.pt (epoch {trained.epoch}) on {len(splits.val)} validation image(s)"
        + (" with test-time augmentation" if tta else "") + f" ({trained.precision.name})")
    t0 = time.monotonic()
    metrics, probs = score(trained, cfg, splits.val, tta)
    draw_validation(out, splits.val, probs, cfg)
    write_stack(out / "heldout_prob.tif", probs)
    result: dict[str, Any] = {
        "validation": metrics, "validation_images": splits.val.names, "tta": tta,
        "best_epoch": trained.epoch, "stop_reason": summary["stop_reason"], "finished": summary["finished"],
        "optimizer_steps": summary["optimizer_steps"], "epochs_done": summary["epochs_done"],
        "tiles_seen": summary["tiles_seen"], "train_seconds": summary["train_seconds"],
        "precision": summary["precision"], "tiles_per_s_last_epoch": summary["tiles_per_s"],
        "split": splits.description, "parameters": sum(p.numel() for p in trained.model.parameters()),
        **cfg.extra, "seed": cfg.seed, "config": asdict(cfg),
    }
    if cfg.mask_kind == "instances":
        result["validation_objects"] = object_scores(splits.val.labels, probs)
    if splits.test is not None and splits.test.labels is not None:
        log(f"scoring best.pt on {len(splits.test)} test image(s)")
        test, test_probs = score(trained, cfg, splits.test, tta)
        result["test"] = test
        result["test_images"] = splits.test.names
        if cfg.mask_kind == "classes":
            result["test_per_image"] = class_report(training_targets(splits.test.labels, "classes"),
                                                    [predicted_classes(p) for p in test_probs], cfg.classes)
        else:
            result["test_per_image"] = segmentation_report([foreground(p) > 0.5 for p in test_probs],
                                                           training_targets(splits.test.labels, cfg.mask_kind))
        if cfg.mask_kind == "instances":
            result["test_objects"] = object_scores(splits.test.labels, test_probs)
        write_stack(out / "test_prob.tif", test_probs)
    result["score_seconds"] = time.monotonic() - t0
    line = ", ".join(f"{k.replace('_', ' ')} {v:.4f}" for k, v in metrics.items() if isinstance(v, float))
    objects = result.get("validation_objects")
    log(f"validation ({len(splits.val)} image(s), best epoch {trained.epoch}): {line}"
        + (f", object F1 at IoU 0.5 {objects['f1']:.4f}" if objects else "")
        + (f"; test IoU {result['test']['iou']:.4f}" if "test" in result else "")
        + f"; scored in {duration(result['score_seconds'])}; results in {out}"
        + ("" if summary["finished"] else f" (the run is not finished: {summary['stop_reason']}; --resume "
                                          f"{out / 'last.pt'} continues it)"))
    return result


def object_scores(labels: Sequence[np.ndarray], probs: Sequence[np.ndarray]) -> dict[str, Any]:
    """Object-level scores of instance predictions (the 4-connected components of P(foreground) > 0.5) against the
    instance labels: pooled over the images at IoU 0.5 and averaged over IoU 0.5:0.95, as Cellpose and StarDist
    report them (`unet_repro.metrics.objects`)."""
    report = object_report(list(labels), [predicted_instances(foreground(p) > 0.5) for p in probs])
    pooled = report["pooled"]
    return {**pooled["at_threshold"], "mean_over_thresholds": pooled["mean_over_thresholds"],
            "n_true": pooled["n_true"], "n_pred": pooled["n_pred"], "threshold": report["threshold"]}


def draw_validation(out: Path, images: Images, probs: Sequence[np.ndarray], cfg: TrainConfig) -> None:
    """``val_<name>.png`` of each validation image: image | label | P(foreground) on a fixed 0-1 scale, or for K
    classes image | label classes | predicted classes."""
    for name, image, label, p in zip(file_names(images), images.images, images.labels, probs):
        title = f"{name}: best.pt of {out.name}"
        if cfg.mask_kind == "classes":
            k = {"label (classes)": cfg.classes, "predicted classes": cfg.classes}
            save_panels(out / f"val_{name}.png", [("image", shown(image)), ("label (classes)", label),
                                                  ("predicted classes", predicted_classes(p))], classes=k, title=title)
        else:
            save_panels(out / f"val_{name}.png", [("image", shown(image)),
                                                  ("label (foreground = white)", training_target(label, cfg.mask_kind)),
                                                  ("P(foreground)", foreground(p))], probability=("P(foreground)",),
                        title=title)


def shown(image: np.ndarray) -> np.ndarray:
    """An image as a figure draws it: gray or RGB as they are, other channel counts by their first channel."""
    return image if image.ndim == 2 or image.shape[2] in (3, 4) else image[..., 0]


def score(trained: Any, cfg: TrainConfig, images: Images, tta: bool) -> tuple[dict[str, float], list[np.ndarray]]:
    """Pooled metrics and probability maps of `images` by the trained network, in its run's precision."""
    return evaluate(trained.model, images.images, images.labels, loss=cfg.loss, tile=trained.config.input_tile(),
                    device=trained.device, autocast=trained.precision.eval_bf16, tta=tta, w0=cfg.w0,
                    sigma=cfg.sigma, show_progress=True, kind=cfg.mask_kind)


def write_stack(path: Path, maps: Sequence[np.ndarray]) -> None:
    """Probability maps as one float32 ImageJ hyperstack TIFF (axes ZYX, or ZCYX with one channel per class) that
    Fiji and napari open as it is, atomically (maps of different sizes: not written)."""
    if len({m.shape for m in maps}) != 1:
        return
    stack = np.stack(maps).astype(np.float32)
    with atomic_write(path) as f:
        tifffile.imwrite(f, stack, imagej=True, metadata={"axes": "ZCYX" if stack.ndim == 4 else "ZYX"})


def file_names(images: Images) -> list[str]:
    return [n.replace(" ", "_").replace("/", "_") for n in images.names]


__all__ = ["RunPlan", "file_names", "run_and_score", "score", "score_run", "scoring_cost", "write_stack"]
