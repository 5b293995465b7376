"""Behaviour held fixed: a tiny CPU training run gives the committed reference metrics (tests/reference/).

The reference was written by `tests/reference/make_tiny_run.py` before the training loop was restructured; a change
that is not meant to alter training must leave every column of metrics.csv that a run determines as it was. The
tolerance (relative 1e-5) covers float32 convolution kernels that differ between CPU models; a change of sampling,
augmentation, schedule, loss or validation moves these numbers by far more.
"""
import csv
import sys
from pathlib import Path

import pytest

REFERENCE = Path(__file__).parent / "reference"
sys.path.insert(0, str(REFERENCE))
from make_tiny_run import COLUMNS, tiny_run  # noqa: E402


def test_tiny_run_gives_the_reference_metrics(tmp_path):
    rows = tiny_run(tmp_path / "run")
    with open(REFERENCE / "tiny_run_metrics.csv", newline="") as f:
        expected = list(csv.DictReader(f))
    assert len(rows) == len(expected)
    for got, want in zip(rows, expected):
        assert int(got["epoch"]) == int(want["epoch"]) and int(got["step"]) == int(want["step"])
        for column in COLUMNS[2:]:
            assert float(got[column]) == pytest.approx(float(want[column]), rel=1e-5, abs=1e-9), (got["epoch"], column)
