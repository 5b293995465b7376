"""Show the paper's border weight map on a real ISBI-2012 label: writes image | label | weight map as a PNG.

    python -m experiments.weightmap_demo --slice 0 --out runs/weightmap_demo.png
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from ..errors import UsageError
from ..tasks import ISBI, DataOptions, find_data_root
from ..tasks.isbi import load_all
from ..report import pyplot, save_figure
from ..weightmap import PAPER_SIGMA, PAPER_W0, border_weight_map
from .common import make_parser, run_main

PROG = "python -m experiments.weightmap_demo"


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    parser = make_parser(prog, PROG, __doc__)
    parser.add_argument("--data-root", type=Path, metavar="DIR",
                        help="the ISBI-2012 folder (default: $UNET_REPRO_DATA/isbi2012, else datasets/isbi2012)")
    parser.add_argument("--slice", type=int, default=0, help="training slice (default 0)")
    parser.add_argument("--w0", type=float, default=PAPER_W0, help="border amplitude w0 (default: the paper's, 10)")
    parser.add_argument("--sigma", type=float, default=PAPER_SIGMA,
                        help="border width sigma in px (default: the paper's, 5)")
    parser.add_argument("--out", type=Path, default=Path("runs/weightmap_demo.png"), metavar="FILE",
                        help="output PNG (default: runs/weightmap_demo.png)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    return parser


def save_weight_figure(path: Path, image: np.ndarray, label: np.ndarray, weight: np.ndarray, title: str) -> None:
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(13.5, 4.8))
    axes[0].imshow(image, cmap="gray")
    axes[0].set_title("image")
    axes[1].imshow(label, cmap="gray", vmin=0, vmax=1)
    axes[1].set_title("label (cell = white)")
    shown = axes[2].imshow(weight, cmap="jet", vmin=0)
    fig.colorbar(shown, ax=axes[2], fraction=0.046, pad=0.04).set_label("pixel weight w(x)")
    axes[2].set_title("weight map w = w_c + w0 exp(-(d1+d2)^2 / 2 sigma^2)", fontsize=9)
    for ax in axes:
        ax.axis("off")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    save_figure(fig, path)


def run(args: argparse.Namespace) -> Path:
    if args.out.suffix.lower() != ".png":
        raise UsageError(f"--out must name a .png file, got {args.out}")
    if args.out.exists() and not args.overwrite:
        raise UsageError(f"{args.out} already exists; choose another --out or pass --overwrite")
    root = find_data_root(ISBI, args.data_root)
    info = ISBI.check(root, DataOptions(val_slices=1))
    if not 0 <= args.slice < info.count:
        raise UsageError(f"--slice must be between 0 and {info.count - 1}, got {args.slice}")
    if not (args.w0 >= 0 and args.sigma > 0):
        raise UsageError(f"need --w0 >= 0 and --sigma > 0, got {args.w0} and {args.sigma}")
    data = load_all(root)
    image, label = data.images[args.slice], data.labels[args.slice]
    t0 = time.perf_counter()
    weight = border_weight_map(label, w0=args.w0, sigma=args.sigma)
    ms = (time.perf_counter() - t0) * 1000
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_weight_figure(args.out, image, label, weight,
                       f"ISBI-2012 training slice {args.slice}: border weight map (w0={args.w0:g}, "
                       f"sigma={args.sigma:g}, 4-connected cells)")
    print(f"weight map of slice {args.slice}: min {weight.min():.2f}, max {weight.max():.2f}, computed in {ms:.0f} ms; "
          f"wrote {args.out}")
    return args.out


def main(argv: list[str] | None = None, prog: str | None = None) -> Path:
    parser = build_parser(prog)
    return run_main(lambda: run(parser.parse_args(argv)))
