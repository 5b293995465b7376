"""The training engine: accumulation equivalence, bit-exact resume, atomic checkpoints, refusals, NaN stop."""
from dataclasses import replace

import numpy as np
import pytest
import torch
from conftest import synthetic_em

from unet_repro.data import TileDataset
from unet_repro.errors import ConfigMismatchError, DivergedError
from unet_repro.losses import WeightedBCEWithLogitsLoss
from unet_repro.training import hardware
from unet_repro.training import setup as training_setup
from unet_repro.training import (
    TrainConfig,
    load_checkpoint,
    read_metrics,
    save_checkpoint,
    train,
)

WIDTHS = (4, 8, 16)


@pytest.fixture(scope="module")
def data():
    images, labels = synthetic_em(n=4, size=64, cells=8, seed=1)
    labels = (labels > 127).astype(np.uint8)
    return images[:3], labels[:3], images[3:], labels[3:]


def small_config(**kw) -> TrainConfig:
    from unet_repro.models import UNet
    tile = UNet(widths=WIDTHS).input_size(28)
    base = TrainConfig(widths=WIDTHS, tile=tile, dropout=0.5, lr=0.01, momentum=0.9, epochs=2, steps_per_epoch=3,
                       patience=0, seed=7, device="cpu", checkpoint_every=0)
    return replace(base, **kw)


def run(cfg, data, out, **kw):
    return train(cfg, *data, out, **kw)


def weights(path):
    return load_checkpoint(path)["model"]


def assert_same_weights(a, b, exact=True):
    assert a.keys() == b.keys()
    for k in a:
        if exact:
            assert torch.equal(a[k], b[k]), k
        else:
            torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6, msg=k)


def test_accumulated_tiles_give_the_same_update_as_one_batch(data, tmp_path):
    # No batch-norm and no dropout: k accumulated passes of one tile == one pass of a batch of k tiles.
    common = dict(dropout=0.0, epochs=1, momentum=0.0, lr=0.5, bf16=False)  # the arithmetic, not the precision
    run(small_config(batch_size=3, accumulate=1, steps_per_epoch=1, **common), data, tmp_path / "batch")
    run(small_config(batch_size=1, accumulate=3, steps_per_epoch=3, **common), data, tmp_path / "accum")
    start = training_setup.build_network(small_config(**common)).state_dict()
    assert not torch.equal(weights(tmp_path / "batch" / "last.pt")["head.weight"], start["head.weight"])
    assert_same_weights(weights(tmp_path / "batch" / "last.pt"), weights(tmp_path / "accum" / "last.pt"), exact=False)
    assert load_checkpoint(tmp_path / "accum" / "last.pt")["step"] == 1


def test_last_partial_group_still_steps(data, tmp_path):
    # 3 passes with accumulate=2: a group of 2, then a last group of 1 that still steps and is scaled by its own
    # size. Replay the same tiles by hand with plain SGD: mean loss of tiles 0 and 1, then the loss of tile 2.
    cfg = small_config(accumulate=2, steps_per_epoch=3, dropout=0.0, epochs=1, momentum=0.0, lr=0.5, augment=False,
                       bf16=False)
    run(cfg, data, tmp_path)
    assert load_checkpoint(tmp_path / "last.pt")["step"] == 2
    model = training_setup.build_network(cfg)
    tiles = TileDataset(data[0], data[1], tile_in=cfg.tile, tile_out=model.output_size(cfg.tile),
                                  samples_per_epoch=3, seed=cfg.seed)
    loss_fn = WeightedBCEWithLogitsLoss()
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr)
    for group in ([0, 1], [2]):
        opt.zero_grad()
        for i in group:
            item = tiles[i]
            (loss_fn(model(item["image"][None]), item["label"][None], item["weight"][None]) / len(group)).backward()
        opt.step()
    assert_same_weights(model.state_dict(), weights(tmp_path / "last.pt"), exact=False)


@pytest.mark.parametrize("bf16", [True, False])
def test_resume_is_bit_identical(data, tmp_path, bf16):
    # bf16=True runs under bf16 autocast where this CPU has native bf16, float32 elsewhere; both resume exactly.
    cfg = small_config(epochs=4, accumulate=2, steps_per_epoch=3, bf16=bf16)  # dropout and augmentation on
    run(cfg, data, tmp_path / "straight")
    run(replace(cfg, epochs=2), data, tmp_path / "split")
    mid = load_checkpoint(tmp_path / "split" / "last.pt")
    assert mid["epoch"] == 1 and set(mid["rng"]) == {"python", "numpy", "torch", "cuda"}
    run(cfg, data, tmp_path / "split", resume=tmp_path / "split" / "last.pt")
    assert_same_weights(weights(tmp_path / "straight" / "last.pt"), weights(tmp_path / "split" / "last.pt"))
    a, b = (load_checkpoint(tmp_path / d / "last.pt") for d in ("straight", "split"))
    for k in ("epoch", "step", "best", "best_epoch", "bad_epochs"):
        assert a[k] == b[k], k
    for sa, sb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        assert torch.equal(sa["momentum_buffer"], sb["momentum_buffer"])
    rows_a, rows_b = read_metrics(tmp_path / "straight" / "metrics.csv"), read_metrics(tmp_path / "split" / "metrics.csv")
    assert [r["val_loss"] for r in rows_a] == [r["val_loss"] for r in rows_b]
    assert (tmp_path / "split" / "curves.png").stat().st_size > 0


def test_different_model_configuration_is_refused(data, tmp_path):
    cfg = small_config(epochs=1)
    run(cfg, data, tmp_path)
    with pytest.raises(ConfigMismatchError, match=r"widths: checkpoint \(4, 8, 16\) vs requested \(4, 8, 32\)"):
        run(replace(cfg, widths=(4, 8, 32), epochs=2), data, tmp_path, resume=tmp_path / "last.pt")
    with pytest.raises(ConfigMismatchError, match=r"dropout: checkpoint 0.5 vs requested 0.1"):
        run(replace(cfg, dropout=0.1, epochs=2), data, tmp_path, resume=tmp_path / "last.pt")


def test_interrupted_checkpoint_write_keeps_the_previous_one(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    save_checkpoint(path, {"model": {"w": torch.ones(3)}, "config": {}, "epoch": 1})

    def crash(obj, f, *a, **k):
        f.write(b"half a checkpoint")
        raise KeyboardInterrupt  # the process is killed mid-write

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, {"model": {"w": torch.zeros(3)}, "config": {}, "epoch": 2})
    monkeypatch.undo()
    ckpt = load_checkpoint(path)
    assert ckpt["epoch"] == 1 and torch.equal(ckpt["model"]["w"], torch.ones(3))
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind


def test_checkpoint_is_loaded_with_weights_only(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("code ran",))

    path = tmp_path / "evil.pt"
    torch.save({"model": {}, "config": {}, "payload": Evil()}, path)
    with pytest.raises(ValueError, match="not a unet_repro checkpoint: it is a PyTorch file holding objects"):
        load_checkpoint(path)


def test_nan_loss_stops_and_keeps_last_good_checkpoint(data, tmp_path, monkeypatch):
    cfg = small_config(epochs=3)
    real_loss = WeightedBCEWithLogitsLoss.forward
    calls = {"n": 0}

    def poisoned(self, logits, target, weight=None):
        calls["n"] += 1
        loss = real_loss(self, logits, target, weight)
        return loss * float("nan") if calls["n"] > cfg.steps_per_epoch + 1 else loss  # NaN in the 2nd epoch

    monkeypatch.setattr(WeightedBCEWithLogitsLoss, "forward", poisoned)
    with pytest.raises(DivergedError, match="became nan at epoch 1"):
        run(cfg, data, tmp_path)
    ckpt = load_checkpoint(tmp_path / "last.pt")
    assert ckpt["epoch"] == 0
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values())


def test_early_stopping_and_run_directory(data, tmp_path):
    cfg = small_config(epochs=6, patience=1, lr=0.0)  # nothing improves after the first epoch
    summary = run(cfg, data, tmp_path)
    assert summary["stop_reason"].startswith("early stopping")
    assert load_checkpoint(tmp_path / "last.pt")["epoch"] == 1
    assert load_checkpoint(tmp_path / "best.pt")["epoch"] == 0
    for name in ("config.json", "metrics.csv", "curves.png"):
        assert (tmp_path / name).exists()
    rows = read_metrics(tmp_path / "metrics.csv")
    assert [r["epoch"] for r in rows] == [0, 1]
    assert all(0 <= r["val_iou"] <= 1 and 0 <= r["val_pixel_error"] <= 1 for r in rows)


def forward_dtypes(monkeypatch) -> list[torch.dtype]:
    """Record the dtype of every training forward pass's logits."""
    seen = []
    build = training_setup.build_network

    def recording(cfg):
        model = build(cfg)
        model.head.register_forward_hook(lambda m, i, out: seen.append(out.dtype) if m.training else None)
        return model
    monkeypatch.setattr(training_setup, "build_network", recording)
    return seen


@pytest.mark.parametrize("native", [True, False])
def test_cpu_training_uses_bf16_where_native(data, tmp_path, monkeypatch, native):
    monkeypatch.setattr(hardware, "cpu_has_native_bf16", lambda: native)
    seen = forward_dtypes(monkeypatch)
    summary = run(small_config(epochs=1), data, tmp_path)
    assert seen and set(seen) == {torch.bfloat16 if native else torch.float32}
    assert summary["precision"]["name"] == ("bf16 autocast training, float32 evaluation" if native else "float32")
    # the weights, the optimizer state and the checkpoint stay float32 (autocast only changes the forward)
    assert all(v.dtype == torch.float32 for v in weights(tmp_path / "last.pt").values())


def test_no_bf16_trains_in_float32(data, tmp_path, monkeypatch):
    monkeypatch.setattr(hardware, "cpu_has_native_bf16", lambda: True)
    seen = forward_dtypes(monkeypatch)
    run(small_config(epochs=1, bf16=False), data, tmp_path)
    assert seen and set(seen) == {torch.float32}


def test_bf16_detection_matches_the_cpu_flags():
    try:
        flags = next(line.split(":", 1)[1].split() for line in open("/proc/cpuinfo") if line.startswith("flags"))
    except (OSError, StopIteration):
        pytest.skip("no /proc/cpuinfo flags on this machine")
    assert hardware.cpu_has_native_bf16() == ("avx512_bf16" in flags or "amx_bf16" in flags)
