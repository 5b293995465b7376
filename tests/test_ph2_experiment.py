"""experiments.ph2 end to end on generated PH2 cases in the original layout."""
import csv
import json

import pytest

from experiments import ph2
from test_data_ph2 import make_case


@pytest.fixture
def ph2_root(tmp_path, monkeypatch):
    monkeypatch.setenv("UNET_REPRO_CACHE", str(tmp_path / "cache"))
    for i in range(200):  # the 100/50/50 protocol needs 200 cases; tiny ones keep this fast
        make_case(tmp_path / "ph2", f"IMD{i:03d}", size=(24, 20), seed=i, mask_mode="1" if i % 2 else "RGB")
    return tmp_path / "ph2"


def test_grid_trains_evaluates_reports_and_resumes(ph2_root, tmp_path):
    out = tmp_path / "grid"
    args = ["--data-root", str(ph2_root), "--out", str(out), "--models", "unet_same,segnet,unet",
            "--losses", "dice,bce", "--seeds", "0", "--epochs", "1", "--base-width", "4", "--size", "32",
            "--batch-size", "50", "--device", "cpu"]
    summary = ph2.main(args)
    assert summary["runs"] == 6
    split = json.loads((out / "split.json").read_text())
    assert [len(split[k]) for k in ("train", "val", "test")] == [100, 50, 50]
    with open(out / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert {(r["model"], r["loss"]) for r in rows} == {(m, l) for m in ("unet_same", "segnet", "unet")
                                                       for l in ("dice", "bce")}
    assert all(0 <= float(r["test_iou_mean"]) <= 1 for r in rows)
    md = (out / "results.md").read_text()
    assert "| model | loss |" in md and "Commit" in md
    for name in ("results.png", "val_curves.png", "test_predictions.png"):
        assert (out / name).stat().st_size > 0
    # Killed after one run finished and another was half done: the finished one is skipped, the other resumes.
    (out / "segnet-bce-s0" / "final_metrics.json").unlink()
    stamp = (out / "unet_same-dice-s0" / "best.pt").stat().st_mtime_ns
    ph2.main([a if a != "1" else "2" for a in args])  # the same command with --epochs 2
    assert (out / "unet_same-dice-s0" / "best.pt").stat().st_mtime_ns == stamp
    with open(out / "segnet-bce-s0" / "metrics.csv") as f:
        assert len(list(csv.DictReader(f))) == 2


def test_missing_data_message(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        ph2.main(["--data-root", str(tmp_path / "none")])
    assert e.value.code == 1 and "datasets/README.md" in capsys.readouterr().err


def test_unknown_model_is_named(tmp_path):
    with pytest.raises(SystemExit):
        ph2.main(["--data-root", str(tmp_path), "--models", "unet_sam"])


def test_lr_range_test_knows_ph2(ph2_root, tmp_path):
    from experiments import lr_range_test
    summary = lr_range_test.main(["--task", "ph2", "--data-root", str(ph2_root), "--size", "32", "--tile", "32",
                                  "--iters", "5", "--batch-size", "4", "--device", "cpu", "--model", "segnet",
                                  "--out", str(tmp_path / "lr")])
    assert summary["config"]["model"] == "segnet" and summary["config"]["in_channels"] == 3
    assert summary["config"]["loss"] == "bce"
    assert summary["iterations_run"] >= 2 and (tmp_path / "lr" / "lr_range.png").exists()
