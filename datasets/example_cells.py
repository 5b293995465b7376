"""Write a folder of cells as a microscope and an annotation tool would: 16-bit TIFF images and instance labels.

    python datasets/example_cells.py --out cells [--data-root DIR] [--slices N] [--crop S]

Made from the ISBI-2012 training stacks (which ship in datasets/isbi2012/), so that the README's walk-through runs
on real images without a download:

- ``cells/train/images/slice_00.tif`` ... ``slice_24.tif``: the EM slices as 16-bit gray TIFFs (each 8-bit value v
  written as 257 v, which spans the 16-bit range as a camera's full scale would);
- ``cells/train/labels/slice_00.tif`` ...: their instance labels, uint16, 0 = background and each cell one value
  (the ISBI cells, every membrane pixel given to its nearest cell by `unet_repro.instances.touching_cells`, so
  neighbouring cells touch, as in the label images Cellpose, StarDist or napari write);
- ``cells/new/images/`` and ``cells/new/labels/``: slices 25-29 the same way, held out: images to predict, and the
  truth to evaluate the predictions against.

``--slices N`` keeps the first N training slices (and at most N held-out ones), ``--crop S`` the top-left S x S
pixels of each: a smaller example. Every file is new: a folder that already holds files is refused.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import tifffile

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from unet_repro.cli.common import make_parser, run_main  # noqa: E402
from unet_repro.errors import UsageError  # noqa: E402
from unet_repro.files import atomic_write  # noqa: E402
from unet_repro.instances import touching_cells  # noqa: E402
from unet_repro.tasks import ISBI, DataOptions, find_data_root  # noqa: E402
from unet_repro.tasks.isbi import load_all  # noqa: E402

HELD_OUT = 5  # the last 5 slices, as the ISBI quick preset holds out


def write_tiff(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as f:
        tifffile.imwrite(f, array, imagej=True, metadata={"axes": "YX"})


def write_cells(out: Path, images: list[np.ndarray], labels: list[np.ndarray], first: int, part: str) -> int:
    """Write one part (train or new); the number of cells written."""
    cells = 0
    for i, (image, label) in enumerate(zip(images, labels), start=first):
        instances = touching_cells(label)
        cells += int(instances.max())
        write_tiff(out / part / "images" / f"slice_{i:02d}.tif", image.astype(np.uint16) * 257)
        write_tiff(out / part / "labels" / f"slice_{i:02d}.tif", instances.astype(np.uint16))
    return cells


def main(argv: list[str] | None = None) -> None:
    parser = make_parser(None, "python datasets/example_cells.py", __doc__)
    parser.add_argument("--out", type=Path, required=True, metavar="DIR", help="a new (or empty) folder")
    parser.add_argument("--data-root", type=Path, default=None, metavar="DIR",
                        help="the ISBI-2012 folder (default: $UNET_REPRO_DATA/isbi2012, else datasets/isbi2012)")
    parser.add_argument("--slices", type=int, default=None, help="keep the first N training slices (default: 25)")
    parser.add_argument("--crop", type=int, default=None, help="keep the top-left S x S pixels (default: all)")
    args = parser.parse_args(argv)

    def body() -> None:
        for flag, value in (("--slices", args.slices), ("--crop", args.crop)):
            if value is not None and value < 1:
                raise UsageError(f"{flag} must be a whole number >= 1, got {value}")
        if args.out.exists() and (not args.out.is_dir() or any(args.out.iterdir())):
            raise UsageError(f"{args.out} already exists and is not an empty folder; choose another --out")
        root = find_data_root(ISBI, args.data_root)
        ISBI.check(root, DataOptions(val_slices=HELD_OUT))
        data = load_all(root)
        crop = (slice(0, args.crop), slice(0, args.crop))
        images = [im[crop] for im in data.images]
        labels = [lab[crop] for lab in data.labels]
        train = len(images) - HELD_OUT
        keep = args.slices or train
        n_train = write_cells(args.out, images[:min(keep, train)], labels[:min(keep, train)], 0, "train")
        n_new = write_cells(args.out, images[train:train + keep], labels[train:train + keep], train, "new")
        print(f"wrote {args.out}: train/ {min(keep, train)} and new/ {min(keep, HELD_OUT)} images of "
              f"{images[0].shape[1]}x{images[0].shape[0]} (16-bit TIFF) with their instance labels (uint16 TIFF; "
              f"{n_train} and {n_new} cells), made from {root}")
    run_main(body)


if __name__ == "__main__":
    main()
