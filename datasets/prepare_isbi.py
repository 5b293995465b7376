"""Build, or check, the ISBI-2012 stacks in the layout the code reads.

    python datasets/prepare_isbi.py --check datasets/isbi2012
    python datasets/prepare_isbi.py --from DIR --dest datasets/isbi2012      (DIR: the official stacks)
    python datasets/prepare_isbi.py --images SRC/train/image --labels SRC/train/label --test SRC/test \\
        --dest datasets/isbi2012

--from copies the official stacks losslessly compressed (deflate, with TIFF's horizontal predictor for the gray
values): the pixels are unchanged, which the script checks after writing. --images/--labels/--test build the stacks
from folders of PNG slices in natural order of their file names (0.png, 1.png, ..., 10.png). Labels are written
as cell = 255, membrane = 0 (0/1 labels are converted).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import tifffile

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from unet_repro.cli.common import make_parser, run_main  # noqa: E402
from unet_repro.data.isbi import find_stack, read_stack  # noqa: E402
from unet_repro.data.masks import binarize_mask  # noqa: E402
from unet_repro.errors import DataError, UsageError  # noqa: E402
from unet_repro.tasks import ISBI, DataOptions  # noqa: E402
from unet_repro.tasks.isbi import STACKS, load_all, load_test  # noqa: E402


def write_stack(path: Path, stack: np.ndarray, labels: bool) -> None:
    """A lossless multi-page gray TIFF; the written pixels are read back and compared."""
    options = dict(compression="zlib", compressionargs={"level": 9})
    if not labels:  # the predictor helps the gray values and hurts the two-valued labels
        options["predictor"] = True
    tifffile.imwrite(path, stack, photometric="minisblack", **options)
    if not np.array_equal(tifffile.imread(path), stack):
        raise DataError(f"{path}: the written pixels differ from the source; not lossless")


def check(root: Path) -> None:
    info = ISBI.check(root, DataOptions(val_slices=1))
    data = load_all(root)
    raw = read_stack(find_stack(root, "train-labels"))
    values = np.unique(raw)
    if not (set(values.tolist()) <= {0, 255} or set(values.tolist()) <= {0, 1}):
        raise DataError(f"{find_stack(root, 'train-labels')}: label values {values.tolist()[:8]}; expected 0/255 "
                        f"(or 0/1)")
    try:
        n_test = len(load_test(root))
    except FileNotFoundError:
        n_test = 0
    print(f"{root}: {info.count} training slices {info.shape[1]}x{info.shape[0]}, labels {values.tolist()} "
          f"(cell fraction {data.labels.mean():.3f}); {n_test} test slices. OK")


def build(args: argparse.Namespace) -> None:
    dest = args.dest
    dest.mkdir(parents=True, exist_ok=True)
    if args.source is not None:
        sources = {name: find_stack(args.source, name) for name in STACKS}
    else:
        if not (args.images and args.labels):
            raise UsageError("give --check DIR, --from DIR, or --images and --labels (and optionally --test)")
        sources = {"train-volume": args.images, "train-labels": args.labels, "test-volume": args.test}
    for name, source in sources.items():
        if source is None:
            continue
        stack = read_stack(source)
        if name == "train-labels":
            stack = (binarize_mask(stack, source) * 255).astype(np.uint8)
        out = dest / f"{name}.tif"
        if out.exists() and not args.overwrite:
            raise UsageError(f"{out} exists; pass --overwrite to replace it")
        write_stack(out, stack, labels=name == "train-labels")
        print(f"wrote {out}: {stack.shape}, {out.stat().st_size / 1e6:.1f} MB, pixel-equal to {source}")
    check(dest)


def main(argv: list[str] | None = None) -> None:
    parser = make_parser(None, "python datasets/prepare_isbi.py", __doc__)
    parser.add_argument("--check", type=Path, metavar="DIR", help="validate an ISBI-2012 folder and print what it holds")
    parser.add_argument("--from", dest="source", type=Path, metavar="DIR",
                        help="a folder with the official stacks, to copy losslessly compressed")
    parser.add_argument("--images", type=Path, metavar="DIR", help="folder of training image slices")
    parser.add_argument("--labels", type=Path, metavar="DIR", help="folder of training label slices")
    parser.add_argument("--test", type=Path, metavar="DIR", help="folder of test image slices")
    parser.add_argument("--dest", type=Path, default=Path("datasets/isbi2012"), metavar="DIR",
                        help="where to write the stacks (default: datasets/isbi2012)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing stacks in --dest")
    args = parser.parse_args(argv)
    run_main(lambda: check(args.check) if args.check else build(args))


if __name__ == "__main__":
    main()
