"""Benchmark batch prediction: the ``predict`` command on a folder of images against a bare loop of `predict_tiled`.

Usage::

    python benchmarks/predict_batch.py [--images 100] [--size 512] [--repeats 3] [--widths 16,32,64,128,256]
                                       [--device auto]

The network is an untrained U-Net of the ``quick`` preset's widths (the time does not depend on the weights), saved
as a checkpoint. The images are ``--images`` generated ``--size`` x ``--size`` uint8 images (smooth blobs with
noise), saved as PNGs in a temporary folder. Both sides predict the same images with the same network, in the
precision the checkpoint's run decides (float32 on a CPU without native bf16):

* ``predict``: ``unet_repro.cli.predict.main`` run in-process on the folder, into a new output folder: loading the
  checkpoint, listing, reading and checking every PNG, predicting, the mask (P > 0.5) and the instance labels, and
  writing the three ImageJ TIFFs of every image (atomically, each flushed to disk).
* ``predict_tiled loop``: ``unet_repro.inference.predict_tiled`` over the same images already in memory as uint8
  arrays, with the loaded network; the maps are discarded. Nothing else.

Timing: after one untimed call of each (on 2 images), ``--repeats`` rounds that each run both sides once, in
alternating order (so that load from other processes hits them alike); medians and their ratio, of the wall time
and of the process's CPU time (all its threads; less affected than the wall time when other processes share the
cores). The target is a ratio of at most 1.15. Then, in one more untimed pass over the images, the median time per
image of each step the command adds to the network: reading a PNG, the mask and labels, writing the three TIFFs.

The untrained network's map is fine-grained noise about 0.5: some 60,000 specks per 512 x 512 image become objects,
far more than a real mask has (labelling them takes about 1.5 ms).
"""
from __future__ import annotations

import argparse
import contextlib
import io
import statistics
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from scipy import ndimage

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # unet_repro without `pip install -e .` from the checkout

from unet_repro.cli import predict  # noqa: E402
from unet_repro.data.images import read_image_file  # noqa: E402
from unet_repro.inference import predict_tiled  # noqa: E402
from unet_repro.prediction import OUTPUTS, segment, write_imagej  # noqa: E402
from unet_repro.training import TrainConfig, build_network, load_trained, save_checkpoint  # noqa: E402

QUICK_WIDTHS = (16, 32, 64, 128, 256)
TARGET = 1.15


def generated_images(n: int, size: int, seed: int = 0) -> list[np.ndarray]:
    """`n` uint8 images of smooth blobs (Gaussian-filtered noise, stretched to 0..255) with pixel noise."""
    rng = np.random.default_rng(seed)
    images = []
    for _ in range(n):
        blobs = ndimage.gaussian_filter(rng.normal(size=(size, size)), 6)
        blobs = (blobs - blobs.min()) / (np.ptp(blobs) + 1e-12) * 200 + rng.normal(0, 10, (size, size))
        images.append(np.clip(blobs + 25, 0, 255).astype(np.uint8))
    return images


def write_checkpoint(path: Path, widths: tuple[int, ...]) -> None:
    """An untrained network of `widths` as a checkpoint that `load_trained` reads."""
    torch.manual_seed(0)
    cfg = TrainConfig(widths=widths, tile=572)
    save_checkpoint(path, {"model": build_network(cfg).state_dict(), "config": asdict(cfg)})


def clocks() -> tuple[float, float]:
    """(wall, CPU time of this process's threads), in seconds."""
    return time.perf_counter(), time.process_time()


def since(start: tuple[float, float]) -> tuple[float, float]:
    now = clocks()
    return now[0] - start[0], now[1] - start[1]


def run_predict(checkpoint: Path, folder: Path, out: Path, device: str) -> tuple[float, float]:
    """(wall, CPU) seconds of one in-process ``predict`` call on `folder` into the new folder `out` (its printing
    silenced)."""
    start = clocks()
    with contextlib.redirect_stdout(io.StringIO()):
        predict.main(["--checkpoint", str(checkpoint), "--out", str(out), "--device", device, str(folder)])
    return since(start)


def run_loop(model: torch.nn.Module, images: list[np.ndarray], autocast: bool) -> tuple[float, float]:
    """(wall, CPU) seconds of `predict_tiled` over `images` (arrays in memory)."""
    start = clocks()
    for image in images:
        predict_tiled(model, image, autocast=autocast)
    return since(start)


def steps(folder: Path, out: Path, model: torch.nn.Module, autocast: bool) -> dict[str, float]:
    """Median seconds per image of what the command adds to the network: reading, the mask and labels, writing."""
    times: dict[str, list[float]] = {"read PNG": [], "mask + labels": [], "write 3 TIFFs": []}
    out.mkdir()
    for path in sorted(folder.iterdir()):
        t0 = time.perf_counter()
        image = read_image_file(path).planes[0]
        t1 = time.perf_counter()
        prob = predict_tiled(model, image, autocast=autocast)
        t2 = time.perf_counter()
        mask, labels = segment(prob)
        t3 = time.perf_counter()
        for output, page in zip(OUTPUTS, (prob, mask, labels)):
            write_imagej(out / f"{path.stem}_{output}.tif", [page], output, stack=False)
        t4 = time.perf_counter()
        times["read PNG"].append(t1 - t0)
        times["mask + labels"].append(t3 - t2)
        times["write 3 TIFFs"].append(t4 - t3)
    return {k: statistics.median(v) for k, v in times.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--widths", type=lambda s: tuple(int(v) for v in s.split(",")), default=QUICK_WIDTHS)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        folder, warm = tmp / "images", tmp / "warm"
        folder.mkdir()
        warm.mkdir()
        images = generated_images(args.images, args.size)
        for i, image in enumerate(images):
            Image.fromarray(image).save(folder / f"image_{i:03d}.png")
            if i < 2:
                Image.fromarray(image).save(warm / f"image_{i:03d}.png")
        checkpoint = tmp / "untrained.pt"
        write_checkpoint(checkpoint, args.widths)
        trained = load_trained(checkpoint, device=args.device)
        autocast = trained.precision.eval_bf16
        device = str(trained.device)
        print(f"images: {args.images} x {args.size}x{args.size} uint8 PNG; network: untrained U-Net widths "
              f"{','.join(map(str, args.widths))}; {device}, {'bf16 autocast' if autocast else 'float32'}; torch "
              f"{torch.__version__}, {torch.get_num_threads()} thread(s)")
        run_predict(checkpoint, warm, tmp / "warm_out", device)
        run_loop(trained.model, images[:2], autocast)
        rounds = []
        for r in range(args.repeats):
            if r % 2 == 0:
                p = run_predict(checkpoint, folder, tmp / f"out_{r}", device)
                loop = run_loop(trained.model, images, autocast)
            else:
                loop = run_loop(trained.model, images, autocast)
                p = run_predict(checkpoint, folder, tmp / f"out_{r}", device)
            rounds.append((p, loop))
            print(f"round {r + 1}: predict {p[0]:.2f} s (CPU {p[1]:.2f} s), predict_tiled loop {loop[0]:.2f} s (CPU "
                  f"{loop[1]:.2f} s), ratio {p[0] / loop[0]:.3f} (CPU {p[1] / loop[1]:.3f})", flush=True)
        for k, clock in enumerate(("wall", "CPU")):
            p, loop = statistics.median(x[k] for x, _ in rounds), statistics.median(x[k] for _, x in rounds)
            print(f"median of {args.repeats}, {clock} time: predict {p:.2f} s ({1000 * p / args.images:.0f} ms/image), "
                  f"predict_tiled loop {loop:.2f} s ({1000 * loop / args.images:.0f} ms/image), ratio {p / loop:.3f} "
                  f"(target <= {TARGET})")
        per_step = steps(folder, tmp / "steps", trained.model, autocast)
        print("what predict adds, median per image: "
              + ", ".join(f"{k} {1000 * v:.1f} ms" for k, v in per_step.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
