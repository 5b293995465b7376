"""Writing a file so that no reader, and no kill, ever sees half of it."""
from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from .errors import UserError


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
    except OSError as e:
        if isinstance(e, UserError) or e.filename not in (None, str(tmp)):
            raise
        # Name the file the user knows (a write to a full disk names none; an open names the temporary file).
        raise type(e)(e.errno, e.strerror or str(e), str(path)) from e
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes(path: Path | str, data: bytes) -> None:
    """`data` as the new contents of `path`, atomically."""
    with atomic_write(path) as f:
        f.write(data)


def write_text(path: Path | str, text: str) -> None:
    """`text` (UTF-8) as the new contents of `path`, atomically."""
    write_bytes(path, text.encode())


def write_json(path: Path | str, data: object) -> None:
    """`data` as indented JSON, atomically: a killed write never leaves half a results file (every JSON file the
    package writes goes through here). Values JSON does not know (paths, numpy scalars) are written as strings."""
    write_text(path, json.dumps(data, indent=2, default=_plain) + "\n")


def _plain(value: object) -> object:
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    if isinstance(value, tuple):
        return list(value)
    return str(value)
