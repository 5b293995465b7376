"""What a run tells a person: a plain line per event (on screen and in ``train.log``), progress bars only on a
terminal, ``metrics.csv`` (one row per epoch) and ``curves.png`` (redrawn every epoch)."""
from __future__ import annotations

import csv
import datetime
import sys
from pathlib import Path
from typing import Any, Iterable, TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")


def on_terminal() -> bool:
    """Whether progress bars make sense: stderr is a terminal (not a log file, a pipe or CI)."""
    return sys.stderr.isatty()


def progress(iterable: Iterable[T], enabled: bool = True, **options: Any) -> Iterable[T]:
    """`iterable` with a tqdm bar when `enabled` and on a terminal, else as it is (plain lines say the rest)."""
    return tqdm(iterable, disable=not (enabled and on_terminal()), dynamic_ncols=True, **options)


class RunLog:
    """Plain lines on stdout and appended, time-stamped, to ``train.log`` in the run folder (rank 0 only)."""

    def __init__(self, run_dir: Path | None, enabled: bool = True) -> None:
        self.path = run_dir / "train.log" if run_dir is not None else None
        self.enabled = enabled

    def __call__(self, message: str) -> None:
        if not self.enabled:
            return
        # tqdm.write keeps an open progress bar intact on a terminal, and is a plain print otherwise.
        tqdm.write(message, file=sys.stdout)
        self.record(message)

    def record(self, message: str) -> None:
        """Append `message` to train.log only (e.g. an error the entry point prints itself)."""
        if self.enabled and self.path is not None:
            stamp = datetime.datetime.now().isoformat(timespec="seconds")
            with open(self.path, "a") as f:
                f.write(f"{stamp} {message}\n")


def append_metrics(path: Path, row: dict[str, Any]) -> None:
    new = not path.exists()
    with open(path, "a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(row))
        if new:
            writer.writeheader()
        writer.writerow(row)


def truncate_metrics(path: Path, start_epoch: int) -> None:
    """Drop rows of epochs from `start_epoch` on (a killed run may have logged an epoch it never saved)."""
    if not path.exists():
        return
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    with open(path, "w", newline="") as f:
        if rows:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(r for r in rows if int(r["epoch"]) < start_epoch)


def read_metrics(path: Path | str) -> list[dict[str, float]]:
    with open(path, newline="") as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


def plot_curves(metrics_path: Path, out: Path, loss_name: str, title: str | None = None) -> None:
    """Training and validation loss per epoch (`loss_name`: the run's real loss), and validation IoU and pixel
    error on a fixed 0-1 scale, as a PNG. Every epoch is a visible marker, so a one-epoch run shows its points."""
    if not metrics_path.exists():
        return
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_metrics(metrics_path)
    if not rows:
        return
    epochs = [int(r["epoch"]) for r in rows]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    ax1.plot(epochs, [r["train_loss"] for r in rows], "o-", label=f"training ({loss_name}, augmented tiles)")
    ax1.plot(epochs, [r["val_loss"] for r in rows], "s-", label=f"validation ({loss_name}, whole images)")
    ax1.set_xlabel("epoch")
    ax1.set_ylabel(f"loss ({loss_name})")
    ax1.legend(fontsize=8)
    ax2.plot(epochs, [r["val_iou"] for r in rows], "o-", label="validation IoU (foreground)")
    ax2.plot(epochs, [r["val_pixel_error"] for r in rows], "s-", label="validation pixel error (fraction wrong)")
    ax2.set_ylim(0, 1)
    ax2.set_xlabel("epoch")
    ax2.legend(fontsize=8)
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        if len(epochs) == 1:
            ax.set_xlim(epochs[0] - 1, epochs[0] + 1)
        ax.xaxis.get_major_locator().set_params(integer=True)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
