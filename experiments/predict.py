"""Predict the membrane / foreground probability map of an image with a trained checkpoint (overlap-tile).

    python -m experiments.predict --checkpoint runs/isbi-quick/best.pt --image test-volume.tif --slice 0 \\
        --out prediction.png

``--image`` is a PNG/TIFF image, or a multi-page TIFF stack with ``--slice``. The PNG holds P(foreground) scaled
to 0..255 (for ISBI: P(cell), so membranes are dark); ``--npy`` also saves the float32 map.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from unet_repro.data import read_stack
from unet_repro.inference import predict_tiled
from unet_repro.train import TrainConfig, load_checkpoint, make_model, resolve_device


def read_image(path: Path, index: int) -> np.ndarray:
    if path.suffix.lower() in (".tif", ".tiff"):
        stack = read_stack(path)
        if not 0 <= index < len(stack):
            sys.exit(f"error: {path} has {len(stack)} slices; --slice {index} is out of range")
        return stack[index]
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("L") if im.mode not in ("L", "RGB") else im)
    except Exception as e:
        sys.exit(f"error: {path}: cannot be read as an image ({e})")


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, required=True, help="best.pt or last.pt of a run")
    parser.add_argument("--image", type=Path, required=True)
    parser.add_argument("--slice", type=int, default=0, help="slice of a TIFF stack")
    parser.add_argument("--out", type=Path, default=Path("prediction.png"))
    parser.add_argument("--tile", type=int, help="output tile side (default: the model's for a 572 input)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--npy", action="store_true", help="also write the float32 map as .npy")
    args = parser.parse_args(argv)
    if not args.image.exists():
        sys.exit(f"error: image {args.image} not found")
    ckpt = load_checkpoint(args.checkpoint)
    model = make_model(TrainConfig.from_dict(ckpt["config"]))
    model.load_state_dict(ckpt["model"])
    model.to(resolve_device(args.device))
    image = read_image(args.image, args.slice)
    prob = predict_tiled(model, image, tile=args.tile)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.round(prob * 255).astype(np.uint8)).save(args.out)
    if args.npy:
        np.save(args.out.with_suffix(".npy"), prob)
    print(f"wrote {args.out} ({prob.shape[1]}x{prob.shape[0]})")
    return args.out


if __name__ == "__main__":
    main()
