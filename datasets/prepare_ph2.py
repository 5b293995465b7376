"""Check a PH2 folder in the original layout and build the resized cache the experiments reuse.

    python datasets/prepare_ph2.py --check datasets/ph2 [--size 256]

Reads every case (BMP or PNG image, 1-bit or 24-bit BMP mask), reports what it found and any problem by file name,
and leaves the decoded, resized arrays in the cache (``$UNET_REPRO_CACHE`` or ``~/.cache/unet_repro``).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from unet_repro.data.ph2 import load_ph2  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", type=Path, required=True, help="the PH2 folder (holds 'PH2 Dataset images/')")
    parser.add_argument("--size", type=int, default=256)
    args = parser.parse_args(argv)
    try:
        data = load_ph2(args.check, size=args.size)
    except (FileNotFoundError, ValueError) as e:
        sys.exit(f"error: {e}")
    fraction = data.masks.mean(axis=(1, 2))
    print(f"{args.check}: {len(data.names)} cases ({data.names[0]} .. {data.names[-1]}), resized to "
          f"{args.size}x{args.size}; lesion fraction mean {fraction.mean():.3f} (min {fraction.min():.3f}, max "
          f"{fraction.max():.3f}). OK")


if __name__ == "__main__":
    main()
