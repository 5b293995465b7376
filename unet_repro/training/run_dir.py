"""The run folder: what a run writes there, when a run counts as finished, and the rules that keep one run from
overwriting another or a user's files.

* A new run goes into a new or empty folder. A folder holding another run is refused unless ``--overwrite``, which
  then deletes that run's files (`RUN_FILES`, `RESULT_FILES`) and nothing else; a folder holding files the package
  did not write is refused, naming them, unless ``--overwrite``, which leaves them where they are.
* A resumed run writes into its checkpoint's own folder, or into a folder that holds no run.
* Nothing is claimed before the run has passed its checks: the entry points read the data, the flags and any
  checkpoint first, and the training loop claims the folder only then.
* Temporary files left by a killed atomic write are removed when a folder is claimed.
* A run is finished when its result file (`RESULT`) exists and says so; a run stopped by a time limit or an
  interrupt has a result (its best checkpoint scored) but is not finished, and resuming it goes on.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import RunFolderError

# The files of a run that `unet_repro.training.train` writes.
RUN_FILES = ("config.json", "metrics.csv", "last.pt", "best.pt", "train.log", "curves.png")
# What a scored run adds beside them (glob patterns).
RESULT_FILES = ("final_metrics.json", "heldout_prob.tif", "test_prob.tif", "val_*.png", "test_metrics.json",
                "test_probs.npy")
RESULT = "final_metrics.json"
# A file whose presence says "a run lives here".
RUN_MARKERS = ("config.json", "last.pt", "best.pt", "metrics.csv")


def holds_run(run_dir: Path) -> bool:
    return any((run_dir / name).exists() for name in RUN_MARKERS)


def run_files(run_dir: Path) -> list[Path]:
    """The files in `run_dir` that a run writes (present ones only)."""
    found = {p for pattern in (*RUN_FILES, *RESULT_FILES) for p in run_dir.glob(pattern) if p.is_file()}
    return sorted(found)


def foreign_files(run_dir: Path) -> list[Path]:
    """Entries of `run_dir` that no run writes (a user's files, other folders); hidden temporaries excluded."""
    if not run_dir.is_dir():
        return []
    ours = set(run_files(run_dir))
    return sorted(p for p in run_dir.iterdir() if p not in ours and not _temporary(p))


def _temporary(path: Path) -> bool:
    return path.name.startswith(".") and path.name.endswith(".tmp")


def describe(paths: list[Path], limit: int = 5) -> str:
    names = [p.name + ("/" if p.is_dir() else "") for p in paths[:limit]]
    return ", ".join(names) + (f" and {len(paths) - limit} more" if len(paths) > limit else "")


def read_result(run_dir: Path) -> dict[str, Any] | None:
    """The run's result file, or None when it has none (or an unreadable one)."""
    try:
        return json.loads((Path(run_dir) / RESULT).read_text())
    except (OSError, ValueError):
        return None


def is_finished(run_dir: Path) -> bool:
    """Whether the run in `run_dir` is finished: trained to its stop rule and scored (see the module docstring)."""
    result = read_result(run_dir)
    return result is not None and bool(result.get("finished", True))


def remove_stale_temporaries(run_dir: Path) -> list[Path]:
    """Delete the hidden ``.*.tmp`` files an interrupted atomic write left behind; return them."""
    stale = sorted(run_dir.glob(".*.tmp")) if run_dir.is_dir() else []
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def check_run_dir(run_dir: Path, resume: Path | None, overwrite: bool) -> None:
    """`RunFolderError` unless a run (new, or resuming `resume`) may go into `run_dir`; changes nothing."""
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise RunFolderError(f"--out {run_dir} is a file, not a folder; choose a folder for the run")
    for parent in run_dir.parents:
        if parent.exists() and not parent.is_dir():
            raise RunFolderError(f"--out {run_dir} lies under {parent}, which is a file; choose another folder")
    own = resume is not None and Path(resume).resolve().parent == run_dir.resolve()
    if own or overwrite or not run_dir.is_dir():
        return
    if holds_run(run_dir):
        present = describe([run_dir / n for n in RUN_MARKERS if (run_dir / n).exists()])
        if resume is not None:
            raise RunFolderError(
                f"{run_dir} holds another run ({present}) than the checkpoint {resume}; leave out --out to continue "
                f"in {Path(resume).parent}, choose an empty --out, or pass --overwrite")
        if not (run_dir / "last.pt").exists():
            raise RunFolderError(f"{run_dir} holds the start of a run that never saved a checkpoint ({present}); "
                                 f"pass --overwrite to start it again, or choose another --out")
        raise RunFolderError(f"{run_dir} already holds a run ({present}); continue it with `--resume "
                             f"{run_dir / 'last.pt'}`, choose another --out, or pass --overwrite to replace it")
    foreign = foreign_files(run_dir) + run_files(run_dir)
    if foreign:
        raise RunFolderError(f"{run_dir} is not empty and holds no run: {describe(foreign)} would be in the way; "
                             f"choose a new or empty --out (or pass --overwrite to put the run there anyway, "
                             f"replacing files of the names a run writes)")


def claim_run_dir(run_dir: Path, resume: Path | None, overwrite: bool) -> None:
    """Make `run_dir` ready for a run (see `check_run_dir`); with `overwrite`, delete the run files of the run it
    replaces (nothing else). Called once the run has passed all its checks."""
    run_dir = Path(run_dir)
    check_run_dir(run_dir, resume, overwrite)
    own = resume is not None and Path(resume).resolve().parent == run_dir.resolve()
    if overwrite and not own:
        for path in run_files(run_dir):
            path.unlink()
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise RunFolderError(f"--out {run_dir} cannot be made ({e.strerror}); choose another folder") from None
    remove_stale_temporaries(run_dir)


__all__ = ["RESULT", "RESULT_FILES", "RUN_FILES", "check_run_dir", "claim_run_dir", "foreign_files", "holds_run",
           "is_finished", "read_result", "run_files"]
