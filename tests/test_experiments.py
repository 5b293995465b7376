"""The entry points, end to end on small generated data in the official layout."""
import json

import numpy as np
import pytest
import tifffile
from conftest import real_data_root
from PIL import Image

from experiments import isbi, predict, weightmap_demo

TINY = ["--widths", "4,8,16", "--tile", "108", "--epochs", "2", "--steps-per-epoch", "2", "--val-slices", "1",
        "--device", "cpu"]


def test_isbi_quick_run_end_to_end_and_resume(isbi_root, tmp_path):
    out = tmp_path / "run"
    result = isbi.main(["--data-root", str(isbi_root), "--out", str(out), *TINY])
    for name in ("best.pt", "last.pt", "metrics.csv", "config.json", "curves.png", "final_metrics.json",
                 "val_slice_03.png"):
        assert (out / name).exists(), name
    saved = json.loads((out / "final_metrics.json").read_text())
    assert saved["validation"] == result["validation"]
    assert 0 <= saved["validation"]["pixel_error"] <= 1 and saved["seed"] == 0 and saved["commit"]
    assert saved["config"]["widths"] == [4, 8, 16]
    # Extend the finished run by one epoch from its last checkpoint.
    isbi.main(["--epochs", "3", "--resume", str(out / "last.pt")])
    assert len((out / "metrics.csv").read_text().strip().splitlines()) == 1 + 3


def test_missing_data_says_where_and_how(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        isbi.main(["--data-root", str(tmp_path / "nothing"), *TINY])
    message = capsys.readouterr().err
    assert e.value.code == 1 and message.startswith("error: ") and message.count("\n") == 1
    assert str(tmp_path / "nothing") in message and "datasets/README.md" in message


def test_predict_writes_probability_stack(isbi_root, tmp_path):
    out = tmp_path / "run"
    isbi.main(["--data-root", str(isbi_root), "--out", str(out), *TINY[:-6], "--epochs", "1",
               "--steps-per-epoch", "1", "--val-slices", "1", "--device", "cpu"])
    predict.main(["--checkpoint", str(out / "best.pt"), "--image", str(isbi_root / "test-volume.tif"),
                  "--out", str(tmp_path / "p")])
    prob = tifffile.imread(tmp_path / "p" / "test-volume_prob.tif")
    assert prob.shape == (2, 96, 96) and prob.dtype == np.float32  # both slices of the stack
    assert 0 <= prob.min() and prob.max() <= 1


def test_weightmap_demo_png(isbi_root, tmp_path):
    png = weightmap_demo.main(["--data-root", str(isbi_root), "--out", str(tmp_path / "wm.png")])
    assert Image.open(png).size[0] > 300


@pytest.mark.realdata
def test_real_isbi_short_training_run(tmp_path, one_threshold_challenge_scoring):
    root = real_data_root("isbi2012")
    result = isbi.main(["--data-root", str(root), "--out", str(tmp_path), "--widths", "8,16,32,64,128",
                        "--epochs", "1", "--steps-per-epoch", "3", "--device", "cpu"])
    assert result["split"]["val_slices"] == [25, 26, 27, 28, 29]
    assert (tmp_path / "val_slice_29.png").exists()


def test_cross_validation_report_end_to_end(isbi_root, tmp_path):
    # 4 synthetic slices, 2 folds of 2; run fold 1 only: a reduced protocol, as on a CPU.
    out = tmp_path / "cv"
    args = ["--data-root", str(isbi_root), "--out", str(out), "--widths", "4,8,16", "--tile", "108", "--epochs", "1",
            "--steps-per-epoch", "1", "--device", "cpu", "--folds", "2", "--fold-list", "1", "--tta",
            "--predict-test"]
    summary = isbi.main(args)
    assert summary["folds_run"] == [1] and summary["fold_slices"] == [[0, 1], [2, 3]]
    report = (out / "report.md").read_text()
    assert "Not the same test set" in report and "Reduced protocol" in report and "0.000353" in report
    assert "| all cell (trivial prediction, same slices) |" in report and summary["all_cell"]["pixel_error"] > 0
    for m in ("pixel_error", "rand_error", "warping_error", "v_rand", "v_info"):
        assert 0 <= summary["pooled"][m] <= 1
    rows = (out / "per_slice.csv").read_text().strip().splitlines()
    assert len(rows) == 1 + 2 and rows[1].startswith("2,fold 1,")
    assert (out / "best_slice_02.png").exists() or (out / "best_slice_03.png").exists()
    test = tifffile.imread(out / "test-probabilities.tif")
    assert test.shape == (2, 96, 96) and test.dtype == np.float32 and 0 <= test.min() and test.max() <= 1
    # Rerunning skips the finished fold (no retraining: best.pt is untouched).
    stamp = (out / "fold_1" / "best.pt").stat().st_mtime_ns
    isbi.main(args[:-1])
    assert (out / "fold_1" / "best.pt").stat().st_mtime_ns == stamp


def test_interrupted_fold_resumes_from_its_last_checkpoint(isbi_root, tmp_path):
    out = tmp_path / "cv"
    base = ["--data-root", str(isbi_root), "--out", str(out), "--widths", "4,8,16", "--tile", "108",
            "--steps-per-epoch", "1", "--device", "cpu", "--folds", "2", "--fold-list", "0"]
    isbi.main([*base, "--epochs", "1"])
    (out / "fold_0" / "final_metrics.json").unlink()  # as if killed after its first epoch's checkpoint
    isbi.main([*base, "--epochs", "2"])
    assert len((out / "fold_0" / "metrics.csv").read_text().strip().splitlines()) == 1 + 2
