"""What the experiment entry points share: finding the data, presets and command-line overrides, figures."""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from unet_repro.train import TrainConfig

REPO = Path(__file__).resolve().parent.parent


def default_data_root(name: str) -> Path:
    """``$UNET_REPRO_DATA/<name>`` when the variable is set, else ``datasets/<name>`` in the repository."""
    env = os.environ.get("UNET_REPRO_DATA")
    return Path(env) / name if env else REPO / "datasets" / name


def missing_data_exit(name: str, root: Path, expected: str) -> None:
    """Stop with a message that says where the data was expected and how to get it."""
    sys.exit(f"error: {name} data not found at {root}\n"
             f"  expected: {expected}\n"
             f"  get it as explained in datasets/README.md, then pass --data-root DIR or set UNET_REPRO_DATA to the "
             f"folder that holds {root.name}/")


def add_training_flags(parser: argparse.ArgumentParser, presets: dict[str, dict[str, Any]]) -> None:
    """The flags every training entry point takes; each one left unset keeps the preset's value."""
    parser.add_argument("--preset", choices=sorted(presets), default="quick", help="starting configuration")
    parser.add_argument("--data-root", type=Path, help="dataset folder (default: $UNET_REPRO_DATA/<dataset>)")
    parser.add_argument("--out", type=Path, help="run directory (default: runs/<experiment>-<preset>)")
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--steps-per-epoch", type=int, help="forward passes per epoch")
    parser.add_argument("--widths", type=lambda s: tuple(int(v) for v in s.split(",")),
                        help="channels per level, e.g. 16,32,64,128,256")
    parser.add_argument("--lr", type=float)
    parser.add_argument("--momentum", type=float)
    parser.add_argument("--optimizer", choices=["sgd", "adam"])
    parser.add_argument("--schedule", choices=["constant", "cosine"])
    parser.add_argument("--accumulate", type=int, help="forward passes per optimizer step")
    parser.add_argument("--batch-size", type=int, help="tiles per forward pass")
    parser.add_argument("--tile", type=int, help="input tile side (572 in the paper)")
    parser.add_argument("--dropout", type=float)
    parser.add_argument("--patience", type=int, help="early-stopping patience in epochs (0: off)")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--device", help="auto, cpu, cuda, cuda:1 ...")
    parser.add_argument("--workers", type=int, help="data-loading worker processes")
    parser.add_argument("--no-augment", dest="augment", action="store_const", const=False)
    parser.add_argument("--no-bf16", dest="bf16", action="store_const", const=False)
    parser.add_argument("--no-channels-last", dest="channels_last", action="store_const", const=False)
    parser.add_argument("--resume", type=Path, help="RUN_DIR/last.pt of a run to continue")


def config_from_args(args: argparse.Namespace, presets: dict[str, dict[str, Any]]) -> TrainConfig:
    cfg = replace(TrainConfig(), **presets[args.preset])
    overrides = {f.name: getattr(args, f.name) for f in fields(TrainConfig)
                 if getattr(args, f.name, None) is not None}
    return replace(cfg, **overrides)


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
                             timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "") if out.returncode == 0 else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def hardware() -> str:
    import platform

    import torch
    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name()} (CUDA {torch.version.cuda}), torch {torch.__version__}"
    return f"CPU {cpu_name() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}"


def cpu_name() -> str | None:
    try:
        with open("/proc/cpuinfo") as f:
            return next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), None)
    except OSError:
        return None


def save_panels(path: Path, panels: list[tuple[str, np.ndarray]], cmap: dict[str, str] | None = None) -> None:
    """Side-by-side PNG of 2-D arrays with titles (e.g. image | label | prediction)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 4.3))
    for ax, (title, a) in zip(np.atleast_1d(axes), panels):
        im = ax.imshow(a, cmap=(cmap or {}).get(title, "gray"))
        ax.set_title(title)
        ax.axis("off")
        if a.dtype.kind == "f" and (cmap or {}).get(title):
            fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
