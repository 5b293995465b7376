"""The benchmarks run on a CPU with tiny settings and say in which precision each figure was measured (the GPU run
uses the same scripts)."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))


@pytest.mark.slow
def test_train_step_measures_what_training_does(capsys, isbi_root):
    import train_step
    assert train_step.main(["--data-root", str(isbi_root), "--widths", "4,8,16", "--steps", "2", "--rounds", "1",
                            "--no-quick", "--no-baseline", "--batch-size", "2"]) == 0
    out = capsys.readouterr().out
    assert "ours float32" in out and "ours bf16 autocast" in out and "data wait per step: median" in out


def test_inference_rows_share_one_named_precision(capsys, isbi_root):
    import inference
    assert inference.main(["--data-root", str(isbi_root), "--widths", "4,8,16", "--repeats", "1", "--large", "0",
                           "--batch-sizes", "1", "--precision", "both"]) == 0
    out = capsys.readouterr().out
    assert "every row in float32:" in out and "every row in bf16 autocast:" in out
    assert out.count("plain loop, one window per pass") == 2
