"""The promises a run keeps, tried as a new user would: nothing deleted or replaced before the new run has passed
every check, reruns that continue the same design or are refused, every resume able to finish, one line (and the
right exit code) for every mistake and resource limit, and progress off a terminal. Each case asserts the exit code,
the message naming the file or flag, and that every file was left as it was."""
from __future__ import annotations

import errno
import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from conftest import fails, file_hashes as files, synthetic_em, write_stack

from experiments import folder, isbi, isbi_eval, lr_range_test, ph2, weightmap_demo
from unet_repro import progress as progress_module
from unet_repro import runs as unet_runs
from unet_repro.training import load_checkpoint, loop

TINY = ["--widths", "4,8,16", "--tile", "108", "--steps-per-epoch", "2", "--val-slices", "1", "--device", "cpu",
        "--checkpoint-every", "0"]


@pytest.fixture
def finished(isbi_root, tmp_path):
    out = tmp_path / "run"
    isbi.main(["--data-root", str(isbi_root), "--out", str(out), "--epochs", "1", *TINY])
    assert (out / "final_metrics.json").exists()
    return out


@pytest.fixture
def own(tmp_path):
    images, labels = synthetic_em(n=5, size=64, cells=8, seed=2)
    for name in ("images", "masks"):
        (tmp_path / name).mkdir()
    for i, (image, label) in enumerate(zip(images, labels)):
        tifffile.imwrite(tmp_path / "images" / f"c{i}.tif", image)
        tifffile.imwrite(tmp_path / "masks" / f"c{i}.tif", (label > 0).astype(np.uint8))
    return ["--images", str(tmp_path / "images"), "--masks", str(tmp_path / "masks")]


# -- 1. nothing deleted or replaced before the new run has passed every check ------------------------------------

def test_overwrite_with_bad_data_or_flags_leaves_the_finished_run(finished, isbi_root, capsys):
    before = files(finished)
    code, err = fails(isbi.main, ["--data-root", str(isbi_root), "--out", str(finished), "--overwrite",
                                  "--seed", str(2**32), *TINY], capsys)
    assert code == 2 and "--seed" in err and files(finished) == before
    write_stack(isbi_root / "train-labels.tif", np.full((4, 96, 96), 100, np.uint8))  # not a label stack
    code, err = fails(isbi.main, ["--data-root", str(isbi_root), "--out", str(finished), "--overwrite", *TINY],
                      capsys)
    assert code == 1 and "train-labels.tif" in err and files(finished) == before


def test_resuming_a_finished_run_with_bad_data_keeps_its_result(finished, isbi_root, capsys):
    before = files(finished)
    write_stack(isbi_root / "train-labels.tif", np.full((4, 96, 96), 100, np.uint8))
    code, err = fails(isbi.main, ["--resume", str(finished / "last.pt"), "--epochs", "2"], capsys)
    assert code == 1 and "train-labels.tif" in err and files(finished) == before


def test_a_folder_with_a_users_files_is_refused_naming_them(isbi_root, tmp_path, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "curves.png").write_bytes(b"my own figure")
    (mine / "notes.txt").write_text("mine")
    code, err = fails(isbi.main, ["--data-root", str(isbi_root), "--out", str(mine), "--epochs", "1", *TINY], capsys)
    assert code == 2 and "curves.png" in err and "notes.txt" in err and "holds no run" in err
    assert (mine / "curves.png").read_bytes() == b"my own figure" and sorted(p.name for p in mine.iterdir()) == [
        "curves.png", "notes.txt"]


def test_a_full_disk_is_one_line_and_keeps_the_last_checkpoint(isbi_root, tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    real = loop.save_checkpoint

    def full(path, state):
        if state["epoch"] == 1:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        real(path, state)
    monkeypatch.setattr(loop, "save_checkpoint", full)
    code, err = fails(isbi.main, ["--data-root", str(isbi_root), "--out", str(out), "--epochs", "3", *TINY], capsys)
    assert code == 1 and "the disk is full" in err and "last.pt" in err and "--resume" in err
    assert load_checkpoint(out / "last.pt")["epoch"] == 0


def test_a_full_disk_while_writing_results_keeps_the_old_results_file(finished, monkeypatch, capsys):
    before = (finished / "heldout_prob.tif").read_bytes()

    def full(f, *a, **k):
        f.write(b"half a TIFF")
        raise OSError(errno.ENOSPC, "No space left on device", "heldout_prob.tif")
    monkeypatch.setattr(unet_runs.tifffile, "imwrite", full)
    code, err = fails(isbi.main, ["--resume", str(finished / "last.pt"), "--epochs", "2"], capsys)
    assert code == 1 and "disk is full" in err
    assert (finished / "heldout_prob.tif").read_bytes() == before and not list(finished.glob(".*.tmp"))


def test_a_full_disk_names_the_file_being_written_not_its_temporary_copy(finished, monkeypatch, capsys):
    from unet_repro import files as files_module

    def full(fd):  # a write to a full disk raises without naming any file
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(files_module.os, "fsync", full)
    code, err = fails(isbi.main, ["--resume", str(finished / "last.pt"), "--epochs", "2"], capsys)
    assert code == 1 and f"the disk is full (writing {finished}" in err and ".tmp" not in err


@pytest.mark.parametrize("command", ["predict", "evaluate", "export"])
def test_an_output_folder_under_a_file_is_one_line(command, finished, isbi_root, tmp_path, capsys):
    from experiments import evaluate, export, predict
    (tmp_path / "file").write_text("mine")
    out = str(tmp_path / "file" / "sub")
    image = str(isbi_root / "train-volume.tif")
    for name, stack in (("imgs", "train-volume.tif"), ("truth", "train-labels.tif")):
        (tmp_path / name).mkdir()
        tifffile.imwrite(tmp_path / name / "s0.tif", tifffile.imread(isbi_root / stack)[0])
    main, args = {"predict": (predict, ["--checkpoint", str(finished / "best.pt"), "--out", out, image]),
                  "evaluate": (evaluate, ["--checkpoint", str(finished / "best.pt"), "--images",
                                          str(tmp_path / "imgs"), "--truth", str(tmp_path / "truth"), "--out", out]),
                  "export": (export, ["--checkpoint", str(finished / "best.pt"), "--format", "torchscript",
                                      "--out", out + "/unet.pt"])}[command]
    code, err = fails(main.main, args, capsys)
    assert code == 2 and str(tmp_path / "file") in err and (tmp_path / "file").read_text() == "mine"


def test_a_time_limit_too_short_for_one_epoch_says_how_to_start_again(isbi_root, tmp_path, capsys):
    args = ["--data-root", str(isbi_root), "--out", str(tmp_path / "run"), "--epochs", "1", *TINY]
    code, err = fails(isbi.main, [*args, "--time-limit", "0.00001"], capsys)
    assert code == 2 and "left no time for one epoch" in err and "--overwrite" in err
    isbi.main([*args, "--overwrite"])  # as the message says
    assert (tmp_path / "run" / "final_metrics.json").exists()


def test_out_of_memory_says_what_ran_out(isbi_root, tmp_path, monkeypatch, capsys):
    def oom(*a, **k):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
    monkeypatch.setattr(loop, "forward_backward", oom)
    code, err = fails(isbi.main, ["--data-root", str(isbi_root), "--out", str(tmp_path / "r"), "--epochs", "1",
                                  *TINY], capsys)
    assert code == 1 and "out of GPU memory" in err and "--batch-size" in err


# -- 2. a rerun continues the same design or is refused -----------------------------------------------------------

def cv_args(isbi_root: Path, out: Path, folds: int) -> list[str]:
    return ["--data-root", str(isbi_root), "--out", str(out), "--folds", str(folds), "--widths", "4,8,16",
            "--tile", "108", "--steps-per-epoch", "1", "--epochs", "1", "--device", "cpu", "--fold-list", "0"]


def test_a_cross_validation_of_another_design_is_refused_and_overwrite_replaces_all_of_it(isbi_root, tmp_path,
                                                                                        capsys):
    out = tmp_path / "cv"
    isbi.main(cv_args(isbi_root, out, 2))
    before = files(out)
    code, err = fails(isbi.main, cv_args(isbi_root, out, 4), capsys)
    assert code == 2 and "another design" in err and files(out) == before
    code, err = fails(isbi.main, [*cv_args(isbi_root, out, 2), "--lr", "0.5"], capsys)
    assert code == 2 and "lr" in err and files(out) == before
    summary = isbi.main([*cv_args(isbi_root, out, 4), "--overwrite"])
    assert json.loads((out / "folds.json").read_text())["folds"] == [[0], [1], [2], [3]]
    assert summary["units"] == ["fold 0"] and summary["slices"] == [0]  # the old fold 0 (slices 0-1) is gone
    assert not (out / "fold_1" / "final_metrics.json").exists()


def test_scoring_uses_the_data_the_run_recorded_and_says_so(isbi_root, tmp_path, monkeypatch, capsys):
    out = tmp_path / "cv"
    isbi.main(cv_args(isbi_root, out, 2))
    monkeypatch.setenv("UNET_REPRO_DATA", str(tmp_path / "elsewhere"))  # the default lookup would miss
    capsys.readouterr()
    isbi_eval.main(["--run", str(out)])
    assert "scoring against the data the run was trained on" in capsys.readouterr().out


def test_a_ph2_grid_of_other_settings_is_refused_and_overwrite_replaces_it(tmp_path, monkeypatch, capsys):
    from test_data_ph2 import make_case
    monkeypatch.setenv("UNET_REPRO_CACHE", str(tmp_path / "cache"))
    for i in range(200):
        make_case(tmp_path / "ph2", f"IMD{i:03d}", size=(24, 20), seed=i, mask_mode="1")
    args = ["--data-root", str(tmp_path / "ph2"), "--out", str(tmp_path / "grid"), "--models", "unet_same",
            "--losses", "bce", "--seeds", "0", "--epochs", "1", "--base-width", "4", "--size", "32",
            "--batch-size", "50", "--device", "cpu"]
    ph2.main(args)
    before = files(tmp_path / "grid")
    code, err = fails(ph2.main, [*args, "--lr", "0.5"], capsys)
    assert code == 2 and "other settings" in err and files(tmp_path / "grid") == before
    ph2.main([*args, "--lr", "0.5", "--overwrite"])
    result = json.loads((tmp_path / "grid" / "unet_same-bce-s0" / "final_metrics.json").read_text())
    assert result["config"]["lr"] == 0.5


# -- 3. every resume can finish ---------------------------------------------------------------------------------

def test_a_resume_into_a_new_folder_finishes_even_without_improving(finished, tmp_path):
    new = tmp_path / "new"
    isbi.main(["--resume", str(finished / "last.pt"), "--out", str(new), "--epochs", "2", "--lr", "0"])
    assert (new / "best.pt").exists() and json.loads((new / "final_metrics.json").read_text())["finished"]
    isbi.main(["--resume", str(new / "last.pt"), "--epochs", "3"])  # and it can be resumed again
    assert load_checkpoint(new / "last.pt")["epoch"] == 2


# -- 4. one line for every mistake and resource limit -------------------------------------------------------------

MISTAKES = [
    (isbi, ["--out", "{file}"], 2, "is a file, not a folder"),
    (isbi, ["--out", "{file}/sub"], 2, "which is a file"),
    (isbi, ["--folds", "2", "--out", "{file}"], 2, "is a file, not a folder"),
    (isbi, ["--seed", str(2**32)], 2, "seed (--seed)"),
    (isbi, ["--widths", "4,8,16,32,64,128,256,512,1024"], 2, "widths (--widths) must be 2 to 8"),
    (isbi, ["--widths", "4,8,16,32,64,128,256,512"], 2, "tile (--tile) is 108, not a valid input side"),
    (isbi, ["--w0", "1e308"], 2, "w0 (--w0)"),
    (isbi, ["--device", "foo"], 2, "device (--device) is 'foo'"),
    (isbi, ["--classes", "3"], 2, "the masks are binary"),
    (folder, ["--size", "0"], 2, "--size must be"),
    (folder, ["--size", "-4"], 2, "--size must be"),
    (folder, ["--split-seed", "-1"], 2, "--split-seed must be"),
    (folder, ["--val-fraction", "0"], 2, "--val-fraction must be a fraction above 0"),
    (folder, ["--out", "{file}"], 2, "is a file, not a folder"),
    (folder, ["--model", "unet_same", "--base-width", "2", "--size", "16", "--batch-size", "1"], 2,
     "batch norm cannot train on one value per channel"),
    (lr_range_test, ["--out", "{file}", "--iters", "3"], 2, "is a file, not a folder"),
    (lr_range_test, ["--task", "foo"], 2, "argument --task: invalid choice"),
    (weightmap_demo, ["--out", "{tmp}/x.xyz"], 2, "--out must name a .png file"),
    (weightmap_demo, ["--out", "{file}/x.png"], 2, "a file stands where a folder is needed"),
    (isbi, ["--folds", "2", "--out", "{file}/sub"], 2, "a file stands where a folder is needed"),
    (ph2, ["--seeds", "a"], 2, "--seeds: expected comma-separated whole numbers"),
]


@pytest.mark.parametrize("main, args, code, words", MISTAKES,
                         ids=[f"{m.__name__.split('.')[-1]} {' '.join(a)}" for m, a, _, _ in MISTAKES])
def test_each_mistake_is_one_line_naming_the_flag(main, args, code, words, isbi_root, own, tmp_path, capsys):
    (tmp_path / "file").write_text("mine")
    args = [a.format(file=tmp_path / "file", tmp=tmp_path) for a in args]
    base = {isbi: ["--data-root", str(isbi_root), "--out", str(tmp_path / "run"), *TINY],
            folder: [*own, "--out", str(tmp_path / "run"), "--widths", "4,8,16", "--device", "cpu"],
            lr_range_test: ["--data-root", str(isbi_root), "--val-slices", "1", "--widths", "4,8,16"],
            weightmap_demo: ["--data-root", str(isbi_root)],
            ph2: ["--data-root", str(tmp_path)]}[main]
    if "--folds" in args:
        base = [a for a in base if a not in ("--val-slices", "1")]
    got, err = fails(main.main, [*base, *args], capsys)
    assert got == code and words in err
    assert (tmp_path / "file").read_text() == "mine" and not (tmp_path / "run").exists()


def test_a_resume_with_another_model_names_the_model_not_the_tile(finished, capsys):
    code, err = fails(isbi.main, ["--resume", str(finished / "last.pt"), "--epochs", "2", "--model", "segnet"],
                      capsys)
    assert code == 2 and "model: checkpoint 'unet' vs requested 'segnet'" in err and "tile" not in err


# -- 5. progress off a terminal -----------------------------------------------------------------------------------

def test_long_phases_print_plain_progress_lines_off_a_terminal(capsys, monkeypatch):
    monkeypatch.setattr(progress_module, "on_terminal", lambda: False)
    items = list(progress_module.progress(range(3), desc="scoring folds", every=0.0))
    assert items == [0, 1, 2]
    err = capsys.readouterr().err.splitlines()
    assert err == [f"scoring folds: {i}/3 ({i / 3:.0%}), 0 s" for i in (1, 2, 3)]
