"""The README's walk-through, every command as written, with tiny settings appended (a small crop of a few slices,
a tiny network, two passes): from 16-bit TIFF images and instance labels to label TIFFs and an evaluation table."""
import csv
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile

REPO = Path(__file__).resolve().parent.parent
HEADING = "### Walk-through"

# What each command gets appended, so that the whole walk-through takes seconds.
TINY = {
    "datasets/example_cells.py": ["--slices", "5", "--crop", "96"],
    "experiments.folder": ["--widths", "4,8,16", "--epochs", "1", "--steps-per-epoch", "2", "--device", "cpu"],
    "experiments.predict": ["--device", "cpu"],
    "experiments.evaluate": [],
}


def walkthrough_commands() -> list[list[str]]:
    """The commands of the first bash block under the README's walk-through heading, comments dropped."""
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index(HEADING):]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    lines = [line.split("  #")[0].strip() for line in block.splitlines()]
    return [shlex.split(line) for line in lines if line and not line.startswith("#")]


def tiny(command: list[str]) -> list[str]:
    assert command[0] == "python", command
    key = next(k for k in TINY if k in command[1:3])
    script = [str(REPO / command[1])] if command[1].endswith(".py") else command[1:3]
    rest = command[2:] if command[1].endswith(".py") else command[3:]
    return [sys.executable, *script, *rest, *TINY[key]]


def test_walkthrough_runs_as_written(tmp_path):
    commands = walkthrough_commands()
    assert [next(k for k in TINY if k in c[1:3]) for c in commands] == list(TINY), "the walk-through changed"
    env = {**os.environ, "PYTHONPATH": str(REPO), "MPLBACKEND": "Agg"}
    env.pop("UNET_REPRO_DATA", None)  # the ISBI stacks that ship with the repository
    for command in commands:
        done = subprocess.run(tiny(command), cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, f"{shlex.join(command)}\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"

    images = sorted((tmp_path / "cells/new/images").iterdir())
    assert len(images) == 5 and tifffile.imread(images[0]).dtype == np.uint16
    truth = tifffile.imread(tmp_path / "cells/new/labels" / images[0].name)
    assert truth.dtype == np.uint16 and truth.max() > 1  # instance labels
    predicted = sorted((tmp_path / "cells/predicted").glob("*_labels.tif"))
    assert [p.name for p in predicted] == [p.stem + "_labels.tif" for p in images]
    labels = tifffile.imread(predicted[0])
    assert labels.dtype == np.uint16 and labels.shape == truth.shape
    evaluation = tmp_path / "cells/evaluation"
    assert {"per_image.csv", "summary.json", "evaluation.md", "worst.png"} <= {p.name for p in evaluation.iterdir()}
    with open(evaluation / "per_image.csv") as f:
        assert len(list(csv.DictReader(f))) == 5
    assert "F1" in (evaluation / "evaluation.md").read_text()


@pytest.mark.parametrize("flag", ["--slices", "--crop"])
def test_example_cells_refuses_bad_counts_and_used_folders(tmp_path, flag):
    script = [sys.executable, str(REPO / "datasets/example_cells.py")]
    done = subprocess.run([*script, "--out", str(tmp_path / "a"), flag, "0"], capture_output=True, text=True)
    assert done.returncode == 2 and done.stderr == f"error: {flag} must be a whole number >= 1, got 0\n"
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "mine.txt").write_text("keep")
    done = subprocess.run([*script, "--out", str(tmp_path / "b")], capture_output=True, text=True)
    assert done.returncode == 2 and "not an empty folder" in done.stderr
    assert (tmp_path / "b" / "mine.txt").read_text() == "keep"
