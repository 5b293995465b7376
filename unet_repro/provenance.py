"""What produced a result: the command as typed, the commit, the hardware, the date and where the data was, with
paths written so that they mean something on another machine (relative to the working folder, or under
``$UNET_REPRO_DATA``)."""
from __future__ import annotations

import datetime
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Sequence

import torch

from .version import __version__
from .data.root import DATA_ENV

PACKAGE_ROOT = Path(__file__).resolve().parents[1]


def git_commit() -> str:
    """The checkout's commit (``-dirty`` with uncommitted changes), or the package version when not in a
    checkout (an installed package)."""
    if (PACKAGE_ROOT / ".git").exists():
        try:
            out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=PACKAGE_ROOT, capture_output=True,
                                 text=True, timeout=10)
            dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=PACKAGE_ROOT,
                                   capture_output=True, text=True, timeout=10).stdout.strip()
            if out.returncode == 0:
                return out.stdout.strip() + ("-dirty" if dirty else "")
        except (OSError, subprocess.SubprocessError):
            pass
    return f"unet_repro {__version__} (no git checkout)"


def cpu_name() -> str | None:
    try:
        with open("/proc/cpuinfo") as f:
            return next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), None)
    except OSError:
        return None


def hardware() -> str:
    """E.g. ``NVIDIA H100 80GB HBM3 (CUDA 12.8, driver 570.1), torch 2.13.0`` or ``CPU AMD EPYC, 2 cores, ...``."""
    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name()} (CUDA {torch.version.cuda}{driver_version()}), torch {torch.__version__}"
    return f"CPU {cpu_name() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}"


def driver_version() -> str:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return ""
    version = out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else ""
    return f", driver {version}" if version else ""


def display_path(path: Path | str | None) -> str | None:
    """`path` as a record should hold it: under ``$UNET_REPRO_DATA`` as ``$UNET_REPRO_DATA/...``, under the working
    folder relative to it, anything else as given."""
    if path is None:
        return None
    path = Path(path)
    resolved = path.resolve()
    env = os.environ.get(DATA_ENV)
    if env:
        try:
            return f"${DATA_ENV}/{resolved.relative_to(Path(env).resolve()).as_posix()}".rstrip("/.")
        except ValueError:
            pass
    try:
        return resolved.relative_to(Path.cwd().resolve()).as_posix() or "."
    except ValueError:
        return str(path)


def command_line(prog: str, argv: Sequence[str] | None) -> str:
    """The command as typed (paths in its arguments as `display_path` writes them)."""
    args = list(sys.argv[1:] if argv is None else argv)
    shown = [display_path(a) if _is_absolute_path(a) else a for a in args]
    return " ".join([prog, *shown])


def _is_absolute_path(arg: str) -> bool:
    return arg.startswith("/") and Path(arg).exists()


def provenance(prog: str, argv: Sequence[str] | None) -> dict[str, str]:
    """What produced a result: the command as typed, the commit, the hardware, the date and Python's version."""
    return {"command": command_line(prog, argv), "commit": git_commit(), "hardware": hardware(),
            "date": datetime.datetime.now().isoformat(timespec="seconds"), "python": platform.python_version()}


__all__ = ["cpu_name", "display_path", "git_commit", "hardware", "provenance"]
