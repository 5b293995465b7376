"""Segment images with a trained checkpoint: files, folders, globs and TIFF stacks in one call, the network loaded
once (overlap-tile prediction).

    python -m experiments.predict --checkpoint runs/isbi-quick/best.pt --out predictions \\
        datasets/isbi2012/test-volume.tif
    python -m experiments.predict --checkpoint runs/folder-quick/best.pt --out predictions my_images/ "more/*.png" --tta

Inputs: image files (PNG, TIFF, BMP, JPEG; gray or RGB as the network was trained on; 8 or 16-bit or float, read
by `unet_repro.data.images`), folders (their image files; hidden files and files that are not images are refused by
name, subfolders are not read) and quoted globs (each match is a file or folder input). Every image, and every page
of a multi-page TIFF stack, is predicted with the run's own intensity rule and precision. For an input
``<name>.<ext>``, three ImageJ TIFFs that Fiji and napari open as they are go into --out (default: predictions; a
stack in gives stacks out, pages on Z in the file's order; see `unet_repro.prediction`):

  <name>_prob.tif    float32 probabilities: P(foreground), or for a K-class network one channel per class
  <name>_mask.tif    uint8 0/1: 1 where P(foreground) > --threshold (0/1, as napari and the package read masks;
                     its display range is 0-1, so Fiji shows it black and white); K classes: the most probable
                     class 0..K-1
  <name>_labels.tif  uint16 instance labels 1..N per page (0 = background): the 4-connected objects of the mask,
                     kept apart by the borders the network drew, objects of fewer than --min-size pixels dropped;
                     K classes: the objects of every foreground class, each of one class (class 1's numbered first)

Before the network runs, every input is read and checked, and every output name: an existing output is refused
unless --overwrite, an output that would replace an input always, and so are two inputs of one name (a/x.png and
b/x.tif would both write x_*.tif: predict them into separate --out folders); an image whose channels the network
does not take is refused by name. Files are written atomically.

Earlier versions wrote one PNG of P(foreground) x 255 (and --npy) per call; that is replaced by the three TIFFs
(_prob.tif holds the float32 map). --image FILE remains as another way to give an input; --slice is gone (every
page of a stack is predicted: page K of the outputs is slice K).
"""
from __future__ import annotations

import argparse
import glob
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..data.images import SUFFIXES, ImageFile, channel_text, list_image_files, read_image_file, some_names
from ..errors import DataError, DataNotFoundError, UsageError
from ..prediction import OUTPUTS, output_name, segment, write_imagej
from ..progress import duration, on_terminal, progress
from ..training import Trained, check_device, load_trained
from .common import make_parser, run_main

PROG = "python -m experiments.predict"
#: Input pixels kept in memory between the check of every input and its prediction (beyond it, files are read
#: again when predicted).
KEEP_BYTES = 512 * 2**20
GLOB_CHARACTERS = "*?["


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    parser = make_parser(prog, PROG, __doc__)
    parser.add_argument("inputs", nargs="*", metavar="INPUT",
                        help="image files, folders of images, or quoted globs (required: at least one, or --image)")
    parser.add_argument("--checkpoint", type=Path, required=True, metavar="CKPT", help="best.pt or last.pt of a run")
    parser.add_argument("--out", type=Path, default=Path("predictions"), metavar="DIR",
                        help="folder for the <name>_prob.tif, _mask.tif and _labels.tif of every input")
    parser.add_argument("--image", type=str, action="append", default=[], metavar="FILE",
                        help="another input, as a positional INPUT; may be repeated (default: none)")
    parser.add_argument("--threshold", type=float, default=None,
                        help="the mask is P(foreground) > threshold, in [0, 1) (default: 0.5; not for K-class "
                             "networks, whose mask is the most probable class)")
    parser.add_argument("--min-size", type=int, default=0, metavar="N",
                        help="objects of fewer than N pixels are left out of the labels")
    parser.add_argument("--tile", type=int, default=None,
                        help="input tile side (default: the run's own; the result does not depend on it)")
    parser.add_argument("--tta", action="store_true", help="average over the 8 symmetries of the square")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing output files")
    return parser


@dataclass
class Job:
    """One input file and the three files it becomes; `image` is the file as read when it was checked (None once
    `KEEP_BYTES` were kept: it is read again)."""

    source: Path
    outputs: dict[str, Path]
    image: ImageFile | None = None
    pages: int = 0


# -- inputs and outputs, checked before any work ----------------------------------------------------------------

def expand_inputs(inputs: list[str]) -> list[Path]:
    """The image files that the inputs name, in order, each once; `DataError` naming what is not an image."""
    files: list[Path] = []
    for text in inputs:
        path = Path(text)
        if not path.exists() and any(c in text for c in GLOB_CHARACTERS):
            matches = sorted(glob.glob(text))
            if not matches:
                raise DataNotFoundError(f"no file matches {text}; check the pattern (quote it so that the shell "
                                        f"leaves it to predict)")
            files += [f for m in matches for f in _files_of(Path(m))]
        else:
            files += _files_of(path)
    unique: dict[Path, Path] = {}
    for f in files:
        unique.setdefault(f.resolve(), f)
    return list(unique.values())


def _files_of(path: Path) -> list[Path]:
    if path.is_dir():
        return list_image_files(path, "images")
    if not path.exists():
        raise DataNotFoundError(f"input {path} not found")
    if path.suffix.lower() not in SUFFIXES:
        raise DataError(f"{path} is not an image file ({', '.join(SUFFIXES)}); give images, folders of images or "
                        f"quoted globs")
    return [path]


def plan_jobs(files: list[Path], out: Path, overwrite: bool) -> list[Job]:
    """Each input's outputs under `out`; `UsageError` for two inputs of one name, an output that exists (unless
    `overwrite`) and an output that is one of the inputs."""
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file; --out names the folder the outputs go into")
    if not out.exists() and out.suffix.lower() in SUFFIXES:
        raise UsageError(f"--out {out} looks like an image file; --out names a folder (predict writes "
                         f"<name>_prob.tif, _mask.tif and _labels.tif into it)")
    by_stem: dict[str, Path] = {}
    for f in files:
        if f.stem in by_stem:
            raise UsageError(f"{by_stem[f.stem]} and {f} would both be written as {f.stem}_*.tif in {out}; predict "
                             f"them into separate --out folders, or rename one")
        by_stem[f.stem] = f
    jobs = [Job(f, {o: out / output_name(f.stem, o) for o in OUTPUTS}) for f in files]
    sources = {f.resolve() for f in files}
    written = [p for job in jobs for p in job.outputs.values()]
    replaced = [p for p in written if p.resolve() in sources]
    if replaced:
        raise UsageError(f"the output {replaced[0]} would replace an input of the same call; choose another --out")
    existing = [str(p) for p in written if p.exists()]
    if existing and not overwrite:
        raise UsageError(f"{some_names(existing, 2)} already exist(s); choose another --out or pass --overwrite")
    return jobs


def check_image(f: ImageFile, trained: Trained) -> None:
    """`DataError` naming the file when the network cannot take its images: other channels than it was trained on,
    or values its intensity rule cannot scale."""
    cfg = trained.config
    if f.channels != cfg.in_channels:
        raise DataError(f"{f.path} is {channel_text(f.channels)} but the network of {trained.path} takes "
                        f"{channel_text(cfg.in_channels)} images ({cfg.in_channels} channel(s)); convert the image or "
                        f"use a matching checkpoint")
    for name, plane in zip(f.names(full=True), f.planes):
        floating = np.issubdtype(plane.dtype, np.floating)
        if floating and not np.isfinite(plane).all():
            raise DataError(f"{name}: the image holds NaN or infinite values; fix or re-export it")
        if cfg.normalization == "range" and floating and (plane.min() < 0 or plane.max() > 1):
            raise DataError(f"{name}: {plane.dtype} values in [{plane.min():g}, {plane.max():g}], but the network was "
                            f"trained with the 'range' intensity rule, which takes float images in [0, 1]; scale the "
                            f"image to [0, 1] or save it as 8/16-bit")
        if cfg.normalization == "range" and not floating and plane.dtype not in (np.uint8, np.uint16, np.bool_):
            raise DataError(f"{name}: {plane.dtype} pixels have no range for the 'range' intensity rule the network "
                            f"was trained with (uint8, uint16, float); convert the image to 16-bit")


def read_inputs(jobs: list[Job], trained: Trained) -> None:
    """Read and check every input before any is predicted; keep up to `KEEP_BYTES` of them in memory."""
    kept = 0
    for job in progress(jobs, "checking inputs"):
        f = read_image_file(job.source)
        check_image(f, trained)
        job.pages = f.pages
        size = sum(p.nbytes for p in f.planes)
        if kept + size <= KEEP_BYTES:
            job.image, kept = f, kept + size


def check_flags(args: argparse.Namespace, trained: Trained) -> float:
    """The threshold to use; `UsageError` for flags this network or these outputs cannot take."""
    if (args.min_size or 0) < 0:  # evaluate's default is None (not given)
        raise UsageError(f"--min-size must be a number of pixels >= 0, got {args.min_size}")
    if trained.config.classes is not None and args.threshold is not None:
        raise UsageError(f"--threshold applies to one-channel networks; {trained.path} predicts "
                         f"{trained.config.classes} classes, whose mask is the most probable class: leave it out")
    threshold = 0.5 if args.threshold is None else args.threshold
    if not 0 <= threshold < 1:
        raise UsageError(f"--threshold must be in [0, 1), got {threshold}")
    if args.tile is not None:
        try:
            trained.config.geometry().tile(args.tile)
        except ValueError as e:
            raise UsageError(f"--tile {args.tile} is not a valid input side for this network: {e}") from None
    return threshold


# -- predicting ---------------------------------------------------------------------------------------------------

def predict_page(trained: Trained, plane: np.ndarray, name: str, tile: int | None, tta: bool) -> np.ndarray:
    prob = trained.predict(plane, tile=tile, tta=tta)
    if not np.isfinite(prob).all():
        raise DataError(f"the prediction of {name} holds NaN values; the checkpoint {trained.path} may come from a "
                        f"diverged run")
    return prob


def predict_job(job: Job, trained: Trained, args: argparse.Namespace, threshold: float) -> int:
    """Predict one input and write its three files; the number of objects found."""
    f = job.image if job.image is not None else read_image_file(job.source)
    job.image = None  # its pixels are not needed any more
    probs, masks, labels = [], [], []
    for name, plane in zip(f.names(full=True), f.planes):
        prob = predict_page(trained, plane, name, args.tile, args.tta)
        mask, objects = segment(prob, threshold, args.min_size)
        probs.append(prob)
        masks.append(mask)
        labels.append(objects)
    stack, classes = f.pages > 1, trained.config.classes
    args.out.mkdir(parents=True, exist_ok=True)
    for output, pages in zip(OUTPUTS, (probs, masks, labels)):
        write_imagej(job.outputs[output], pages, output, stack, classes)
    return sum(int(x.max()) for x in labels)


def run(args: argparse.Namespace) -> list[Job]:
    inputs = [*args.inputs, *args.image]
    if not inputs:
        raise UsageError("give at least one INPUT (an image, a folder of images or a quoted glob)")
    check_device(args.device)
    jobs = plan_jobs(expand_inputs(inputs), args.out, args.overwrite)
    trained = load_trained(args.checkpoint, device=args.device)
    threshold = check_flags(args, trained)
    read_inputs(jobs, trained)
    classes = trained.config.classes
    rule = f"{classes} classes, the most probable" if classes else f"mask: P(foreground) > {threshold:g}"
    print(f"predict: {sum(j.pages for j in jobs)} image(s) from {len(jobs)} file(s) with {args.checkpoint} ({rule}"
          f"{', --tta' if args.tta else ''}) into {args.out}", flush=True)
    start, plain = time.monotonic(), not on_terminal()
    for job in progress(jobs, "predict", enabled=not plain):
        objects = predict_job(job, trained, args, threshold)
        if plain:
            print(f"{job.source} ({job.pages} page(s)) -> {job.source.stem}_{{prob,mask,labels}}.tif, {objects} "
                  f"object(s)", flush=True)
    print(f"predicted {len(jobs)} file(s) in {duration(time.monotonic() - start)}", flush=True)
    return jobs


def main(argv: list[str] | None = None, prog: str | None = None) -> list[Job]:
    parser = build_parser(prog)
    return run_main(lambda: run(parser.parse_args(argv)))


__all__ = ["Job", "build_parser", "check_image", "expand_inputs", "main", "plan_jobs", "run"]
