"""Benchmark seamless overlap-tile prediction against a plain window loop and MONAI, then one large image.

Usage::

    python benchmarks/inference.py [--widths 16,32,64,128,256] [--batch-sizes 1,4] [--repeats 7] [--large 4096]
                                   [--data-root DIR] [--device auto]

The network is a random U-Net (the time does not depend on the weights), the narrow one of the ``quick`` preset by
default; ``--widths 64,128,256,512,1024`` gives the paper's. Every method predicts the same windows of the ISBI
test slices (512 x 512: 2 x 2 windows of 572 px, at offsets 0 and 128 of the mirror-padded slice, for 388 px output
tiles) and produces the same probabilities (the ``max |diff|`` column, against `predict_tiled`):

* ``predict_tiled``: `unet_repro.inference.predict_tiled` with ``batch_size`` windows per forward pass.
* ``plain loop``: one forward pass per window, each a slice of the mirror-padded (1, 1, H, W) image, its output
  copied into the map: what one would write by hand.
* ``monai``: MONAI's `sliding_window_inference` over the same mirror-padded image, with the window size and an
  overlap that put its windows at the same offsets, ``sw_batch_size`` = batch size, constant blending; the
  predictor pads each 388 px output back to 572 px and adds a validity channel that the blending divides by. Only
  when MONAI is importable (``pip install .[bench]``; not a dependency).

Precision: every row of a table runs in the same arithmetic, named in the table's title: float32 (with TF32 off on
CUDA), and on CUDA a second table in bf16 autocast (the precision a GPU run predicts in); ``--precision`` picks one.

Timing: after one untimed call of each, ``--repeats`` rounds that each run every method once (interleaved, so
that load from other processes hits them alike), cycling through the test slices; medians, slices/s and the
ratio to `predict_tiled` at the first batch size. Then, with ``--large`` > 0, one ``--large`` x ``--large`` image
(the first slice mirrored out to that size) with `predict_tiled`: its time and peak memory: on CPU the process's
peak resident set (getrusage; it only grows, so its rise over the slices' peak is what the large image needed) and,
in a second untimed run (tracing slows it down), the numpy arrays' peak (tracemalloc: the padded image, the
probability map); on CUDA the peak
of allocated GPU memory.
"""
from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # unet_repro without `pip install -e .` from the checkout

from unet_repro.data import load_isbi, mirror_pad, normalize
from unet_repro.geometry import prediction_tile
from unet_repro.inference import AxisTiling, plan_tiles, predict_tiled
from unet_repro.models import UNet
from unet_repro.tasks import ISBI, find_data_root
from unet_repro.training import resolve_device

MIB = 2.0**20
QUICK_WIDTHS = (16, 32, 64, 128, 256)

Predictor = Callable[[np.ndarray], np.ndarray]


def max_rss_mib() -> float:
    """Peak resident set of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def large_image(slices: np.ndarray, side: int) -> np.ndarray:
    """A side x side uint8 image: the first slice mirrored out to that size (EM-like texture everywhere)."""
    h, w = slices.shape[1:]
    return np.ascontiguousarray(mirror_pad(slices[0], 0, max(0, side - h), 0, max(0, side - w))[:side, :side])


def padded_nchw(image: np.ndarray, rows: AxisTiling, cols: AxisTiling, device: torch.device) -> torch.Tensor:
    """The (1, 1, H', W') mirror-padded image that `predict_tiled` cuts its windows from."""
    x = mirror_pad(normalize(image), rows.margin, rows.extent - rows.size + rows.margin,
                   cols.margin, cols.extent - cols.size + cols.margin)
    return torch.from_numpy(x)[None, None].to(device)


def plain_loop(model: torch.nn.Module, tile, device: torch.device, bf16: bool) -> Predictor:
    """One forward pass per window, in NCHW as it comes, the whole output tile copied into the map."""
    @torch.inference_mode()
    def predict(image: np.ndarray) -> np.ndarray:
        rows, cols = plan_tiles(model, image.shape, tile)
        padded = padded_nchw(image, rows, cols, device)
        out = np.empty((rows.extent, cols.extent), np.float32)
        for y in rows.origins:
            for x in cols.origins:
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                    logits = model(padded[:, :, y:y + rows.window, x:x + cols.window])
                p = torch.sigmoid(logits.float())[0, 0]
                out[y:y + rows.tile, x:x + cols.tile] = p.float().cpu().numpy()
        return out[:rows.size, :cols.size]
    return predict


def monai_windows(model: torch.nn.Module, tile, batch_size: int, device: torch.device,
                  bf16: bool) -> Predictor | None:
    """MONAI's `sliding_window_inference` doing `predict_tiled`'s windows; None if MONAI is not installed."""
    try:
        from monai.inferers import sliding_window_inference
    except ImportError:
        return None

    @torch.inference_mode()
    def predict(image: np.ndarray) -> np.ndarray:
        rows, cols = plan_tiles(model, image.shape, tile)
        m = rows.margin

        def predictor(x: torch.Tensor) -> torch.Tensor:
            # MONAI blends window-sized outputs: pad the tile back to its window; the second channel counts the
            # windows whose tile covers a pixel, so that channel 0 / channel 1 is the mean over those tiles.
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                p = torch.sigmoid(model(x).float())
            return F.pad(torch.cat([p, torch.ones_like(p)], 1), (m, m, m, m))

        def overlap(axis: AxisTiling) -> float:
            # MONAI steps int(window * (1 - overlap)) px: half a pixel of slack makes that exactly the stride.
            stride = axis.origins[1] - axis.origins[0] if len(axis.origins) > 1 else axis.window
            return (axis.window - stride - 0.5) / axis.window

        padded = padded_nchw(image, rows, cols, device)
        out = sliding_window_inference(padded, (rows.window, cols.window), batch_size, predictor,
                                       overlap=(overlap(rows), overlap(cols)), mode="constant")
        out = out[0, :, m:m + rows.size, m:m + cols.size]
        return (out[0] / out[1]).float().cpu().numpy()
    return predict


def timed(fn: Predictor, image: np.ndarray, device: torch.device) -> tuple[float, np.ndarray]:
    """Seconds of one call (synchronised on CUDA) and its result."""
    start = time.perf_counter()
    p = fn(image)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start, p


def compare(methods: dict[str, Predictor], slices: np.ndarray, repeats: int,
            device: torch.device) -> dict[str, tuple[list[float], float]]:
    """Interleaved timings of every method on the slices, and each one's largest difference to the first."""
    diffs = dict.fromkeys(methods, 0.0)
    times: dict[str, list[float]] = {name: [] for name in methods}
    for name, fn in methods.items():
        fn(slices[0])  # warm-up: allocator, oneDNN kernels for these shapes
    for r in range(repeats):
        image = slices[r % len(slices)]
        results = {}
        for name, fn in methods.items():
            seconds, results[name] = timed(fn, image, device)
            times[name].append(seconds)
        first = next(iter(results.values()))
        for name, p in results.items():
            diffs[name] = max(diffs[name], float(np.abs(p - first).max()))
    return {name: (times[name], diffs[name]) for name in methods}


def print_table(rows: dict[str, tuple[list[float], float]]) -> None:
    base = statistics.median(next(iter(rows.values()))[0])
    print(f"{'method':34s} {'median s':>9s} {'min s':>7s} {'slices/s':>9s} {'x time':>7s} {'max |diff|':>11s}")
    for name, (times, diff) in rows.items():
        med = statistics.median(times)
        print(f"{name:34s} {med:9.3f} {min(times):7.3f} {1 / med:9.2f} {med / base:7.2f} {diff:11.1e}")


def large_image_run(model: torch.nn.Module, image: np.ndarray, batch_size: int, device: torch.device,
                    bf16: bool) -> None:
    rows, cols = plan_tiles(model, image.shape, None)
    tiles = len(rows.origins) * len(cols.origins)
    side = image.shape[0]
    rss_before = max_rss_mib()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    seconds, _ = timed(lambda im: predict_tiled(model, im, batch_size=batch_size, device=device, autocast=bf16),
                       image, device)
    print(f"{side}x{side} image, predict_tiled batch {batch_size} ({precision_name(bf16)}): {seconds:.1f} s, {tiles} windows, "
          f"{tiles / seconds:.2f} windows/s, {side**2 / seconds / 1e6:.2f} Mpixel/s")
    if device.type == "cuda":
        print(f"peak GPU memory allocated: {torch.cuda.max_memory_allocated(device) / MIB:.0f} MiB")
        return
    print(f"process max RSS: {max_rss_mib():.0f} MiB (after the slices: {rss_before:.0f} MiB)")
    tracemalloc.start()  # a second, untimed run: tracing slows it down
    predict_tiled(model, image, batch_size=batch_size, device=device, autocast=bf16)
    peak = tracemalloc.get_traced_memory()[1] / MIB
    tracemalloc.stop()
    print(f"numpy arrays' peak: {peak:.0f} MiB (tracemalloc, second run; the image itself {image.nbytes / MIB:.0f} "
          f"MiB uint8, its probabilities {side**2 * 4 / MIB:.0f} MiB float32)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--widths", type=lambda s: tuple(int(v) for v in s.split(",")), default=QUICK_WIDTHS,
                        help="channels per level (default: the quick preset's 16,32,64,128,256; the paper's: "
                             "64,128,256,512,1024)")
    parser.add_argument("--batch-sizes", type=lambda s: [int(v) for v in s.split(",")], default=[1, 4],
                        help="windows per forward pass for predict_tiled and MONAI (default 1,4)")
    parser.add_argument("--repeats", type=int, default=7, help="interleaved rounds over the slices (default 7)")
    parser.add_argument("--large", type=int, default=4096, help="side of the large image (default 4096; 0: skip)")
    parser.add_argument("--data-root", type=Path, default=None,
                        help="folder with test-volume.tif (default: $UNET_REPRO_DATA/isbi2012, else "
                             "datasets/isbi2012)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda ...")
    parser.add_argument("--precision", choices=["float32", "bf16", "both"], default=None,
                        help="arithmetic of every row (default: float32 on a CPU, both on CUDA)")
    args = parser.parse_args(argv)

    root = find_data_root(ISBI, args.data_root)
    try:
        slices = load_isbi(root, "test").images
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    device = resolve_device(args.device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False  # float32 means float32
        torch.backends.cudnn.benchmark = True  # as training sets it
    torch.manual_seed(0)
    model = UNet(widths=args.widths).to(device).eval()
    tile = prediction_tile(model.geometry, slices.shape[1:])
    rows, cols = plan_tiles(model, slices.shape[1:], tile)
    hardware = (torch.cuda.get_device_name(device) if device.type == "cuda"
                else f"CPU {platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads")
    try:
        import monai
        monai_version = f"monai {monai.__version__}"
    except ImportError:
        monai_version = "monai not installed (pip install .[bench] for its row)"
    print(f"widths: {','.join(map(str, args.widths))}  output tile: {tile.output} (input {rows.window})  windows per "
          f"slice: {len(rows.origins)} x {len(cols.origins)} at offsets {rows.origins}  device: {hardware}; "
          f"torch {torch.__version__}; {monai_version}")
    choice = args.precision or ("both" if device.type == "cuda" else "float32")
    for bf16 in {"float32": [False], "bf16": [True], "both": [False, True]}[choice]:
        print(f"{slices.shape[2]}x{slices.shape[1]} slices, {args.repeats} interleaved rounds, every row in "
              f"{precision_name(bf16)}:")
        rows_out = compare(methods_in(model, tile, args.batch_sizes, device, bf16), slices, args.repeats, device)
        print_table(rows_out)
        for b in args.batch_sizes:
            ours, theirs = f"predict_tiled (seamless), batch {b}", f"monai sliding_window_inference, {b}"
            if theirs in rows_out:
                ratio = statistics.median(rows_out[theirs][0]) / statistics.median(rows_out[ours][0])
                print(f"batch {b}: monai / predict_tiled = {ratio:.2f} (median times, {precision_name(bf16)})")
        if args.large:
            large_image_run(model, large_image(slices, args.large), args.batch_sizes[0], device, bf16)
    return 0


def precision_name(bf16: bool) -> str:
    return "bf16 autocast" if bf16 else "float32"


def methods_in(model: torch.nn.Module, tile, batch_sizes: list[int], device: torch.device,
               bf16: bool) -> dict[str, Predictor]:
    """The compared methods, all in one precision."""
    methods: dict[str, Predictor] = {}
    for b in batch_sizes:
        methods[f"predict_tiled (seamless), batch {b}"] = (
            lambda im, b=b: predict_tiled(model, im, tile=tile, batch_size=b, device=device, autocast=bf16))
    methods["plain loop, one window per pass"] = plain_loop(model, tile, device, bf16)
    for b in batch_sizes:
        fn = monai_windows(model, tile, b, device, bf16)
        if fn is not None:
            methods[f"monai sliding_window_inference, {b}"] = fn
    return methods


if __name__ == "__main__":
    sys.exit(main())
