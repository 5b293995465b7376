"""Train on your own data: a folder of images and a folder of masks paired by file name.

    python -m experiments.folder --images my_data/images --masks my_data/masks
    python -m experiments.folder --images imgs --masks masks --model unet_same --loss dice --size 256
    python -m experiments.folder --resume runs/folder-quick/last.pt --epochs 40
    python -m experiments.predict --checkpoint runs/folder-quick/best.pt --image imgs/case_007.png

Images: 8-bit gray or RGB (PNG/TIFF/BMP/JPEG); masks: 8-bit with foreground = nonzero (0/1 or 0/255), named like
their image (or with a _mask suffix). The images are split at random (--split-seed) into training, validation
(--val-fraction) and test (--test-fraction) images; the split is saved in final_metrics.json. Training is the
paper's by default (U-Net, border weight map, elastic augmentation, random tiles with mirrored context); any
registered --model and --loss can be used. At the end the best checkpoint is scored on the validation and test
images.
"""
from __future__ import annotations

import argparse

from ..tasks import FOLDER
from ..runs import run_and_score
from .common import add_data_flags, add_run_flags, add_train_flags, make_parser, plan_run, run_main

PROG = "python -m experiments.folder"


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    parser = make_parser(prog, PROG, __doc__)
    add_train_flags(parser, FOLDER)
    add_data_flags(parser, FOLDER)
    add_run_flags(parser, FOLDER)
    parser.add_argument("--tta", action="store_true",
                        help="score with the average over the 8 symmetries of the square")
    return parser


def run(args: argparse.Namespace, prog: str, argv: list[str] | None) -> dict:
    plan = plan_run(FOLDER, args, prog, argv)
    if plan is None:
        return {}
    return run_and_score(plan, FOLDER.load(None, plan.options))


def main(argv: list[str] | None = None, prog: str | None = None) -> dict:
    parser = build_parser(prog)
    return run_main(lambda: run(parser.parse_args(argv), parser.prog, argv))


__all__ = ["build_parser", "main", "run"]
