"""Check an ISBI-2012 folder, or build the official stacks from folders of PNG slices.

    python datasets/prepare_isbi.py --check datasets/isbi2012
    python datasets/prepare_isbi.py --images SRC/train/image --labels SRC/train/label --test SRC/test \\
        --dest datasets/isbi2012

Slices are taken in natural order of their file names (0.png, 1.png, ..., 10.png) and written, unchanged, as
multi-page gray-value TIFFs: train-volume.tif, train-labels.tif (cell = 255, membrane = 0), test-volume.tif.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import tifffile

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from unet_repro.data.isbi import load_isbi, read_stack  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", type=Path, help="validate an ISBI-2012 folder and print what it holds")
    parser.add_argument("--images", type=Path)
    parser.add_argument("--labels", type=Path)
    parser.add_argument("--test", type=Path)
    parser.add_argument("--dest", type=Path, default=Path("datasets/isbi2012"))
    args = parser.parse_args(argv)
    if args.check:
        data = load_isbi(args.check)
        test = load_isbi(args.check, "test")
        print(f"{args.check}: {len(data.images)} training slices {data.images.shape[1:]}, cell fraction "
              f"{data.labels.mean():.3f}; {len(test.images)} test slices. OK")
        return
    if not (args.images and args.labels):
        parser.error("give --check DIR, or --images and --labels (and optionally --test)")
    args.dest.mkdir(parents=True, exist_ok=True)
    for name, folder in (("train-volume", args.images), ("train-labels", args.labels), ("test-volume", args.test)):
        if folder is None:
            continue
        stack = read_stack(folder)
        if name == "train-labels":
            stack = np.where(stack > 127, 255, 0).astype(np.uint8)
        tifffile.imwrite(args.dest / f"{name}.tif", stack, photometric="minisblack")
        print(f"wrote {args.dest / (name + '.tif')}: {stack.shape}")
    load_isbi(args.dest)  # the same checks the training code makes


if __name__ == "__main__":
    main()
