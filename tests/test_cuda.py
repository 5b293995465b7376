"""What only a CUDA GPU can check: bf16 autocast and channels-last training, bit-exact resume on CUDA, and
overlap-tile prediction on CUDA against the CPU. Marked `cuda` and skipped without CUDA; ``pytest -m cuda`` runs
them alone."""
from __future__ import annotations

import os

# cuBLAS is deterministic only with a fixed workspace, which it reads when CUDA starts: before any test runs.
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

from dataclasses import replace

import numpy as np
import pytest
import torch
from conftest import synthetic_em
from torch import nn

from unet_repro import predict_tiled
from unet_repro.models import UNet
from unet_repro.training import TrainConfig, load_checkpoint, read_metrics, train
from unet_repro.training import setup as training_setup

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

WIDTHS = (8, 16, 32)


@pytest.fixture(scope="module")
def data():
    images, labels = synthetic_em(n=4, size=96, cells=10, seed=1)
    labels = (labels > 127).astype(np.uint8)
    return images[:3], labels[:3], images[3:], labels[3:]


def cuda_config(**kw) -> TrainConfig:
    base = TrainConfig(widths=WIDTHS, tile=UNet(widths=WIDTHS).input_size(36), dropout=0.5, lr=0.01, momentum=0.9,
                       epochs=2, steps_per_epoch=3, patience=0, seed=7, device="cuda", workers=0, checkpoint_every=0)
    return replace(base, **kw)


@pytest.fixture(autouse=True)
def fresh_cudnn_switches(monkeypatch):
    """Every test starts from PyTorch's defaults: training sets cudnn.benchmark (and TF32) for the process, and a
    test must not inherit what an earlier one left."""
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", True)
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)


@pytest.fixture
def float32_exact(monkeypatch):
    """Float32 convolutions in float32 (cuDNN uses TF32 by default on Ampere and later), for tight comparisons."""
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)


@pytest.fixture
def deterministic(monkeypatch):
    """cuDNN's deterministic algorithms (and no autotuning), so that two runs of the same work agree bit for bit."""
    monkeypatch.setattr(torch.backends.cudnn, "deterministic", True)
    was = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)  # a warning names an op without a deterministic kernel
    yield
    torch.use_deterministic_algorithms(was[0], warn_only=was[1])


def record_training_forwards(monkeypatch) -> list[dict]:
    """For every training forward pass: the logits' dtype, and the memory format of the second convolution's input
    and weight (the first one's, of one channel, are channels-last and contiguous at once)."""
    seen: list[dict] = []
    build = training_setup.build_network

    def recording(cfg):
        model = build(cfg)
        second = [m for m in model.modules() if isinstance(m, nn.Conv2d)][1]
        record: dict = {}

        def before(module, inputs):
            if module.training:
                record.update(input_cl=inputs[0].is_contiguous(memory_format=torch.channels_last),
                              weight_cl=module.weight.is_contiguous(memory_format=torch.channels_last),
                              device=inputs[0].device.type)
        second.register_forward_pre_hook(before)
        model.head.register_forward_hook(
            lambda m, i, out: seen.append({**record, "dtype": out.dtype}) if m.training else None)
        return model
    monkeypatch.setattr(training_setup, "build_network", recording)
    return seen


def test_training_on_cuda_runs_under_bf16_autocast_with_float32_weights(data, tmp_path, monkeypatch):
    seen = record_training_forwards(monkeypatch)
    summary = train(cuda_config(epochs=1), *data, tmp_path)
    assert summary["precision"]["name"] == "bf16 autocast"  # training and evaluation alike on CUDA
    assert seen and {s["dtype"] for s in seen} == {torch.bfloat16} and {s["device"] for s in seen} == {"cuda"}
    ckpt = load_checkpoint(tmp_path / "last.pt")
    assert all(v.dtype == torch.float32 and torch.isfinite(v).all() for v in ckpt["model"].values())
    assert all(s["momentum_buffer"].dtype == torch.float32 for s in ckpt["optimizer"]["state"].values())
    assert np.isfinite(read_metrics(tmp_path / "metrics.csv")[0]["val_loss"])


def test_no_bf16_trains_in_float32_on_cuda(data, tmp_path, monkeypatch):
    seen = record_training_forwards(monkeypatch)
    summary = train(cuda_config(epochs=1, bf16=False), *data, tmp_path)
    assert summary["precision"]["name"] == "float32" and {s["dtype"] for s in seen} == {torch.float32}
    assert not torch.backends.cudnn.allow_tf32  # float32 means float32: no TF32 convolutions


@pytest.mark.parametrize("channels_last", [True, False])
def test_training_on_cuda_uses_channels_last_unless_turned_off(data, tmp_path, monkeypatch, channels_last):
    seen = record_training_forwards(monkeypatch)
    train(cuda_config(epochs=1, channels_last=channels_last), *data, tmp_path)
    assert seen and all(s["input_cl"] == channels_last and s["weight_cl"] == channels_last for s in seen)


def test_channels_last_gives_the_same_network_output(float32_exact):
    torch.manual_seed(0)
    model = UNet(widths=WIDTHS, dropout=0.0).cuda().eval()
    x = torch.rand(2, 1, 140, 140, device="cuda")
    with torch.no_grad():
        plain = model(x)
        model.to(memory_format=torch.channels_last)
        cl = model(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(cl, plain, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("bf16", [True, False])
def test_resume_on_cuda_is_bit_identical(data, tmp_path, deterministic, bf16):
    # The run of test_train.test_resume_is_bit_identical, on CUDA: 4 epochs straight, or 2 then resumed to 4
    # (dropout, augmentation, accumulation on; the CUDA generator's state travels in the checkpoint).
    cfg = cuda_config(epochs=4, accumulate=2, steps_per_epoch=3, bf16=bf16, cudnn_benchmark=False)
    train(cfg, *data, tmp_path / "straight")
    train(replace(cfg, epochs=2), *data, tmp_path / "split")
    mid = load_checkpoint(tmp_path / "split" / "last.pt")
    assert mid["epoch"] == 1 and mid["rng"].get("cuda") is not None
    train(cfg, *data, tmp_path / "split", resume=tmp_path / "split" / "last.pt")
    a, b = (load_checkpoint(tmp_path / d / "last.pt") for d in ("straight", "split"))
    for k in ("epoch", "step", "best", "best_epoch", "bad_epochs"):
        assert a[k] == b[k], k
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    for sa, sb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        assert torch.equal(sa["momentum_buffer"], sb["momentum_buffer"])
    rows_a, rows_b = (read_metrics(tmp_path / d / "metrics.csv") for d in ("straight", "split"))
    assert [r["val_loss"] for r in rows_a] == [r["val_loss"] for r in rows_b]
    assert [r["train_loss"] for r in rows_a] == [r["train_loss"] for r in rows_b]


def em_image(shape: tuple[int, int]) -> np.ndarray:
    images, _ = synthetic_em(n=1, size=max(shape), cells=40, seed=3)
    return np.ascontiguousarray(images[0][:shape[0], :shape[1]])


@pytest.mark.parametrize("shape", [(512, 512), (130, 97)])
def test_overlap_tile_on_cuda_equals_cpu(shape, float32_exact):
    # The quick preset's network at random paper-style initialisation: CPU float32 is the reference.
    torch.manual_seed(0)
    model = UNet(widths=(16, 32, 64, 128, 256)).eval()
    image = em_image(shape)
    cpu = predict_tiled(model, image, device="cpu")
    model.cuda()
    f32 = predict_tiled(model, image, autocast=False)
    bf16 = predict_tiled(model, image, autocast=True)  # what a bf16 run predicts in
    assert cpu.shape == f32.shape == bf16.shape == shape and bf16.dtype == np.float32
    assert 0.02 < cpu.std()  # the comparison is of a map with structure, not a constant
    np.testing.assert_allclose(f32, cpu, atol=1e-4, rtol=0)
    # bf16 keeps 8 bits of mantissa: about 0.4% per rounding, through 23 convolutions (on a CPU with native bf16
    # the same comparison gives max 0.025, mean 0.003)
    diff = np.abs(bf16 - cpu)
    assert diff.max() < 0.06 and diff.mean() < 0.01, (diff.max(), diff.mean())


def test_overlap_tile_on_cuda_is_seamless(float32_exact):
    # Small tiles (many overlapping windows, at multiples of 16 px) give the one-pass result on CUDA too.
    torch.manual_seed(0)
    model = UNet(widths=(16, 32, 64, 128, 256)).cuda().eval()
    image = em_image((300, 260))
    whole = predict_tiled(model, image, autocast=False)
    tiled = predict_tiled(model, image, tile=model.geometry.tile_for_output(100), batch_size=3, autocast=False)
    # the same tolerance as the CPU twin (tests/test_inference.py): windows of other sizes pick other kernels
    np.testing.assert_allclose(tiled, whole, atol=5e-5, rtol=0)


def test_a_fresh_process_restores_the_cuda_generator_of_a_checkpoint(data, tmp_path):
    # In a new process CUDA starts lazily: a restored state must not be overwritten by the seeding queued before it.
    import subprocess
    import sys
    train(cuda_config(epochs=1), *data, tmp_path)
    script = ("import sys, torch\n"
              "from unet_repro.training import load_checkpoint, seed_everything, set_rng_state\n"
              "state = load_checkpoint(sys.argv[1])['rng']\n"
              "seed_everything(123)\n"
              "set_rng_state(state)\n"
              "assert torch.equal(torch.cuda.get_rng_state_all()[0], state['cuda'][0]), 'overwritten'\n")
    subprocess.run([sys.executable, "-c", script, str(tmp_path / "last.pt")], check=True, timeout=300)
