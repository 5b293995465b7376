"""Show the paper's border weight map on a real ISBI-2012 label: writes image | label | weight map as a PNG.

    python -m experiments.weightmap_demo --slice 0 --out runs/weightmap_demo.png
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from unet_repro.data import load_isbi
from unet_repro.weightmap import border_weight_map

from .common import default_data_root, missing_data_exit, save_panels


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", type=Path, help="ISBI-2012 folder (default: $UNET_REPRO_DATA/isbi2012)")
    parser.add_argument("--slice", type=int, default=0)
    parser.add_argument("--w0", type=float, default=10.0)
    parser.add_argument("--sigma", type=float, default=5.0)
    parser.add_argument("--out", type=Path, default=Path("runs/weightmap_demo.png"))
    args = parser.parse_args(argv)
    root = args.data_root or default_data_root("isbi2012")
    if not (root / "train-labels.tif").exists() and not (root / "train-labels").is_dir():
        missing_data_exit("ISBI-2012", root, "train-volume.tif and train-labels.tif")
    data = load_isbi(root)
    image, label = data.images[args.slice], data.labels[args.slice]
    t0 = time.perf_counter()
    weight = border_weight_map(label, w0=args.w0, sigma=args.sigma)
    ms = (time.perf_counter() - t0) * 1000
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_panels(args.out, [(f"slice {args.slice}", image), ("label (cell = white)", label),
                           (f"weight map (w0={args.w0:g}, sigma={args.sigma:g})", weight)],
                cmap={f"weight map (w0={args.w0:g}, sigma={args.sigma:g})": "jet"})
    print(f"weight map of slice {args.slice}: min {weight.min():.2f}, max {weight.max():.2f}, "
          f"computed in {ms:.0f} ms; wrote {args.out}")
    return args.out


if __name__ == "__main__":
    main()
