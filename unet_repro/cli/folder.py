"""Train on your own data: a folder of images and a folder of masks paired by file name.

    python -m experiments.folder --images my_data/images --masks my_data/masks
    python -m experiments.folder --images imgs --masks labels --mask-kind instances --border-width 2
    python -m experiments.folder --images imgs --masks classes --classes 3
    python -m experiments.folder --resume runs/folder-quick/last.pt --epochs 40
    python -m experiments.folder --images new_imgs --masks new_masks --init-from runs/folder-quick/best.pt --lr 1e-4

Images: PNG, TIFF (multi-page stacks: one image per page), BMP or JPEG; 8- or 16-bit, float; gray, RGB or C channels;
scaled per image by their percentiles (--normalization). Masks, paired with the images by file name: binary masks
(foreground = nonzero), instance labels (each value one object; separation borders are drawn between touching
objects, as the paper's training target) or class masks (0..K-1), decided from the masks (--mask-kind forces it);
the run's first lines say what was read (docs/own-data.md: the reading rule). The images are split at random
(--split-seed) into training, validation (--val-fraction) and test (--test-fraction) images; the split is saved in
final_metrics.json. Training is the paper's by default (U-Net, border weight map, elastic augmentation, random tiles
with mirrored context); any registered --model and --loss can be used. At the end the best checkpoint is scored on
the validation and test images (with object-level scores for instance labels).
"""
from __future__ import annotations

import argparse

from ..tasks import FOLDER
from .common import make_parser, run_main
from .train import add_task_flags, train_task

PROG = "python -m experiments.folder"


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    return add_task_flags(make_parser(prog, PROG, __doc__), FOLDER)


def main(argv: list[str] | None = None, prog: str | None = None) -> dict:
    parser = build_parser(prog)
    return run_main(lambda: train_task(FOLDER, parser.parse_args(argv), parser.prog, argv))


__all__ = ["build_parser", "main"]
