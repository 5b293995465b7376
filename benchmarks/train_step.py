"""Benchmark one training step of the paper's U-Net: tiles/s of our pipeline (and, on CPU, of a notebook baseline).

Usage::

    python benchmarks/train_step.py [--widths 64,128,256,512,1024] [--steps N] [--warmup N] [--workers N]
                                    [--batch-size 1] [--data-root DIR] [--device auto] [--peak-tflops X]
                                    [--compile reduce-overhead]

A training step is what `unet_repro.training.train` does per optimizer step with ``batch_size`` tiles of 572 x 572 px
(the paper: one): wait for the batch, forward, pixel-weighted BCE, backward, SGD step (momentum 0.99). Its time
counts the wait for data, so a data pipeline that cannot keep up shows. Medians over ``--steps`` steps (default 20
on CUDA, 3 on a CPU) after ``--warmup`` steps (default: the loader's prefetch depth, 2 per worker, plus one: the
workers' head start is spent before timing begins, so the data wait measured is the steady state's); the data wait
is also given as a mean (occasional stalls show there) and as a share of the step.

* **ours**: `unet_repro`'s pipeline as training runs it, set up by `unet_repro.training.set_up` itself: the
  precision training decides (`decide_precision`: bf16 autocast on CUDA, TF32 off; on CPUs with AVX512-BF16 / AMX
  bf16 for training), ``cudnn.benchmark`` and channels-last on CUDA, the workers training chooses for the machine
  (or ``--workers``), the `TileDataset` with the paper's augmentation and the weight map computed once per slice
  and warped along with the tile; each pass is the loop's own `forward_backward`. On CPU it is timed in float32
  and in bf16 side by side (``--rounds`` alternating rounds, so that both see the same load), for ``--widths`` and
  for the `quick` preset's widths (16..256). ``--compile MODE`` also times the network under `torch.compile`
  (``reduce-overhead`` uses CUDA graphs, for a host-bound step at batch 1).
* **baseline** (CPU only): the same network and augmentation written the straightforward notebook way: float64
  model and tensors, augmentation in the main process, the weight map of each augmented label tile computed with
  `border_weight_map_direct` (the formula as written: one distance transform per cell), no DataLoader.

On CPU it prints all of them, their split into data / weight map / compute time, the bf16 / float32 ratio and the
speed-up over the baseline (target >= 3x). On
CUDA it prints ours with the achieved TFLOP/s (301 GFLOP per forward of one 572 tile for the paper's widths,
scaled by (widths[0] / 64)^2, a step = 3 forwards) and the fraction of the device's dense bf16 peak.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # experiments/ (and unet_repro without `pip install -e .`) from the checkout

from unet_repro.tasks import ISBI, find_data_root
from unet_repro.augment import (
    geometric_transforms,
    intensity_transforms,
    paper_augmentation,
)
from unet_repro.data import EpochSampler, TileDataset, load_isbi, mirror_pad
from unet_repro.losses import WeightedBCEWithLogitsLoss
from unet_repro.models import UNet
from unet_repro.training import TrainConfig, cpu_has_native_bf16, resolve_device, seed_everything, set_up
from unet_repro.training.loop import forward_backward
from unet_repro.weightmap import border_weight_map_direct

TARGET_SPEEDUP = 3.0
QUICK_WIDTHS = (16, 32, 64, 128, 256)  # the quick preset's network
PAPER_FORWARD_GFLOP = 301.0  # one 572 x 572 tile through the paper's U-Net (torch.utils.flop_counter: 300.8)
# Dense bf16 tensor-core peaks (TFLOP/s, no sparsity) from the vendors' data sheets; the first name contained in
# the device's name wins, so the PCIe H100 comes before the SXM one.
BF16_PEAK_TFLOPS = (("H100 PCIe", 756.0), ("H100", 989.0), ("H200", 989.0), ("GH200", 989.0), ("A100", 312.0),
                    ("L40S", 362.0), ("L4", 121.0), ("A10G", 70.0))



@dataclass
class Timings:
    """Seconds per step, and the parts of it (each list one entry per timed step)."""

    total: list[float] = field(default_factory=list)
    parts: dict[str, list[float]] = field(default_factory=dict)
    precision: str = "float32"
    workers: int = 0

    def add(self, total: float, **parts: float) -> None:
        self.total.append(total)
        for name, seconds in parts.items():
            self.parts.setdefault(name, []).append(seconds)

    def median(self, name: str | None = None) -> float:
        return statistics.median(self.total if name is None else self.parts.get(name, [0.0]))

    def data_wait(self) -> str:
        """The wait for data per step: median, mean and mean share of the step."""
        data = self.parts.get("data", [0.0])
        return (f"data wait per step: median {statistics.median(data) * 1e3:.1f} ms, mean "
                f"{statistics.mean(data) * 1e3:.1f} ms ({sum(data) / sum(self.total):.1%} of the step time)")


def forward_gflop(widths: tuple[int, ...]) -> float:
    """GFLOP of one forward pass of a 572 tile: the paper's count, scaled by the square of the width factor."""
    return PAPER_FORWARD_GFLOP * (widths[0] / 64) ** 2


def bf16_peak(device: torch.device, override: float | None) -> float | None:
    if override is not None:
        return override
    name = torch.cuda.get_device_name(device)
    return next((peak for key, peak in BF16_PEAK_TFLOPS if key in name), None)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_ours(cfg: TrainConfig, images: np.ndarray, labels: np.ndarray, steps: int, warmup: int | None,
              device: torch.device, timings: Timings | None = None, compile_mode: str | None = None) -> Timings:
    """Steps of the real training pipeline (`set_up` and the loop's `forward_backward`), added to `timings`."""
    seed_everything(cfg.seed)
    setup = set_up(cfg, images, labels, device, samples_per_epoch=1)
    warmup = 2 * setup.workers + 1 if warmup is None else warmup
    n = (steps + warmup) * cfg.batch_size
    setup = set_up(cfg, images, labels, device, samples_per_epoch=n)
    net = torch.compile(setup.model, mode=compile_mode) if compile_mode else setup.model
    timings = timings if timings is not None else Timings()
    # a training step's precision (evaluation's does not play here)
    timings.precision = "bf16 autocast" if setup.precision.train_bf16 else "float32"
    timings.workers = setup.workers
    net.train()
    sync(device)
    start = time.perf_counter()
    for i, batch in enumerate(setup.loader):
        ready = time.perf_counter()
        forward_backward(setup, net, batch, group=1, steps=True)
        setup.optimizer.step()
        setup.optimizer.zero_grad(set_to_none=True)
        sync(device)
        end = time.perf_counter()
        if i >= warmup:
            timings.add(end - start, data=ready - start, compute=end - ready)
        start = end
    return timings


def notebook_sample(images: np.ndarray, labels: np.ndarray, rng: np.random.Generator, geometric, intensity,
                    tile_in: int, tile_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """One training sample as a notebook makes it: mirror-pad a random slice, cut a tile, augment image and label
    (the composes draw from their own unseeded generators), then compute the weight map of the label tile with the
    direct formula. Returns the float64 image tile, label tile, weight map and the seconds the weight map took."""
    m = (tile_in - tile_out) // 2
    k = int(rng.integers(len(images)))
    image, label = mirror_pad(images[k], m, m, m, m), mirror_pad(labels[k], m, m, m, m)
    y, x = (int(v) for v in rng.integers(0, np.array(labels[k].shape) - tile_out + 1))
    out = geometric(image=image[y:y + tile_in, x:x + tile_in], mask=label[y:y + tile_in, x:x + tile_in])
    image_tile = intensity(image=out["image"])["image"].astype(np.float64) / 255.0
    label_tile = out["mask"][m:m + tile_out, m:m + tile_out].astype(np.float64)
    t0 = time.perf_counter()
    weight = border_weight_map_direct(label_tile).astype(np.float64)
    return image_tile, label_tile, weight, time.perf_counter() - t0


def time_baseline(cfg: TrainConfig, images: np.ndarray, labels: np.ndarray, steps: int, warmup: int) -> Timings:
    """Steps of the notebook baseline on the CPU, all in this process."""
    model = UNet(widths=cfg.widths, dropout=cfg.dropout).double()
    optimizer = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum)
    geometric, intensity = geometric_transforms(), intensity_transforms()
    rng = np.random.default_rng(cfg.seed)
    tile_out = model.output_size(cfg.tile)
    timings = Timings()
    model.train()
    for i in range(steps + warmup):
        start = time.perf_counter()
        samples = [notebook_sample(images, labels, rng, geometric, intensity, cfg.tile, tile_out)
                   for _ in range(cfg.batch_size)]
        x = torch.from_numpy(np.stack([s[0] for s in samples]))[:, None]
        y = torch.from_numpy(np.stack([s[1] for s in samples]))[:, None]
        w = torch.from_numpy(np.stack([s[2] for s in samples]))[:, None]
        ready = time.perf_counter()
        loss = F.binary_cross_entropy_with_logits(model(x), y, weight=w)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        end = time.perf_counter()
        if i >= warmup:
            weight_s = sum(s[3] for s in samples)
            timings.add(end - start, data=ready - start - weight_s, weightmap=weight_s, compute=end - ready)
    return timings


def print_row(name: str, t: Timings, batch: int) -> None:
    # 4 decimals: a GPU step takes a few hundredths of a second
    print(f"{name:<52} {batch / t.median():>8.3f} {t.median():>8.4f} {t.median('data'):>8.4f} "
          f"{t.median('weightmap'):>12.4f} {t.median('compute'):>10.4f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--widths", type=lambda s: tuple(int(v) for v in s.split(",")),
                        default=(64, 128, 256, 512, 1024), help="channels per level (default: the paper's)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per pipeline (default 20 on CUDA, 3 on "
                                                               "a CPU)")
    parser.add_argument("--warmup", type=int, default=None,
                        help="untimed steps first (default: the loader's prefetch depth + 1)")
    parser.add_argument("--batch-size", type=int, default=1, help="tiles per step (default 1, the paper)")
    parser.add_argument("--workers", type=int, default=None,
                        help="DataLoader workers of ours (default: chosen from the machine, as training does)")
    parser.add_argument("--data-root", type=Path, default=None,
                        help="folder with train-volume.tif and train-labels.tif (default: $UNET_REPRO_DATA/isbi2012, "
                             "else datasets/isbi2012)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda ... (the baseline runs on CPU only)")
    parser.add_argument("--peak-tflops", type=float, help="the device's dense bf16 peak, if not in the table")
    parser.add_argument("--compile", default=None, metavar="MODE",
                        help="also time the network under torch.compile(mode=MODE), e.g. reduce-overhead (CUDA graphs)"
                             " or default")
    parser.add_argument("--no-baseline", action="store_true", help="on CPU: time ours only")
    parser.add_argument("--no-quick", action="store_true", help="on CPU: skip the quick preset's widths")
    parser.add_argument("--rounds", type=int, default=2,
                        help="on CPU: alternating float32 / bf16 rounds of --steps steps each (default 2)")
    args = parser.parse_args(argv)

    root = find_data_root(ISBI, args.data_root)
    try:
        images, labels = load_isbi(root)
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    device = resolve_device(args.device)
    steps = args.steps or (20 if device.type == "cuda" else 3)
    cfg = replace(TrainConfig(), widths=args.widths, batch_size=args.batch_size, workers=args.workers,
                  momentum=0.99, lr=1e-3, device=str(device), tile=572)
    hardware = (torch.cuda.get_device_name(device) if device.type == "cuda"
                else f"CPU {platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads")
    print(f"data: {root.name} ({len(images)} slices)  widths: {','.join(map(str, args.widths))}  tile: {cfg.tile}  "
          f"batch: {args.batch_size}  steps: {steps}")
    print(f"device: {hardware}; torch {torch.__version__}")
    header = f"{'pipeline':<52} {'tiles/s':>8} {'s/step':>8} {'data s':>8} {'weightmap s':>12} {'compute s':>10}"
    if device.type == "cuda":
        return cuda_report(cfg, images, labels, steps, args, device, header)

    # CPU: float32 and bf16 in alternating rounds, for the requested widths and the quick preset's.
    native = cpu_has_native_bf16()
    print(f"native bf16 on this CPU: {'yes' if native else 'no (oneDNN emulates it; training uses float32)'}")
    print(header)
    sizes = [args.widths] + ([QUICK_WIDTHS] if args.widths != QUICK_WIDTHS and not args.no_quick else [])
    results = {(w, b): Timings() for w in sizes for b in (False, True)}
    for _ in range(args.rounds):
        for (w, b), t in results.items():
            time_ours(replace(cfg, widths=w, bf16=b), images, labels, steps, args.warmup, device, timings=t)
    for w in sizes:
        label = "paper widths" if w == (64, 128, 256, 512, 1024) else "quick widths" if w == QUICK_WIDTHS else \
            ",".join(map(str, w))
        f32, b16 = results[(w, False)], results[(w, True)]
        print_row(f"ours {f32.precision} ({label})", f32, args.batch_size)
        print_row(f"ours {b16.precision} ({label})", b16, args.batch_size)
        print(f"  bf16 / float32 ({label}): {f32.median() / b16.median():.2f}x faster per step "
              f"(medians of {len(f32.total)} and {len(b16.total)} steps); {b16.data_wait()}")
    ours = results[(args.widths, native)]
    if args.no_baseline:
        return 0
    baseline = time_baseline(cfg, images, labels, steps, args.warmup or 1)
    print_row("baseline (float64, direct weight map/sample)", baseline, args.batch_size)
    speedup = baseline.median() / ours.median()
    print(f"ours = {ours.precision} (what training uses on this CPU)")
    print(f"speed-up: {speedup:.2f}x (target >= {TARGET_SPEEDUP:.0f}x); compute alone "
          f"{baseline.median('compute') / ours.median('compute'):.2f}x")
    if speedup < TARGET_SPEEDUP:
        print(f"BELOW TARGET: speed-up {speedup:.2f}x < {TARGET_SPEEDUP:.0f}x", file=sys.stderr)
        return 1
    print(f"OK: speed-up >= {TARGET_SPEEDUP:.0f}x")
    return 0


def cuda_report(cfg: TrainConfig, images: np.ndarray, labels: np.ndarray, steps: int, args: argparse.Namespace,
                device: torch.device, header: str) -> int:
    """On CUDA: tiles/s, TFLOP/s and the share of the bf16 peak, the data wait; eager and, with --compile, compiled."""
    print(header)
    runs = [("eager", None)] + ([(f"torch.compile {args.compile}", args.compile)] if args.compile else [])
    for name, mode in runs:
        ours = time_ours(cfg, images, labels, steps, args.warmup, device, compile_mode=mode)
        print_row(f"ours ({ours.precision}, {name}, {ours.workers} workers)", ours, args.batch_size)
        rate = args.batch_size / ours.median()
        tflops = rate * 3 * forward_gflop(args.widths) / 1e3
        peak = bf16_peak(device, args.peak_tflops)
        share = f"{tflops / peak:.1%} of the {peak:.0f} TFLOP/s dense bf16 peak" if peak else \
            "peak unknown for this device: pass --peak-tflops"
        print(f"  {name}: {rate:.1f} tiles/s, {tflops:.1f} TFLOP/s ({3 * forward_gflop(args.widths):.0f} GFLOP per "
              f"tile and step; {ours.precision}); {share}; {ours.data_wait()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
