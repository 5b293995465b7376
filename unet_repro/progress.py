"""How long work shows that it is alive: a tqdm bar on a terminal, and elsewhere (a log file, a pipe, CI) a plain line
at least every 30 seconds, so that a slow phase never looks like a hang."""
from __future__ import annotations

import sys
import time
from typing import Iterable, Iterator, TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")
#: Seconds between plain progress lines off a terminal.
PLAIN_EVERY_S = 30.0


def on_terminal() -> bool:
    """Whether progress bars make sense: stderr is a terminal (not a log file, a pipe or CI)."""
    return sys.stderr.isatty()


def progress(iterable: Iterable[T], desc: str, total: int | None = None, enabled: bool = True, leave: bool = False,
             every: float = PLAIN_EVERY_S) -> Iterable[T]:
    """`iterable` with a tqdm bar on a terminal; elsewhere with a plain line on stderr whenever `every` seconds have
    passed since the last one (``<desc>: 12/30 (40%), 1 min 5 s``). `enabled` False: neither (e.g. other processes
    of a data-parallel run).

    The iterable is always wrapped by tqdm, which iterates it once when made: a DataLoader without workers then
    draws its seed from the global generator as it always has, so runs stay bit-identical to earlier versions.
    """
    total = total if total is not None else (len(iterable) if hasattr(iterable, "__len__") else None)
    bar = tqdm(iterable, desc=desc, total=total, disable=not (enabled and on_terminal()), leave=leave,
               dynamic_ncols=True)
    if not enabled or on_terminal():
        return bar
    return _plain_lines(bar, desc, total, every)


def _plain_lines(items: Iterable[T], desc: str, total: int | None, every: float) -> Iterator[T]:
    start = last = time.monotonic()
    for done, item in enumerate(items, start=1):
        yield item
        now = time.monotonic()
        if now - last >= every:
            last = now
            share = f"/{total} ({done / total:.0%})" if total else ""
            print(f"{desc}: {done}{share}, {duration(now - start)}", file=sys.stderr, flush=True)


def duration(seconds: float) -> str:
    """``42 s``, ``3 min 5 s``, ``2 h 10 min``."""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


__all__ = ["PLAIN_EVERY_S", "duration", "on_terminal", "progress"]
