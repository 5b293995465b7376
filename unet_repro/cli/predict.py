"""Predict the foreground probability map of an image with a trained checkpoint (overlap-tile prediction).

    python -m experiments.predict --checkpoint runs/isbi-quick/best.pt --image datasets/isbi2012/test-volume.tif \\
        --slice 0 --out prediction.png
    python -m experiments.predict --checkpoint runs/folder-quick/best.pt --image my_images/case_007.png --tta

--image is a PNG/TIFF/BMP/JPEG image (gray or RGB, as the network was trained on), or a multi-page TIFF stack with
--slice. The PNG holds P(foreground) scaled to 0..255 (for ISBI: P(cell), so membranes are dark); --npy also saves
the float32 map. An existing output file is not replaced unless --overwrite.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from ..data import read_stack
from ..data.folder import read_image as read_image_file
from ..errors import DataError, DataNotFoundError, UsageError
from ..training import Trained, check_device, load_trained
from .common import make_parser, run_main

PROG = "python -m experiments.predict"


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    parser = make_parser(prog, PROG, __doc__)
    parser.add_argument("--checkpoint", type=Path, required=True, metavar="CKPT", help="best.pt or last.pt of a run")
    parser.add_argument("--image", type=Path, required=True, metavar="FILE", help="the image (or TIFF stack)")
    parser.add_argument("--slice", type=int, default=None, help="slice of a multi-page TIFF stack (default 0)")
    parser.add_argument("--out", type=Path, default=Path("prediction.png"), metavar="FILE",
                        help="output PNG (default: prediction.png)")
    parser.add_argument("--tile", type=int, default=None,
                        help="input tile side (default: the run's own; the result does not depend on it)")
    parser.add_argument("--tta", action="store_true", help="average over the 8 symmetries of the square")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto)")
    parser.add_argument("--npy", action="store_true", help="also write the float32 map as .npy")
    parser.add_argument("--overwrite", action="store_true", help="replace existing output files")
    return parser


def read_image(path: Path, index: int | None) -> np.ndarray:
    """An image file, or slice `index` of a TIFF stack; errors name the file."""
    if not path.exists():
        raise DataNotFoundError(f"image {path} not found")
    if path.suffix.lower() in (".tif", ".tiff"):
        stack = read_stack(path)
        if index is None and len(stack) > 1:
            index = 0
        index = index or 0
        if not 0 <= index < len(stack):
            raise UsageError(f"--slice {index} is out of range: {path} has {len(stack)} slice(s) (0..{len(stack) - 1})")
        return stack[index]
    if index not in (None, 0):
        raise UsageError(f"--slice applies to multi-page TIFF stacks; {path} is one image")
    return read_image_file(path)


def check_image_channels(image: np.ndarray, trained: Trained, path: Path | str) -> None:
    """`DataError` when an image has other channels than the network was trained on."""
    channels = 1 if image.ndim == 2 else image.shape[2]
    if channels != trained.config.in_channels:
        kinds = {1: "gray", 3: "RGB"}
        raise DataError(f"{path} is {kinds.get(channels, f'{channels}-channel')} but the network of "
                        f"{trained.path} takes {kinds.get(trained.config.in_channels, '?')} images "
                        f"({trained.config.in_channels} channel(s)); convert the image or use a matching checkpoint")


def run(args: argparse.Namespace) -> Path:
    outputs = [args.out] + ([args.out.with_suffix(".npy")] if args.npy else [])
    existing = [str(p) for p in outputs if p.exists()]
    if existing and not args.overwrite:
        raise UsageError(f"{', '.join(existing)} already exists; choose another --out or pass --overwrite")
    if args.out.suffix.lower() != ".png":
        raise UsageError(f"--out must name a .png file, got {args.out}")
    check_device(args.device)
    trained = load_trained(args.checkpoint, device=args.device)
    image = read_image(args.image, args.slice)
    check_image_channels(image, trained, args.image)
    if args.tile is not None:
        try:
            trained.config.geometry().tile(args.tile)
        except ValueError as e:
            raise UsageError(f"--tile {args.tile} is not a valid input side for this network: {e}") from None
    prob = trained.predict(image, tile=args.tile, tta=args.tta)
    if not np.isfinite(prob).all():
        raise DataError(f"the prediction of {args.image} holds NaN values; the checkpoint {args.checkpoint} may come "
                        f"from a diverged run")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.round(prob * 255).astype(np.uint8)).save(args.out)
    if args.npy:
        np.save(args.out.with_suffix(".npy"), prob)
    print(f"wrote {args.out} ({prob.shape[1]}x{prob.shape[0]}, P(foreground) x 255)"
          + (f" and {args.out.with_suffix('.npy')}" if args.npy else ""))
    return args.out


def main(argv: list[str] | None = None, prog: str | None = None) -> Path:
    parser = build_parser(prog)
    return run_main(lambda: run(parser.parse_args(argv)))


__all__ = ["build_parser", "main", "read_image", "run"]
