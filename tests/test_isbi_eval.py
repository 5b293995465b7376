"""The cross-validation report of `experiments.isbi_eval` on hand-made held-out probability maps (no training): the
columns, and the flag on values that only a degenerate (all-membrane / all-cell) prediction could give."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
from scipy import ndimage

from unet_repro.cli import isbi_eval
from unet_repro.data import load_isbi


def fake_run(run: Path, isbi_root: Path, degenerate_folds: tuple[int, ...] = ()) -> None:
    """A finished 2-fold run of the 4 synthetic slices: folds.json, and per fold final_metrics.json and
    heldout_prob.tif. A fold in ``degenerate_folds`` predicts P(cell) = 0.05 everywhere (all cell at t = 0, all
    membrane at every other threshold: a model that has not learnt anything); the others a blurred truth."""
    labels = load_isbi(isbi_root).labels
    folds = [[0, 1], [2, 3]]
    run.mkdir()
    (run / "folds.json").write_text(json.dumps({"folds": folds, "command": "python -m experiments.isbi --folds 2"}))
    for k, idx in enumerate(folds):
        d = run / f"fold_{k}"
        d.mkdir()
        (d / "final_metrics.json").write_text(json.dumps({
            "split": {"val_slices": idx}, "preset": "quick", "tta": False, "commit": "abc1234", "hardware": "cpu",
            "seed": 0, "config": {"epochs": 1, "steps_per_epoch": 1, "widths": [4, 8, 16]}}))
        truth = labels[idx] > 0
        if k in degenerate_folds:
            prob = np.full(truth.shape, 0.05, np.float32)
        else:
            prob = np.stack([ndimage.gaussian_filter(t.astype(np.float32), 1.0) for t in truth])
            prob = (0.02 + 0.96 * prob).astype(np.float32)
        tifffile.imwrite(d / "heldout_prob.tif", prob, photometric="minisblack")


def test_report_has_the_topological_error_and_no_flag_for_real_predictions(isbi_root, tmp_path):
    run = tmp_path / "cv"
    fake_run(run, isbi_root)
    summary = isbi_eval.evaluate_run(run, isbi_root)
    report = (run / "report.md").read_text()
    header = next(line for line in report.splitlines() if line.startswith("| | "))
    assert "| warping error |" in header and "| topological error |" in header
    for m in ("warping_error", "topological_error", "rand_error", "pixel_error"):
        assert summary["pooled_degenerate"][m] is False and 0 <= summary["pooled"][m] <= 1
        assert summary["per_unit"]["fold 0"]["degenerate"][m] is False
        assert summary["per_unit"]["fold 1"]["degenerate"][m] is False
    assert summary["pooled"]["topological_error"] >= summary["pooled"]["warping_error"]
    assert isbi_eval.WARN not in report and "Degenerate, not a result" not in report
    pooled_row = next(line for line in report.splitlines() if line.startswith("| **ours, pooled**"))
    assert pooled_row.count("**") == 2 + 2 * len(isbi_eval.COLUMNS)      # every value in bold
    saved = json.loads((run / "summary.json").read_text())
    assert saved["pooled_degenerate"]["warping_error"] is False
    assert isinstance(saved["pooled_degenerate_thresholds"], list)
    assert "topological_error" in (run / "per_slice.csv").read_text().splitlines()[0]


def test_degenerate_fold_is_flagged_never_bold(isbi_root, tmp_path, capsys):
    """A fold whose every threshold gives an all-membrane (or all-cell) slice: warping error 0 from an empty
    prediction must not appear as a result."""
    run = tmp_path / "cv"
    fake_run(run, isbi_root, degenerate_folds=(0,))
    with pytest.warns(RuntimeWarning, match="degenerate"):
        summary = isbi_eval.evaluate_run(run, isbi_root)
    fold0 = summary["per_unit"]["fold 0"]
    assert all(fold0["degenerate"][m] for m, _ in isbi_eval.COLUMNS)
    assert fold0["warping_error"] == 0.0                                  # the number that fooled the old report
    assert fold0["topological_error"] > 0                                 # Jain's count is not fooled
    assert fold0["degenerate_thresholds"] == pytest.approx(np.arange(10) / 10)
    assert not any(summary["per_unit"]["fold 1"]["degenerate"].values())
    # pooled: fold 0's slices make every threshold degenerate
    assert all(summary["pooled_degenerate"].values()) and all(summary["mean_degenerate"].values())
    report = (run / "report.md").read_text()
    pooled_row = next(line for line in report.splitlines() if line.startswith("| **ours, pooled**"))
    assert "**" not in pooled_row.split("|", 2)[2]                        # no value in bold
    assert pooled_row.count(isbi_eval.WARN) == len(isbi_eval.COLUMNS)
    fold_rows = [line for line in report.splitlines() if line.startswith("| fold ")]
    assert fold_rows[0].count(isbi_eval.WARN) == len(isbi_eval.COLUMNS) and isbi_eval.WARN not in fold_rows[1]
    assert "Degenerate, not a result" in report and "warping error" in report
    saved = json.loads((run / "summary.json").read_text())
    assert saved["pooled_degenerate"]["warping_error"] is True
    assert saved["per_unit"]["fold 0"]["degenerate"]["warping_error"] is True
    assert "warning:" in capsys.readouterr().err
