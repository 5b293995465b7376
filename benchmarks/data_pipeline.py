"""Benchmark the ISBI training data pipeline: samples/s per worker, and the workers a GPU's step rate needs.

Usage::

    python benchmarks/data_pipeline.py [--samples 60] [--workers 1,2] [--gpu-tiles-per-s 350] [--data-root DIR]

A sample is what training loads per tile: `TileDataset` with `paper_augmentation` (random slice and position, a
572 x 572 input tile cut with mirrored context, flips / 90-degree rotations, shift + rotation, the paper's elastic
deformation, gray-value changes, the weight map cut and warped along with the label). Measured:

* the one-time set-up (mirror padding and the weight map of every slice, in the `TileDataset` constructor);
* single process: ``dataset[i]`` in a loop, with and without the augmentation (what the augmentation costs);
* through the DataLoader of training (`unet_repro.training.build_train_loader`, batch 1) with N workers, timed from the
  first sample to the last (steady state: without the workers' start), and per worker.

Then: the workers that ``--gpu-tiles-per-s`` needs, at the best per-worker rate measured through the DataLoader
(one worker per core; a machine with other cores scales by their speed).
"""
from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # experiments/ (and unet_repro without `pip install -e .`) from the checkout

from unet_repro.tasks import ISBI, find_data_root
from unet_repro.augment import paper_augmentation
from unet_repro.data import EpochSampler, TileDataset, load_isbi
from unet_repro.training import TrainConfig, build_train_loader
from unet_repro.data.targets import weight_maps

TILE_IN, TILE_OUT = 572, 388  # the paper's U-Net



def single_process_rate(dataset: TileDataset, samples: int) -> tuple[float, float]:
    """Samples/s of ``dataset[i]`` in this process, and the median seconds of one sample."""
    times = []
    for i in range(samples):
        start = time.perf_counter()
        dataset[i]
        times.append(time.perf_counter() - start)
    return samples / sum(times), statistics.median(times)


def loader_rate(dataset: TileDataset, samples: int, workers: int) -> tuple[float, float]:
    """Samples/s through the training DataLoader with `workers` processes, from the first sample to the last, and
    the seconds until the first sample (the workers' start)."""
    loader = build_train_loader(dataset, EpochSampler(samples), TrainConfig(batch_size=1), workers=workers,
                                pin_memory=False)
    start = time.perf_counter()
    batches = iter(loader)
    next(batches)
    first = time.perf_counter()
    count = sum(1 for _ in batches)
    return count / (time.perf_counter() - first), first - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=60, help="samples per measurement (default 60)")
    parser.add_argument("--workers", type=lambda s: [int(v) for v in s.split(",")], default=[1, 2],
                        help="DataLoader worker counts to measure, e.g. 1,2 (default 1,2)")
    parser.add_argument("--gpu-tiles-per-s", type=float, default=350.0,
                        help="a GPU's training rate in tiles/s to feed (default 350)")
    parser.add_argument("--data-root", type=Path, default=None,
                        help="folder with train-volume.tif and train-labels.tif (default: $UNET_REPRO_DATA/isbi2012, "
                             "else datasets/isbi2012)")
    args = parser.parse_args(argv)

    root = find_data_root(ISBI, args.data_root)
    try:
        images, labels = load_isbi(root)
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    torch.set_num_threads(1)  # the pipeline is numpy / OpenCV work; keep torch from competing for the cores
    print(f"data: {root.name} ({len(images)} slices of {images.shape[2]}x{images.shape[1]})  tiles: {TILE_IN} -> "
          f"{TILE_OUT}  samples per measurement: {args.samples}")
    print(f"CPU {platform.machine()}, {os.cpu_count()} cores; torch {torch.__version__}")

    start = time.perf_counter()
    weight_maps(labels)  # computed once per label set (unet_repro.data.targets): the datasets below reuse them
    weight_s = time.perf_counter() - start
    dataset = TileDataset(images, labels, tile_in=TILE_IN, tile_out=TILE_OUT, samples_per_epoch=args.samples,
                          augment=paper_augmentation(), seed=0)
    setup = time.perf_counter() - start
    plain = TileDataset(images, labels, tile_in=TILE_IN, tile_out=TILE_OUT, samples_per_epoch=args.samples, seed=0)
    print(f"set-up, once per run: {setup:.2f} s (weight maps of {len(images)} slices {weight_s:.2f} s, mirror "
          f"padding the rest)")

    print(f"{'pipeline':<46} {'samples/s':>10} {'per worker':>11} {'ms/sample':>10} {'start s':>8}")
    rate, median = single_process_rate(plain, args.samples)
    print(f"{'single process, no augmentation (cut only)':<46} {rate:>10.1f} {rate:>11.1f} {1e3 * median:>10.1f}")
    rate, median = single_process_rate(dataset, args.samples)
    print(f"{'single process, paper augmentation':<46} {rate:>10.1f} {rate:>11.1f} {1e3 * median:>10.1f}")
    per_worker = {}
    for workers in args.workers:
        rate, startup = loader_rate(dataset, args.samples, workers)
        per_worker[workers] = rate / workers
        print(f"{f'DataLoader, {workers} worker(s)':<46} {rate:>10.1f} {rate / workers:>11.1f} "
              f"{1e3 * workers / rate:>10.1f} {startup:>8.2f}")
    if not per_worker:
        return 0
    best = max(per_worker.values())
    needed = math.ceil(args.gpu_tiles_per_s / best)
    print(f"to feed {args.gpu_tiles_per_s:.0f} tiles/s: {needed} workers at {best:.1f} samples/s each (the best "
          f"per-worker rate through the DataLoader), i.e. {needed} cores of this CPU's speed for the workers, besides "
          f"the training process's")
    if len(per_worker) > 1 and min(per_worker.values()) < best / 2:
        print("note: the per-worker rate falls steeply with more workers: the cores are oversubscribed, e.g. by "
              "numpy's BLAS threads (one per core in every worker); compare with OPENBLAS_NUM_THREADS=1")
    return 0


if __name__ == "__main__":
    sys.exit(main())
