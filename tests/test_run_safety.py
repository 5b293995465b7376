"""A run never loses or mislabels work: run folders, resume, kills at every write, validated input, one-line errors,
true logs. Each case asserts the exit code, the one-line message naming the file or flag, and that no file of an
existing run changed."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from conftest import fails, file_hashes as files, synthetic_em, write_stack
from PIL import Image

from experiments import isbi, predict
from unet_repro import runs as unet_runs
from unet_repro.data import load_isbi
from unet_repro.report import plot_curves
from unet_repro.training import load_checkpoint, loop

# Checkpoints every epoch (not every minute): each epoch's writes are kill points.
TINY = ["--widths", "4,8,16", "--tile", "108", "--steps-per-epoch", "2", "--val-slices", "1", "--device", "cpu",
        "--checkpoint-every", "0"]
TIMING = ("tiles_per_s", "epoch_s")


@pytest.fixture
def run_dir(isbi_root, tmp_path):
    out = tmp_path / "run"
    isbi.main(["--data-root", str(isbi_root), "--out", str(out), "--epochs", "2", *TINY])
    return out


# -- run folders ---------------------------------------------------------------------------------------------------

def test_a_new_run_into_a_run_folder_is_refused_and_changes_nothing(run_dir, isbi_root, capsys):
    before = files(run_dir)
    code, err = fails(isbi.main, ["--data-root", str(isbi_root), "--out", str(run_dir), "--epochs", "1", *TINY],
                      capsys)
    assert code == 2 and str(run_dir) in err and "--resume" in err and "--overwrite" in err
    assert files(run_dir) == before


def test_overwrite_replaces_the_run(run_dir, isbi_root):
    isbi.main(["--data-root", str(isbi_root), "--out", str(run_dir), "--epochs", "1", "--overwrite", *TINY])
    assert load_checkpoint(run_dir / "last.pt")["epoch"] == 0
    assert len((run_dir / "metrics.csv").read_text().strip().splitlines()) == 2


def test_resume_writes_into_the_checkpoint_folder(run_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    isbi.main(["--resume", str(run_dir / "last.pt"), "--epochs", "3"])
    assert not (tmp_path / "runs").exists()
    assert [int(r["epoch"]) for r in csv.DictReader(open(run_dir / "metrics.csv"))] == [0, 1, 2]


def test_resume_into_another_run_is_refused(run_dir, isbi_root, tmp_path, capsys):
    other = tmp_path / "other"
    isbi.main(["--data-root", str(isbi_root), "--out", str(other), "--epochs", "1", *TINY])
    before = files(other)
    code, err = fails(isbi.main, ["--resume", str(run_dir / "last.pt"), "--epochs", "3", "--out", str(other)], capsys)
    assert code == 2 and "holds another run" in err and files(other) == before


def test_a_finished_run_says_it_is_finished(run_dir, capsys):
    before = files(run_dir)
    code, err = fails(isbi.main, ["--resume", str(run_dir / "last.pt")], capsys)
    assert code == 2 and "is finished" in err and "--epochs" in err and files(run_dir) == before


def test_stale_temporary_files_are_removed(run_dir):
    (run_dir / ".last.pt.tmp").write_bytes(b"half a checkpoint")
    isbi.main(["--resume", str(run_dir / "last.pt"), "--epochs", "3"])
    assert not list(run_dir.glob(".*.tmp"))


# -- resume policy ------------------------------------------------------------------------------------------------

def test_resume_alone_continues_with_the_checkpoints_own_settings(run_dir):
    # The run was made with --widths 4,8,16 --tile 108 ...: none of it needs repeating.
    isbi.main(["--resume", str(run_dir / "last.pt"), "--epochs", "3"])
    cfg = json.loads((run_dir / "config.json").read_text())
    assert cfg["widths"] == [4, 8, 16] and cfg["tile"] == 108 and cfg["epochs"] == 3
    assert cfg["changes"] == [{"key": "epochs", "old": 2, "new": 3, "from_epoch": 2}]


def test_a_changed_learning_rate_is_applied_and_recorded(run_dir):
    isbi.main(["--resume", str(run_dir / "last.pt"), "--epochs", "3", "--lr", "0.0005"])
    ckpt = load_checkpoint(run_dir / "last.pt")
    assert ckpt["optimizer"]["param_groups"][0]["lr"] == 0.0005 and ckpt["config"]["lr"] == 0.0005
    assert {"key": "lr", "old": 0.001, "new": 0.0005, "from_epoch": 2} in ckpt["changes"]
    rows = list(csv.DictReader(open(run_dir / "metrics.csv")))
    assert [float(r["lr"]) for r in rows] == [0.001, 0.001, 0.0005]
    final = json.loads((run_dir / "final_metrics.json").read_text())
    assert final["config"]["lr"] == 0.0005


@pytest.mark.parametrize("flag,value,words", [("--widths", "4,8,32", "different network"),
                                              ("--batch-size", "2", "cannot change when a run is resumed"),
                                              ("--preset", "paper", "differs from the resumed run's preset")])
def test_settings_a_resume_cannot_change_are_refused(run_dir, capsys, flag, value, words):
    before = files(run_dir)
    code, err = fails(isbi.main, ["--resume", str(run_dir / "last.pt"), "--epochs", "3", flag, value], capsys)
    assert code == 2 and words in err and files(run_dir) == before


# -- kills at every write ------------------------------------------------------------------------------------------

class Killed(BaseException):
    """Stands for kill -9: the process stops here; what is on disk stays."""


def kill_at(monkeypatch, name: str, epoch: int, after: bool = True) -> None:
    """Kill the run right after (or before) it writes checkpoint `name` of `epoch`."""
    real = loop.save_checkpoint

    def save(path, state):
        hit = Path(path).name == name and state["epoch"] == epoch
        if hit and not after:
            raise Killed
        real(path, state)
        if hit:
            raise Killed
    monkeypatch.setattr(loop, "save_checkpoint", save)


def comparable(run: Path) -> dict:
    """What two runs that did the same work must agree on: weights, optimizer state, the epoch rows (without
    timings) and the final metrics."""
    out = {}
    for name in ("best.pt", "last.pt"):
        ckpt = load_checkpoint(run / name)
        out[name] = (ckpt["epoch"], ckpt.get("step"), {k: v.clone() for k, v in ckpt["model"].items()},
                     [s["momentum_buffer"].clone() for s in ckpt["optimizer"]["state"].values()]
                     if "optimizer" in ckpt else [])
    out["rows"] = [{k: v for k, v in r.items() if k not in TIMING} for r in csv.DictReader(open(run / "metrics.csv"))]
    out["final"] = json.loads((run / "final_metrics.json").read_text())["validation"]
    return out


def assert_same(a: dict, b: dict) -> None:
    for name in ("best.pt", "last.pt"):
        assert a[name][:2] == b[name][:2], name
        for k in a[name][2]:
            assert torch.equal(a[name][2][k], b[name][2][k]), (name, k)
        for x, y in zip(a[name][3], b[name][3]):
            assert torch.equal(x, y)
    assert a["rows"] == b["rows"] and a["final"] == b["final"]


@pytest.mark.slow
@pytest.mark.parametrize("epochs,moment", [
    (1, ("last.pt", 0, True)),    # one-epoch run, killed between its two checkpoint writes
    (3, ("last.pt", 1, True)),    # killed between the writes of epoch 1 (best.pt left one epoch behind)
    (3, ("best.pt", 1, True)),    # killed right after best.pt of epoch 1 (before config.json and the figure)
    (3, ("best.pt", 2, False)),   # killed just before the last write of the run
])
def test_a_kill_at_any_write_then_resume_gives_the_uninterrupted_result(isbi_root, tmp_path, monkeypatch, epochs,
                                                                        moment):
    # --monitor iou: the validation IoU of this tiny run improves every epoch, so every epoch writes both checkpoints
    args = ["--data-root", str(isbi_root), "--epochs", str(epochs), "--monitor", "iou", *TINY]
    isbi.main([*args, "--out", str(tmp_path / "straight")])
    assert load_checkpoint(tmp_path / "straight" / "best.pt")["epoch"] == epochs - 1
    kill_at(monkeypatch, *moment)
    with pytest.raises(Killed):
        isbi.main([*args, "--out", str(tmp_path / "killed")])
    monkeypatch.undo()
    isbi.main(["--resume", str(tmp_path / "killed" / "last.pt")])
    assert_same(comparable(tmp_path / "straight"), comparable(tmp_path / "killed"))


def test_a_kill_before_the_results_are_written_is_completed_on_resume(isbi_root, tmp_path, monkeypatch):
    args = ["--data-root", str(isbi_root), "--epochs", "1", *TINY]
    isbi.main([*args, "--out", str(tmp_path / "straight")])

    def killed(*a, **kw):
        raise Killed
    monkeypatch.setattr(unet_runs, "write_json", killed)
    with pytest.raises(Killed):
        isbi.main([*args, "--out", str(tmp_path / "killed")])
    monkeypatch.undo()
    assert not (tmp_path / "killed" / "final_metrics.json").exists()
    isbi.main(["--resume", str(tmp_path / "killed" / "last.pt")])
    assert_same(comparable(tmp_path / "straight"), comparable(tmp_path / "killed"))


# -- input validated before work starts ---------------------------------------------------------------------------

@pytest.mark.parametrize("flags,words", [
    (["--epochs", "0"], "epochs (--epochs) must be a whole number >= 1"),
    (["--widths", "0,8"], "widths (--widths) must be 2 to 8 channel counts >= 1"),
    (["--workers", "-1"], "workers (--workers) must be a whole number >= 0"),
    (["--device", "cuda:7"] if torch.cuda.device_count() < 8 else ["--device", "tpu"], "device (--device)"),
    (["--lr", "-1"], "lr (--lr) must be a finite number >= 0"),
    (["--dropout", "2"], "dropout (--dropout) must be a probability in [0, 1)"),
    (["--momentum", "1.5"], "momentum (--momentum) must be in [0, 1)"),
    (["--tile", "570"], "tile (--tile) is 570, not a valid input side"),
    (["--val-slices", "9"], "--val-slices must be between 1 and 3"),
    (["--lr", "abc"], "argument --lr: invalid float value"),
    (["--model", "unet_sam"], "argument --model: invalid choice"),
])
def test_bad_flags_are_one_line_errors_with_exit_code_2(isbi_root, tmp_path, capsys, flags, words):
    args = ["--data-root", str(isbi_root), "--out", str(tmp_path / "run"), *TINY, *flags]
    code, err = fails(isbi.main, args, capsys)
    assert code == (1 if "--val-slices" in words else 2) and words in err, err
    assert not (tmp_path / "run").exists()  # refused in the first seconds: nothing written


def test_zero_one_labels_are_read_as_cells(tmp_path):
    images, labels = synthetic_em()
    write_stack(tmp_path / "train-volume.tif", images)
    write_stack(tmp_path / "train-labels.tif", (labels > 127).astype(np.uint8))  # 0/1 instead of 0/255
    (tmp_path / "ref").mkdir()
    write_stack(tmp_path / "ref" / "train-volume.tif", images)
    write_stack(tmp_path / "ref" / "train-labels.tif", labels)
    assert np.array_equal(load_isbi(tmp_path).labels, load_isbi(tmp_path / "ref").labels)
    assert 0.5 < load_isbi(tmp_path).labels.mean() < 1


@pytest.mark.parametrize("damage,words", [
    ("truncate", "truncated or damaged"),
    ("one-class", "every label pixel is cell"),
    ("fewer-labels", "each image slice needs its label slice"),
])
def test_bad_data_is_a_one_line_error_naming_the_file(isbi_root, tmp_path, capsys, damage, words):
    labels = isbi_root / "train-labels.tif"
    if damage == "truncate":
        data = (isbi_root / "train-volume.tif").read_bytes()
        (isbi_root / "train-volume.tif").write_bytes(data[:len(data) // 2])
        words_file = "train-volume.tif"
    elif damage == "one-class":
        write_stack(labels, np.full((4, 96, 96), 255, np.uint8))
        words_file = "train-labels.tif"
    else:
        write_stack(labels, tifffile.imread(labels)[:3])
        words_file = "train-labels.tif"
    code, err = fails(isbi.main, ["--data-root", str(isbi_root), "--out", str(tmp_path / "run"), "--epochs", "1",
                                  *TINY], capsys)
    assert code == 1 and words in err and words_file in err


@pytest.mark.parametrize("content,words", [(b"", "it is empty"), (bytes(range(256)) * 40, "not a PyTorch file"),
                                           (b"PK\x03\x04broken zip", "truncated or damaged PyTorch file")])
def test_a_file_that_is_not_a_checkpoint_is_named(tmp_path, capsys, content, words):
    bad = tmp_path / "last.pt"
    bad.write_bytes(content)
    code, err = fails(isbi.main, ["--resume", str(bad)], capsys)
    assert code == 1 and str(bad) in err and words in err


def test_a_checkpoint_of_another_task_is_named(tmp_path, capsys):
    torch.save({"model": {}, "config": {"extra": {"task": "ph2"}}}, tmp_path / "last.pt")
    code, err = fails(isbi.main, ["--resume", str(tmp_path / "last.pt")], capsys)
    assert code == 1 and "made by the 'ph2' task" in err


def test_an_rgb_image_for_a_gray_network_is_refused(run_dir, tmp_path, capsys):
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(tmp_path / "rgb.png")
    code, err = fails(predict.main, ["--checkpoint", str(run_dir / "best.pt"), "--image", str(tmp_path / "rgb.png"),
                                     "--out", str(tmp_path / "p")], capsys)
    assert code == 1 and "rgb.png is RGB" in err and "takes gray images" in err


def test_predict_does_not_overwrite_an_existing_file(run_dir, isbi_root, tmp_path, capsys):
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "test-volume_mask.tif").write_bytes(b"mine")
    code, err = fails(predict.main, ["--checkpoint", str(run_dir / "best.pt"), "--image",
                                     str(isbi_root / "test-volume.tif"), "--out", str(tmp_path / "p")], capsys)
    assert code == 2 and "--overwrite" in err and (tmp_path / "p" / "test-volume_mask.tif").read_bytes() == b"mine"
    assert sorted(p.name for p in (tmp_path / "p").iterdir()) == ["test-volume_mask.tif"]


# -- logs and figures -----------------------------------------------------------------------------------------------

def test_a_plain_line_per_epoch_and_train_log(run_dir, capsys):
    log = (run_dir / "train.log").read_text().splitlines()
    epochs = [line for line in log if " epoch " in line and "train loss" in line]
    assert len(epochs) == 2 and all("val IoU" in line and "lr" in line and " s" in line for line in epochs)
    assert any("best so far" in line and "saved" in line for line in epochs)


def test_no_progress_bars_when_not_on_a_terminal(isbi_root, tmp_path, capsys):
    isbi.main(["--data-root", str(isbi_root), "--out", str(tmp_path / "run"), "--epochs", "1", *TINY])
    out = capsys.readouterr()
    assert "\r" not in out.out + out.err and "it/s" not in out.out + out.err
    assert "epoch 0 (1 of 1): train loss" in out.out


def test_curves_name_the_real_loss_and_show_a_single_epoch(tmp_path, monkeypatch):
    import matplotlib.figure
    seen = []
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", lambda fig, *a, **k: seen.append(fig))
    plot_curves([{"epoch": 0, "train_loss": 0.5, "val_loss": 0.6, "val_pixel_error": 0.1, "val_iou": 0.8}],
                tmp_path / "curves.png", "dice")
    loss_ax, metric_ax = seen[0].axes
    labels = [t.get_text() for t in loss_ax.get_legend().get_texts()]
    assert labels and all("dice" in label for label in labels)
    assert all(line.get_marker() not in (None, "None", "") for line in loss_ax.lines)  # one epoch: a visible point
    assert metric_ax.get_ylim() == (0.0, 1.0)


def test_probability_panels_have_a_fixed_scale_and_a_labelled_colour_bar(tmp_path, monkeypatch):
    import matplotlib.figure

    from unet_repro.report import save_panels
    seen = []
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", lambda fig, *a, **k: seen.append(fig))
    save_panels(tmp_path / "x.png", [("image", np.zeros((8, 8), np.uint8)),
                                     ("P(foreground)", np.full((8, 8), 0.3, np.float32))],
                probability=("P(foreground)",))
    prob_ax = seen[0].axes[1]
    assert prob_ax.images[0].get_clim() == (0.0, 1.0)
    colour_bar = seen[0].axes[2]
    assert colour_bar.get_ylabel() == "P(foreground)"


def test_a_resume_cannot_change_the_data(run_dir, capsys):
    before = files(run_dir)
    code, err = fails(isbi.main, ["--resume", str(run_dir / "last.pt"), "--epochs", "3", "--val-slices", "2"], capsys)
    assert code == 2 and "--val-slices 2 differs from the resumed run's 1" in err and files(run_dir) == before
