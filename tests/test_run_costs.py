"""What a run spends besides training, and what it records: checkpoints on a time cadence, the loss checked on the
device every few passes, precision and data workers decided once and passed on, the CUDA generators left alone.
(The GPU itself is exercised by tests/test_cuda.py; these run anywhere.)"""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import synthetic_em

from unet_repro.models import UNet
from unet_repro.training import (Precision, TrainConfig, decide_precision, decide_workers, load_checkpoint, load_trained,
                                 set_rng_state, train)
from unet_repro.training import checkpoint as checkpoint_module
from unet_repro.training import hardware, loop
from unet_repro.training import setup as training_setup
from unet_repro.training import validate

WIDTHS = (4, 8, 16)


@pytest.fixture(scope="module")
def data():
    images, labels = synthetic_em(n=4, size=64, cells=8, seed=1)
    labels = (labels > 127).astype(np.uint8)
    return images[:3], labels[:3], images[3:], labels[3:]


def config(**kw) -> TrainConfig:
    base = TrainConfig(widths=WIDTHS, tile=UNet(widths=WIDTHS).input_size(28), lr=0.01, momentum=0.9, epochs=4,
                       steps_per_epoch=2, patience=0, seed=3, device="cpu", monitor="iou")
    return replace(base, **kw)


def record_saves(monkeypatch) -> list[tuple[str, int]]:
    saves = []
    real = loop.save_checkpoint

    def save(path, state):
        saves.append((Path(path).name, state["epoch"]))
        real(path, state)
    monkeypatch.setattr(loop, "save_checkpoint", save)
    return saves


def test_checkpoints_on_a_time_cadence_write_the_state_once_at_the_end(data, tmp_path, monkeypatch):
    saves = record_saves(monkeypatch)
    curves = []
    monkeypatch.setattr(loop, "plot_curves", lambda *a, **k: curves.append(1))
    summary = train(config(checkpoint_every=3600), *data, tmp_path)
    assert [name for name, _ in saves] == ["last.pt", "best.pt"] and saves[0][1] == 3  # one save, at the end
    assert len(curves) == 1
    last = load_checkpoint(tmp_path / "last.pt")
    best = load_checkpoint(tmp_path / "best.pt")
    assert best["kind"] == "best" and "optimizer" not in best and best["epoch"] == summary["best_epoch"]
    # last.pt holds the best epoch's weights (None when that epoch is the last one), so best.pt can be rewritten
    if summary["best_epoch"] == 3:
        assert last["best_model"] is None
    else:
        assert all(torch.equal(last["best_model"][k], best["model"][k]) for k in best["model"])


def test_checkpoint_every_0_saves_every_epoch_and_resumes_bit_identically(data, tmp_path, monkeypatch):
    saves = record_saves(monkeypatch)
    train(config(checkpoint_every=0), *data, tmp_path / "every")
    assert [e for name, e in saves if name == "last.pt"] == [0, 1, 2, 3]
    train(config(checkpoint_every=3600), *data, tmp_path / "straight")
    train(config(checkpoint_every=3600, epochs=2), *data, tmp_path / "split")
    train(config(checkpoint_every=3600), *data, tmp_path / "split", resume=tmp_path / "split" / "last.pt")
    a, b = (load_checkpoint(tmp_path / d / "last.pt")["model"] for d in ("straight", "split"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_the_loss_is_checked_every_16_passes_not_every_pass(data, tmp_path, monkeypatch):
    checks = []
    real = loop.all_finite
    monkeypatch.setattr(loop, "all_finite", lambda window, dist: checks.append(1) or real(window, dist))
    train(config(epochs=1, steps_per_epoch=40), *data, tmp_path)
    assert len(checks) == 3  # after passes 16, 32 and at the epoch's end (40)


def test_a_resumed_run_reads_its_checkpoint_once(data, tmp_path, monkeypatch):
    train(config(epochs=2), *data, tmp_path)
    reads = []
    real = torch.load
    monkeypatch.setattr(checkpoint_module.torch, "load", lambda f, *a, **k: reads.append(Path(f).name) or
                        real(f, *a, **k))
    train(config(epochs=3), *data, tmp_path, resume=tmp_path / "last.pt")
    assert reads == ["last.pt"]


def test_precision_is_decided_once_and_reaches_evaluation(data, tmp_path, monkeypatch):
    cuda = torch.device("cuda")
    assert decide_precision(True, cuda) == Precision(train_bf16=True, eval_bf16=True, tf32=False)
    assert decide_precision(False, cuda) == Precision(train_bf16=False, eval_bf16=False, tf32=False)
    assert decide_precision(False, cuda).name == "float32"
    monkeypatch.setattr(hardware, "cpu_has_native_bf16", lambda: True)
    assert decide_precision(True, torch.device("cpu")).name == "bf16 autocast training, float32 evaluation"
    # --no-bf16 really means float32 on a GPU: TF32 switched off for convolutions and matrix products
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = True
    hardware.apply_precision(decide_precision(False, cuda), cuda)
    assert not torch.backends.cudnn.allow_tf32 and not torch.backends.cuda.matmul.allow_tf32
    # what set_up decides is what validation gets (here a made-up bf16 evaluation on the CPU, to see it passed on)
    monkeypatch.setattr(training_setup, "decide_precision", lambda bf16, device: Precision(False, True))
    seen = []
    real = validate.predict_tiled
    monkeypatch.setattr(validate, "predict_tiled", lambda *a, **k: seen.append(k["autocast"]) or real(*a, **k))
    summary = train(config(epochs=1), *data, tmp_path)
    assert seen and all(seen) and summary["precision"]["eval_bf16"] is True
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["precision"]["name"] == summary["precision"]["name"]


def test_a_float32_run_is_scored_and_predicts_in_float32(data, tmp_path):
    train(config(epochs=1, bf16=False), *data, tmp_path)
    trained = load_trained(tmp_path / "best.pt", device="cpu")
    assert trained.precision == decide_precision(False, torch.device("cpu")) and not trained.precision.eval_bf16


def test_workers_are_chosen_from_the_machine_on_a_gpu_and_said_in_the_first_line(data, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(hardware.os, "cpu_count", lambda: 16)
    assert decide_workers(None, torch.device("cuda")) == 8
    monkeypatch.setattr(hardware.os, "cpu_count", lambda: 4)
    assert decide_workers(None, torch.device("cuda")) == 2
    assert decide_workers(None, torch.device("cpu")) == 0 and decide_workers(3, torch.device("cpu")) == 3
    train(config(epochs=1), *data, tmp_path)
    first = capsys.readouterr().out.splitlines()[0]
    assert "0 data worker(s) (chosen from the machine)" in first


def test_building_the_network_leaves_the_cuda_generators_alone(monkeypatch):
    # torch.manual_seed reseeds every CUDA generator: all data-parallel ranks would then draw the same dropout masks
    monkeypatch.setattr(torch.cuda, "manual_seed_all", lambda seed: pytest.fail("a CUDA generator was reseeded"))
    a = training_setup.build_network(config()).state_dict()
    b = training_setup.build_network(config()).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_cuda_generator_states_are_restored_after_cuda_is_initialised(monkeypatch):
    calls = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "init", lambda: calls.append("init"))
    monkeypatch.setattr(torch.cuda, "set_rng_state_all", lambda states: calls.append("set"))
    import random
    np_state = np.random.get_state()
    set_rng_state({"python": random.getstate(), "torch": torch.get_rng_state(), "cuda": [torch.zeros(8)],
                   "numpy": (np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:])})
    assert calls == ["init", "set"]
