"""Benchmark the U-Net border weight map: fast vs direct algorithm on the ISBI 2012 labels.

Usage::

    python benchmarks/weightmap.py [--data-root DIR] [--slices N] [--repeats K] [--connectivity 4|8]

Runs both algorithms of :mod:`unet_repro.weightmap` on the same N label slices in one
process and prints, per slice, the number of cells (``--connectivity``, default the package's
4), the times, the speed-up and the largest absolute difference; then the median speed-up, the
largest difference and the peak extra memory of one call of each (tracemalloc; numpy allocations
are traced).
Exits non-zero when the median speed-up is below 50x or a difference exceeds 1e-5.
"""
from __future__ import annotations

import argparse
import functools
import statistics
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Callable

import numpy as np
import tifffile

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # experiments/ (and unet_repro without `pip install -e .`) from the checkout
from unet_repro.tasks import ISBI, find_data_root  # noqa: E402
from unet_repro.cells import CELL_CONNECTIVITY, label_cells  # noqa: E402
from unet_repro.weightmap import border_weight_map, border_weight_map_direct  # noqa: E402

MIN_SPEEDUP = 50.0
MAX_DIFF = 1e-5



def timed(fn: Callable[[np.ndarray], np.ndarray], mask: np.ndarray, repeats: int) -> tuple[float, np.ndarray]:
    """Median wall time (s) of ``repeats`` calls, and the last result."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn(mask)
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def peak_memory(fn: Callable[[np.ndarray], np.ndarray], mask: np.ndarray) -> int:
    """Peak bytes allocated during one call (the result included)."""
    tracemalloc.start()
    try:
        fn(mask)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-root", type=Path, default=None,
                        help="folder holding train-labels.tif (default: $UNET_REPRO_DATA/isbi2012, "
                             "else datasets/isbi2012)")
    parser.add_argument("--slices", type=int, default=3, help="number of label slices (default 3)")
    parser.add_argument("--repeats", type=int, default=3,
                        help="timed calls of the fast algorithm per slice, median reported (default 3)")
    parser.add_argument("--direct-repeats", type=int, default=1,
                        help="timed calls of the direct algorithm per slice, median reported (default 1)")
    parser.add_argument("--connectivity", type=int, choices=(4, 8), default=CELL_CONNECTIVITY,
                        help=f"which cell pixels form one cell (default {CELL_CONNECTIVITY}, as everywhere else)")
    args = parser.parse_args(argv)
    fast_fn = functools.partial(border_weight_map, connectivity=args.connectivity)
    direct_fn = functools.partial(border_weight_map_direct, connectivity=args.connectivity)

    root = find_data_root(ISBI, args.data_root)
    path = root / "train-labels.tif"
    if not path.is_file():
        print(f"error: ISBI 2012 labels not found: expected {path} "
              "(pass --data-root or set UNET_REPRO_DATA)", file=sys.stderr)
        return 2
    stack = tifffile.imread(path)
    if stack.ndim == 2:
        stack = stack[None]
    masks = [s > 127 for s in stack[: args.slices]]

    print(f"labels: {path}  slices: {len(masks)}  shape: {masks[0].shape}  "
          f"fast repeats: {args.repeats}  direct repeats: {args.direct_repeats}  "
          f"cells: {args.connectivity}-connected")
    print(f"{'slice':>5} {'cells':>6} {'direct s':>9} {'fast s':>8} {'speed-up':>9} {'max |diff|':>11}")
    speedups, diffs = [], []
    for k, mask in enumerate(masks):
        n_cells = int(label_cells(mask, args.connectivity).max())
        fast_fn(mask)  # warm-up (imports, first-call allocations)
        t_fast, fast = timed(fast_fn, mask, args.repeats)
        t_direct, direct = timed(direct_fn, mask, args.direct_repeats)
        diff = float(np.abs(fast.astype(np.float64) - direct).max())
        speedups.append(t_direct / t_fast)
        diffs.append(diff)
        print(f"{k:>5} {n_cells:>6} {t_direct:>9.3f} {t_fast:>8.4f} {speedups[-1]:>8.1f}x {diff:>11.2e}")

    speedup, diff = statistics.median(speedups), max(diffs)
    mib = 2.0**20
    mem_fast = peak_memory(fast_fn, masks[0])
    mem_direct = peak_memory(direct_fn, masks[0])
    plane = masks[0].size * 8 / mib
    print(f"median speed-up: {speedup:.1f}x   largest |diff|: {diff:.2e}")
    print(f"peak extra memory, slice 0: fast {mem_fast / mib:.1f} MiB, direct {mem_direct / mib:.1f} MiB "
          f"(one float64 HxW plane = {plane:.1f} MiB)")

    failures = []
    if speedup < MIN_SPEEDUP:
        failures.append(f"median speed-up {speedup:.1f}x is below the {MIN_SPEEDUP:.0f}x target")
    if diff > MAX_DIFF:
        failures.append(f"largest difference {diff:.2e} exceeds {MAX_DIFF:.0e}")
    for failure in failures:
        print(f"FAIL: {failure}", file=sys.stderr)
    if not failures:
        print(f"OK: speed-up >= {MIN_SPEEDUP:.0f}x and difference <= {MAX_DIFF:.0e}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
