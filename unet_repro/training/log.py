"""What a run tells a person: a plain line per event (on screen and in ``train.log``) and ``metrics.csv`` (one row per
epoch, rewritten atomically). Progress bars and plain progress lines: `unet_repro.progress`; the curves:
`unet_repro.report.plot_curves`."""
from __future__ import annotations

import csv
import datetime
import io
import sys
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from ..files import write_text


class RunLog:
    """Plain lines on stdout and appended, time-stamped, to ``train.log`` in the run folder (rank 0 only). The log is
    the one file a run appends to instead of replacing atomically: a kill can cut its last line, never an earlier
    one."""

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


def read_metrics(path: Path | str) -> list[dict[str, float]]:
    """The rows of a ``metrics.csv`` (an empty list when there is none yet)."""
    path = Path(path)
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


def write_metrics(path: Path | str, rows: list[dict[str, Any]]) -> None:
    """Write `rows` as ``metrics.csv``, atomically (a kill leaves the previous file whole)."""
    buffer = io.StringIO()
    if rows:
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    write_text(path, buffer.getvalue())


def _csv_value(v: float) -> Any:
    """Whole numbers as such (``epoch``, ``step``), the rest as floats (``repr`` precision)."""
    return int(v) if float(v).is_integer() and abs(v) < 2**53 else v


class MetricsFile:
    """``metrics.csv`` of a run: the rows of the epochs it has trained (those of a resumed run's checkpoint, and
    none beyond: a killed run may have logged epochs it never saved), one more per epoch."""

    def __init__(self, path: Path, keep_before_epoch: int) -> None:
        self.path = path
        self.rows: list[dict[str, Any]] = [{k: _csv_value(v) if k in ("epoch", "step") else v for k, v in r.items()}
                                           for r in read_metrics(path) if r["epoch"] < keep_before_epoch]

    def append(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        write_metrics(self.path, self.rows)


__all__ = ["MetricsFile", "RunLog", "read_metrics", "write_metrics"]
