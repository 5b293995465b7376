"""Write the prepared PH2 layout from the original PH2 folder, or check a PH2 folder of either layout.

    python datasets/prepare_ph2.py --from datasets/ph2 --dest ph2-256 [--size 256]
    python datasets/prepare_ph2.py --check datasets/ph2 [--size 256]

--from/--dest writes, into a new folder, every case resized to --size x --size (the same resize as the original
layout gets when it is read) as lossless PNG files, images/IMDxxx.png (RGB) and masks/IMDxxx.png (lesion 255,
background 0), then manifest.json: the format, version, size and resize rule, the case names, and the sha256 of
every source file and of every written file (layout: datasets/README.md, unet_repro/data/ph2.py). It reads the
written folder back and checks that it gives exactly the arrays it was made from. The prepared folder is a data
root like the original one (--data-root, or UNET_REPRO_DATA/ph2), about 21 MB at 256 x 256, and is read only at
its own size.

--check reads every case of either layout (a prepared one checked file by file against its manifest), reports what
it found and any problem by file name. Reading the original layout leaves the decoded, resized arrays in the cache
($UNET_REPRO_CACHE or ~/.cache/unet_repro).
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from unet_repro.cli.common import make_parser, run_main  # noqa: E402
from unet_repro.data.ph2 import MANIFEST, is_prepared, load_ph2, prepare_ph2  # noqa: E402
from unet_repro.errors import DataError, UsageError  # noqa: E402


def check(root: Path, size: int) -> None:
    data = load_ph2(root, size=size)
    fraction = data.masks.mean(axis=(1, 2))
    layout = "prepared layout, every file matches its manifest" if is_prepared(root) else "original layout"
    print(f"{root}: {len(data.names)} cases ({data.names[0]} .. {data.names[-1]}), {layout}, resized to "
          f"{size}x{size}; lesion fraction mean {fraction.mean():.3f} (min {fraction.min():.3f}, max "
          f"{fraction.max():.3f}). OK")


def prepare(source: Path, dest: Path, size: int) -> None:
    start = time.perf_counter()
    written = prepare_ph2(source, dest, size)
    again = load_ph2(dest, size=size)
    if not (again.names == written.names and np.array_equal(again.images, written.images)
            and np.array_equal(again.masks, written.masks)):
        raise DataError(f"{dest}: the prepared files read back differ from the arrays they were made from")
    files = [p for p in dest.rglob("*") if p.is_file()]
    megabytes = sum(p.stat().st_size for p in files) / 1e6
    print(f"wrote {dest}: {len(written.names)} cases at {size}x{size}, {len(files)} files ({MANIFEST} included), "
          f"{megabytes:.1f} MB, in {time.perf_counter() - start:.0f} s; read back equal to the arrays of {source}")


def main(argv: list[str] | None = None) -> None:
    parser = make_parser(None, "python datasets/prepare_ph2.py", __doc__)
    parser.add_argument("--check", type=Path, metavar="DIR", help="read a PH2 folder of either layout and report")
    parser.add_argument("--from", dest="source", type=Path, metavar="DIR",
                        help="the original PH2 folder (holds 'PH2 Dataset images/')")
    parser.add_argument("--dest", type=Path, metavar="DIR", help="a new (or empty) folder for the prepared layout")
    parser.add_argument("--size", type=int, default=256, help="side of the resized images (default: 256)")
    args = parser.parse_args(argv)

    def body() -> None:
        if args.size < 1:
            raise UsageError(f"--size must be a whole number >= 1, got {args.size}")
        if args.check is not None:
            check(args.check, args.size)
        elif args.source is not None and args.dest is not None:
            prepare(args.source, args.dest, args.size)
        else:
            raise UsageError("give --check DIR, or --from DIR (the original PH2 folder) and --dest DIR")
    run_main(body)


if __name__ == "__main__":
    main()
