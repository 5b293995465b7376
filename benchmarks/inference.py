"""Benchmark overlap-tile prediction: 512 x 512 slices per second, and one large image's time and peak memory.

Usage::

    python benchmarks/inference.py [--widths 64,128,256,512,1024] [--slices 3] [--large 4096] [--batch-size 4]
                                   [--data-root DIR] [--device auto]

Runs `unet_repro.inference.predict_tiled` (the paper's U-Net by default, random weights: the time does not depend
on them) as validation and `experiments/predict.py` do: output tiles of 388 px from 572 px input windows of the
mirror-padded image, ``--batch-size`` windows per forward pass, bf16 autocast on CUDA, float32 on CPU.

* ``--slices`` ISBI test slices (512 x 512: 2 x 2 tiles each), after one untimed slice: median seconds and
  slices/s.
* one ``--large`` x ``--large`` image (the first slice mirrored out to that size): its time, tiles/s, and its peak
  memory: on CPU the process's peak resident set (getrusage; it includes the model and torch's buffers, and only
  grows, so its rise over the slices' peak is what the large image needed beyond them) and, in a second untimed
  run (tracing slows it down), the numpy arrays' peak (tracemalloc: the padded image, the output); on CUDA the
  peak of allocated GPU memory.
"""
from __future__ import annotations

import argparse
import math
import os
import platform
import resource
import statistics
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # experiments/ (and unet_repro without `pip install -e .`) from the checkout

from experiments.common import default_data_root
from unet_repro.data.isbi import load_isbi, mirror_pad
from unet_repro.inference import default_tile, predict_tiled
from unet_repro.models import UNet
from unet_repro.train import resolve_device

MIB = 2.0**20



def max_rss_mib() -> float:
    """Peak resident set of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def large_image(slices: np.ndarray, side: int) -> np.ndarray:
    """A side x side uint8 image: the first slice mirrored out to that size (EM-like texture everywhere)."""
    h, w = slices.shape[1:]
    return np.ascontiguousarray(mirror_pad(slices[0], 0, max(0, side - h), 0, max(0, side - w))[:side, :side])


def predict(model: torch.nn.Module, image: np.ndarray, batch_size: int, device: torch.device) -> float:
    """Seconds of one overlap-tile prediction (synchronised on CUDA)."""
    start = time.perf_counter()
    predict_tiled(model, image, batch_size=batch_size, device=device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--widths", type=lambda s: tuple(int(v) for v in s.split(",")),
                        default=(64, 128, 256, 512, 1024), help="channels per level (default: the paper's)")
    parser.add_argument("--slices", type=int, default=3, help="timed 512 x 512 slices (default 3)")
    parser.add_argument("--large", type=int, default=4096, help="side of the large image (default 4096; 0: skip)")
    parser.add_argument("--batch-size", type=int, default=4, help="input windows per forward pass (default 4)")
    parser.add_argument("--data-root", type=Path, default=None,
                        help="folder with test-volume.tif (default: $UNET_REPRO_DATA/isbi2012, else "
                             "datasets/isbi2012)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda ...")
    args = parser.parse_args(argv)

    root = args.data_root or default_data_root("isbi2012")
    try:
        slices = load_isbi(root, "test").images
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    device = resolve_device(args.device)
    cuda = device.type == "cuda"
    torch.manual_seed(0)
    model = UNet(widths=args.widths).to(device).eval()
    if cuda:
        model.to(memory_format=torch.channels_last)
    tile = default_tile(model, slices.shape[1:])
    hardware = (torch.cuda.get_device_name(device) if cuda
                else f"CPU {platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads")
    print(f"widths: {','.join(map(str, args.widths))}  output tile: {tile} (input {model.input_size(tile)})  "
          f"batch: {args.batch_size}  device: {hardware}; torch {torch.__version__}")

    predict(model, slices[0], args.batch_size, device)  # warm-up
    times = [predict(model, s, args.batch_size, device) for s in slices[1:1 + args.slices]]
    per_slice = statistics.median(times)
    tiles = math.ceil(slices.shape[1] / tile) * math.ceil(slices.shape[2] / tile)
    print(f"{slices.shape[2]}x{slices.shape[1]} slices: {per_slice:.3f} s each (median of {len(times)}), "
          f"{1 / per_slice:.3f} slices/s, {tiles / per_slice:.2f} tiles/s ({tiles} tiles per slice)")
    if not args.large:
        return 0

    image = large_image(slices, args.large)
    tiles = math.ceil(args.large / tile) ** 2
    rss_before = max_rss_mib()
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    seconds = predict(model, image, args.batch_size, device)
    print(f"{args.large}x{args.large} image: {seconds:.1f} s, {tiles} tiles, {tiles / seconds:.2f} tiles/s, "
          f"{args.large**2 / seconds / 1e6:.2f} Mpixel/s")
    if cuda:
        print(f"peak GPU memory allocated: {torch.cuda.max_memory_allocated(device) / MIB:.0f} MiB")
        return 0
    print(f"process max RSS: {max_rss_mib():.0f} MiB (after the slices: {rss_before:.0f} MiB)")
    tracemalloc.start()  # a second, untimed run: tracing more than doubles the time
    predict(model, image, args.batch_size, device)
    numpy_peak = tracemalloc.get_traced_memory()[1] / MIB
    tracemalloc.stop()
    print(f"numpy arrays' peak: {numpy_peak:.0f} MiB (tracemalloc, second run; the image itself "
          f"{image.nbytes / MIB:.0f} MiB uint8, its probabilities {args.large**2 * 4 / MIB:.0f} MiB float32)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
