"""Writing a file so that no reader, and no kill, ever sees half of it."""
from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO


def temporary_path(path: Path) -> Path:
    """Where `atomic_write` writes before renaming: a hidden ``.<name>.<pid>.tmp`` beside `path` (the pid keeps two
    processes writing the same file, e.g. a shared data cache, out of each other's way)."""
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


@contextmanager
def atomic_write(path: Path | str) -> Iterator[BinaryIO]:
    """A binary file to write `path`'s new contents into: a temporary file beside it, flushed to disk and renamed
    over `path` when the block ends without an error, removed when it raises. An interrupted write leaves the old
    `path` untouched; a killed process leaves at most a stale ``.*.tmp`` (run folders delete those on claim)."""
    path = Path(path)
    tmp = temporary_path(path)
    try:
        with open(tmp, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
