"""The tracked files speak of the package only: nothing mentions the removed machine-specific GPU kit or its PH2
stand-in cache, and no absolute path of a folder that results were made in (results record their run folders as
``runs/...`` and their data as ``$UNET_REPRO_DATA/...``)."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# Spelled in pieces, so that this file does not itself hold what it looks for.
WORK, KIT = "/" + "work/", "gpu" + "_session"
FORBIDDEN = (KIT, "benchmarks/GPU.md", "UNET_REPRO_PH2_CACHE", "save_ph2_cache", "load_ph2_cache",
             "write_ph2_standin", WORK, "/tmp/", "/root/", "/home/")


def tracked_files() -> list[Path]:
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    listing = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    return [REPO / name for name in listing.decode().split("\0") if name]


def mentions(path: Path) -> list[str] | None:
    """The forbidden strings in `path`, or None for a binary file (a NUL byte in its first 8 KB, as grep decides)."""
    data = path.read_bytes()
    if b"\0" in data[:8192]:
        return None
    return [s for s in FORBIDDEN if s.encode() in data]


def test_the_check_finds_a_mention(tmp_path):
    (tmp_path / "a.json").write_text('{"data_root": "' + WORK + 'shared/data/ph2"}')
    (tmp_path / "b.md").write_text(f"run `bash benchmarks/{KIT}.sh`")
    (tmp_path / "c.bin").write_bytes(b"\0" + WORK.encode())
    assert mentions(tmp_path / "a.json") == [WORK]
    assert mentions(tmp_path / "b.md") == [KIT]
    assert mentions(tmp_path / "c.bin") is None


def test_no_tracked_file_mentions_the_removed_kit_or_an_absolute_build_path():
    this = Path(__file__).resolve()
    files = [p for p in tracked_files() if p.resolve() != this and p.is_file()]
    found = {p: mentions(p) for p in files}
    text = [p for p, m in found.items() if m is not None]
    # not vacuous: the docs, the code and the recorded results were all read as text
    assert len(text) >= 100
    assert {REPO / "README.md", REPO / "unet_repro" / "data" / "ph2.py", REPO / "benchmarks" / "RESULTS.md"} <= set(text)
    assert any(p.match("results/*/*.json") or p.match("results/*/*/*.json") for p in text)
    hits = {str(p.relative_to(REPO)): m for p, m in found.items() if m}
    assert not hits
