"""The run folder: what a run writes there, and the rules that keep one run from overwriting another.

A new run refuses a folder that already holds a run (unless told to replace it); a resumed run writes into its
checkpoint's own folder unless told otherwise; temporary files left by a killed write are removed at the start.
"""
from __future__ import annotations

from pathlib import Path

from ..errors import RunFolderError

# The files of a run that `unet_repro.training.train` writes (experiments add figures and result files beside them).
RUN_FILES = ("config.json", "metrics.csv", "last.pt", "best.pt", "train.log", "curves.png")
# A file whose presence says "a run lives here".
RUN_MARKERS = ("config.json", "last.pt", "best.pt", "metrics.csv")


def holds_run(run_dir: Path) -> bool:
    return any((run_dir / name).exists() for name in RUN_MARKERS)


def describe_run(run_dir: Path) -> str:
    """A few words on the run in `run_dir` for messages: its files."""
    present = [name for name in RUN_MARKERS if (run_dir / name).exists()]
    return ", ".join(present) if present else "no run files"


def remove_stale_temporaries(run_dir: Path) -> list[Path]:
    """Delete the hidden ``.*.tmp`` files an interrupted atomic write left behind; return them."""
    stale = sorted(run_dir.glob(".*.tmp")) if run_dir.is_dir() else []
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def claim_run_dir(run_dir: Path, resume: Path | None, overwrite: bool, extra_files: tuple[str, ...] = ()) -> None:
    """Make `run_dir` ready for a run, or refuse with `RunFolderError` before anything in it changes.

    * A new run (`resume` None) into a folder holding a run: refused, unless `overwrite`, which deletes that run's
      files (`RUN_FILES` and the glob patterns `extra_files`, nothing else).
    * A resumed run into its checkpoint's own folder: fine. Into another folder: only if that folder holds no run
      (or `overwrite`).
    """
    run_dir = Path(run_dir)
    own = resume is not None and Path(resume).resolve().parent == run_dir.resolve()
    if not own and holds_run(run_dir):
        if not overwrite:
            if resume is None and not (run_dir / "last.pt").exists() and not (run_dir / "best.pt").exists():
                raise RunFolderError(
                    f"{run_dir} holds the start of a run that never finished an epoch ({describe_run(run_dir)}, no "
                    f"checkpoint); pass --overwrite to start it again, or choose another --out")
            if resume is None:
                raise RunFolderError(
                    f"{run_dir} already holds a run ({describe_run(run_dir)}); continue it with "
                    f"`--resume {run_dir / 'last.pt'}`, choose another --out, or pass --overwrite to replace it")
            raise RunFolderError(
                f"{run_dir} holds another run ({describe_run(run_dir)}) than the checkpoint {resume}; leave out "
                f"--out to continue in {Path(resume).parent}, choose an empty --out, or pass --overwrite")
        for pattern in (*RUN_FILES, *extra_files):
            for path in run_dir.glob(pattern):
                if path.is_file():
                    path.unlink()
    run_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(run_dir)
