"""Fine-tuning: `--init-from CKPT` starts a new run from another run's weights (its own data, epochs, learning rate
and folder), refuses a checkpoint of another network by naming the difference, re-initialises only the head when
asked, and records where the weights came from."""
from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile
import torch
from conftest import synthetic_em

from experiments import folder, isbi
from unet_repro.training import TrainConfig, build_network, load_checkpoint

TINY = ["--widths", "4,8,16", "--steps-per-epoch", "2", "--device", "cpu", "--epochs", "1"]


@pytest.fixture
def source(isbi_root, tmp_path):
    """A trained ISBI run (gray images, one output channel)."""
    out = tmp_path / "source"
    isbi.main(["--data-root", str(isbi_root), "--out", str(out), "--val-slices", "1", "--tile", "108", *TINY])
    return out / "best.pt"


@pytest.fixture
def own_data(tmp_path):
    """Own gray images with binary masks, and the same images with 3-class masks."""
    images, labels = synthetic_em(n=5, size=64, cells=8, seed=4)
    for name in ("images", "masks", "classes"):
        (tmp_path / name).mkdir()
    for i, (image, label) in enumerate(zip(images, labels)):
        tifffile.imwrite(tmp_path / "images" / f"c{i}.tif", image)
        tifffile.imwrite(tmp_path / "masks" / f"c{i}.tif", (label > 0).astype(np.uint8))
        classes = (label > 0).astype(np.uint8)
        classes[:, 32:] *= 2  # cells on the right are class 2
        tifffile.imwrite(tmp_path / "classes" / f"c{i}.tif", classes)
    return tmp_path


def fails(main, args, capsys) -> tuple[int, str]:
    with pytest.raises(SystemExit) as e:
        main(args)
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    return e.value.code, err


def test_a_new_run_starts_from_the_checkpoints_weights_and_records_it(source, own_data, tmp_path):
    out = tmp_path / "tuned"
    folder.main(["--images", str(own_data / "images"), "--masks", str(own_data / "masks"), "--out", str(out),
                 "--init-from", str(source), "--lr", "0", "--tile", "108", *TINY])
    start, end = load_checkpoint(source)["model"], load_checkpoint(out / "last.pt")["model"]
    assert all(torch.equal(start[k], end[k]) for k in start)  # lr 0: the weights are the ones it started from
    saved = json.loads((out / "config.json").read_text())
    assert saved["extra"]["init_from"]["path"].endswith("source/best.pt") and saved["extra"]["task"] == "folder"
    assert json.loads((out / "final_metrics.json").read_text())["init_from"]["reinit_head"] is False


def test_a_checkpoint_of_another_network_is_refused_naming_the_difference(source, own_data, tmp_path, capsys):
    args = ["--images", str(own_data / "images"), "--masks", str(own_data / "masks"), "--out", str(tmp_path / "x"),
            "--init-from", str(source), *TINY]
    code, err = fails(folder.main, [*args, "--widths", "4,8,32"], capsys)
    assert code == 2 and "widths: checkpoint (4, 8, 16) vs this run (4, 8, 32)" in err
    code, err = fails(folder.main, [*args, "--model", "unet_same"], capsys)
    assert code == 2 and "model: checkpoint 'unet' vs this run 'unet_same'" in err
    code, err = fails(folder.main, [*args, "--resume", str(source)], capsys)
    assert code == 2 and "give one of them" in err
    assert not (tmp_path / "x").exists()


def test_another_class_count_needs_reinit_head_which_keeps_the_body(source, own_data, tmp_path, capsys):
    args = ["--images", str(own_data / "images"), "--masks", str(own_data / "classes"), "--mask-kind", "classes",
            "--init-from", str(source), "--lr", "0", "--tile", "108", *TINY]
    code, err = fails(folder.main, [*args, "--out", str(tmp_path / "x")], capsys)
    assert code == 2 and "--reinit-head" in err and "1 output channel(s), this run's 3" in err
    out = tmp_path / "tuned"
    folder.main([*args, "--out", str(out), "--reinit-head"])
    start, end = load_checkpoint(source)["model"], load_checkpoint(out / "last.pt")["model"]
    body = [k for k in start if not k.startswith("head.")]
    assert body and all(torch.equal(start[k], end[k]) for k in body)
    cfg = TrainConfig.from_dict(load_checkpoint(out / "last.pt")["config"])
    fresh = build_network(cfg).state_dict()
    assert end["head.weight"].shape == (3, 4, 1, 1) and torch.equal(end["head.weight"], fresh["head.weight"])
