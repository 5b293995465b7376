"""The LR range test: it leaves model and optimizer untouched, finds the stable LR range of a problem whose
stability limit is known analytically, honours gradient accumulation and writes its CSV and figure."""
from __future__ import annotations

import copy
import csv
import json
import math
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from unet_repro.lr_finder import (
    LRRangeResult,
    UnreliableSuggestionWarning,
    assess_suggestion,
    exponential_lrs,
    lr_range_test,
    min_points,
    suggest_lr,
)
from unet_repro.models import UNet


def mse(logits: torch.Tensor, label: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    return ((logits - label) ** 2 * weight).mean()


def unet_batches(n: int = 4, size: int = 16, seed: int = 0) -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        image = torch.rand(2, 1, size, size, generator=g)
        label = (torch.rand(2, 1, size, size, generator=g) > 0.5).float()
        out.append({"image": image, "label": label, "weight": 1 + torch.rand(2, 1, size, size, generator=g)})
    return out


def bce(logits: torch.Tensor, label: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    return nn.functional.binary_cross_entropy_with_logits(logits, label, weight=weight)


def trained_unet() -> tuple[nn.Module, torch.optim.Optimizer, list[dict[str, torch.Tensor]]]:
    """A small U-Net with dropout and an SGD-momentum optimizer that has already stepped (momentum buffers exist)
    and holds gradients."""
    torch.manual_seed(0)
    model = UNet(widths=(4, 8, 16), padding="same", dropout=0.5)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    batches = unet_batches()
    for batch in batches[:2]:
        optimizer.zero_grad()
        bce(model(batch["image"]), batch["label"], batch["weight"]).backward()
        optimizer.step()
    return model, optimizer, batches


def snapshot(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    return {"params": {k: v.detach().clone() for k, v in model.state_dict().items()},
            "grads": {k: None if p.grad is None else p.grad.clone() for k, p in model.named_parameters()},
            "opt": copy.deepcopy(optimizer.state_dict()),
            "modes": {k: m.training for k, m in model.named_modules()},
            "rng": torch.get_rng_state(), "np_rng": np.random.get_state()[1].copy()}


def assert_same(before: dict, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
    after = snapshot(model, optimizer)
    for k, v in before["params"].items():
        assert torch.equal(v, after["params"][k]), k
    for k, g in before["grads"].items():
        assert (g is None and after["grads"][k] is None) or torch.equal(g, after["grads"][k]), k
    assert before["opt"]["param_groups"] == after["opt"]["param_groups"]  # incl. lr
    assert optimizer.param_groups[0]["lr"] == 0.01
    assert before["opt"]["state"].keys() == after["opt"]["state"].keys()
    for k, state in before["opt"]["state"].items():
        assert state.keys() == after["opt"]["state"][k].keys()
        for name, v in state.items():
            assert v is not None and torch.equal(v, after["opt"]["state"][k][name]), (k, name)
    assert before["modes"] == after["modes"]
    assert torch.equal(before["rng"], after["rng"])
    assert np.array_equal(before["np_rng"], after["np_rng"])


def test_restores_model_optimizer_mode_and_rng():
    model, optimizer, batches = trained_unet()
    assert all("momentum_buffer" in s for s in optimizer.state.values())
    model.eval()
    model.encoder.blocks[0].train()  # a mixed state must come back as it was, too
    before = snapshot(model, optimizer)
    np.random.rand()  # numpy's state must be restored as well, whatever it is
    before["np_rng"] = np.random.get_state()[1].copy()
    # max_lr far too large: the weights are wrecked (and the loss diverges) during the test.
    result = lr_range_test(model, optimizer, batches, bce, min_lr=1e-2, max_lr=1e3, iters=12, progress=False)
    assert len(result.lrs) >= 3
    assert_same(before, model, optimizer)
    assert not model.training and model.encoder.blocks[0].training


def test_restores_on_exception():
    model, optimizer, batches = trained_unet()
    before = snapshot(model, optimizer)
    calls = []

    def failing(logits, label, weight):
        calls.append(1)
        if len(calls) == 4:
            raise RuntimeError("boom")
        return bce(logits, label, weight)

    with pytest.raises(RuntimeError, match="boom"):
        lr_range_test(model, optimizer, batches, failing, min_lr=1e-2, max_lr=10, iters=10, progress=False)
    assert_same(before, model, optimizer)
    assert model.training


def linear_problem(seed: int) -> tuple[list[dict[str, torch.Tensor]], float]:
    """A 1x1 convolution (linear regression per pixel) fit with MSE on one fixed batch: full-batch gradient descent
    on a quadratic, stable exactly for lr < 2 / lambda_max of the Hessian 2/N * Phi^T Phi (Phi: pixels x [x, 1])."""
    g = torch.Generator().manual_seed(seed)
    b, c, s = 4, 3, 8
    x = torch.randn(b, c, s, s, generator=g) * torch.tensor([1.0, 0.7, 0.5]).view(1, c, 1, 1) + 0.3
    y = (x * 2 * torch.randn(1, c, 1, 1, generator=g)).sum(1, keepdim=True) + 0.5
    y = y + 0.05 * torch.randn(b, 1, s, s, generator=g)
    phi = torch.cat([x.permute(0, 2, 3, 1).reshape(-1, c), torch.ones(b * s * s, 1)], 1).double()
    lambda_max = torch.linalg.eigvalsh(2 * phi.T @ phi / phi.shape[0])[-1].item()
    return [{"image": x, "label": y, "weight": torch.ones_like(y)}], 2 / lambda_max


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_finds_the_stable_range_of_a_quadratic(seed):
    batches, lr_bound = linear_problem(seed)
    torch.manual_seed(seed)
    model = nn.Conv2d(3, 1, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    # 1e-5 .. 1e2: the last lrs are ~100x the stability limit (~0.5), so the loss must blow up before the end.
    result = lr_range_test(model, optimizer, batches, mse, min_lr=1e-5, max_lr=1e2, iters=100, progress=False)
    assert lr_bound / 100 <= result.suggested_lr <= lr_bound, (result.suggested_lr, lr_bound)
    assert result.stopped_early and len(result.lrs) < 100
    assert result.lrs[-1] > lr_bound  # it stopped because of divergence, past the stability limit
    assert result.min_loss_lr >= result.suggested_lr


def test_schedule_and_smoothing():
    batches, _ = linear_problem(0)
    model = nn.Conv2d(3, 1, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    result = lr_range_test(model, optimizer, batches, mse, min_lr=1e-6, max_lr=1e-3, iters=7, beta=0.9,
                           progress=False)
    assert not result.stopped_early
    assert result.lrs == pytest.approx([1e-6 * 1000 ** (i / 6) for i in range(7)], rel=1e-12)
    assert result.lrs == exponential_lrs(1e-6, 1e-3, 7)
    avg = 0.0
    for i, (loss, smooth) in enumerate(zip(result.losses, result.smoothed)):
        avg = 0.9 * avg + 0.1 * loss
        assert smooth == pytest.approx(avg / (1 - 0.9 ** (i + 1)), rel=1e-12)


class Counting:
    """A re-iterable over a list of batches that counts the batches handed out."""

    def __init__(self, batches):
        self.batches, self.seen = batches, 0

    def __iter__(self):
        for batch in self.batches:
            self.seen += 1
            yield batch


def test_honours_gradient_accumulation():
    torch.manual_seed(0)
    source = unet_batches(n=4, size=8)
    for k, batch in enumerate(source):  # a regression target, so that MSE suits the batches
        batch["label"] = batch["image"] * (k + 1)
    batches = Counting(source)  # 4 batches, re-iterated when they run out
    model = nn.Conv2d(1, 1, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    seen_losses, step_grads = [], []
    optimizer.register_step_pre_hook(lambda opt, a, kw: step_grads.append([p.grad.clone() for p in model.parameters()]))

    def loss_fn(logits, label, weight):
        loss = mse(logits, label, weight)
        seen_losses.append(loss.item())
        return loss

    ref = copy.deepcopy(model)
    result = lr_range_test(model, optimizer, batches, loss_fn, min_lr=1e-7, max_lr=1e-6, iters=5, accumulate=3,
                           progress=False)
    assert len(result.lrs) == 5 and not result.stopped_early
    assert batches.seen == 15 and len(seen_losses) == 15  # 3 passes per optimizer step
    assert len(step_grads) == 5
    for i in range(5):
        assert result.losses[i] == pytest.approx(np.mean(seen_losses[3 * i:3 * i + 3]), rel=1e-12)
    # The first step's gradient is the mean of the gradients of batches 0, 1 and 2 (the model is still `ref`).
    expected = [torch.zeros_like(p) for p in ref.parameters()]
    for batch in source[:3]:
        ref.zero_grad()
        mse(ref(batch["image"]), batch["label"], batch["weight"]).backward()
        expected = [e + p.grad / 3 for e, p in zip(expected, ref.parameters())]
    for got, want in zip(step_grads[0], expected):
        assert torch.allclose(got, want, rtol=1e-5, atol=1e-7)


def test_one_shot_iterator_is_cycled():
    batches, _ = linear_problem(0)
    model = nn.Conv2d(3, 1, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    result = lr_range_test(model, optimizer, iter(batches * 2), mse, min_lr=1e-6, max_lr=1e-4, iters=5,
                           progress=False)
    assert len(result.lrs) == 5
    with pytest.raises(ValueError, match="yielded nothing"):
        lr_range_test(model, optimizer, [], mse, iters=5, progress=False)


def test_writes_csv_and_png(tmp_path):
    batches, _ = linear_problem(0)
    model = nn.Conv2d(3, 1, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    result = lr_range_test(model, optimizer, batches, mse, min_lr=1e-4, max_lr=1e3, iters=40, progress=False)
    assert result.stopped_early
    result.to_csv(tmp_path / "lr.csv")
    result.plot(tmp_path / "lr.png")
    with open(tmp_path / "lr.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["iteration", "lr", "loss", "smoothed_loss"]
    assert len(rows) - 1 == len(result.lrs) < 40
    assert [int(r[0]) for r in rows[1:]] == list(range(len(result.lrs)))
    assert float(rows[1][1]) == result.lrs[0] and float(rows[1][2]) == result.losses[0]
    last = float(rows[-1][3])
    assert last == result.smoothed[-1] or (math.isnan(last) and math.isnan(result.smoothed[-1]))
    png = (tmp_path / "lr.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000


def test_suggest_lr_on_a_known_curve():
    lrs = exponential_lrs(1e-5, 1.0, 101)
    x = np.log10(lrs)
    # A falling logistic step centred at lr = 1e-3, then a rise after 1e-1.
    curve = 1 - 1 / (1 + np.exp(-4 * (x + 3))) + np.where(x > -1, (x + 1) ** 2, 0)
    suggested, at_min = suggest_lr(lrs, curve)
    assert suggested == pytest.approx(1e-3, rel=0.13)
    assert 1e-2 < at_min <= 1e-1 * 1.2
    assert suggest_lr([1e-3, 1e-2, 1e-1], [1.0, 2.0, 3.0]) == (1e-3, 1e-3)  # never fell: the smallest lr
    nan_pair = suggest_lr([1e-3], [float("nan")])
    assert all(math.isnan(v) for v in nan_pair)
    assert isinstance(LRRangeResult([], [], [], 1.0, 1.0, False), LRRangeResult)


def known_curve(iters: int) -> tuple[list[float], np.ndarray]:
    """The curve of `test_suggest_lr_on_a_known_curve` sampled at ``iters`` LRs from 1e-5 to 1."""
    lrs = exponential_lrs(1e-5, 1.0, iters)
    x = np.log10(lrs)
    return lrs, 1 - 1 / (1 + np.exp(-4 * (x + 3))) + np.where(x > -1, (x + 1) ** 2, 0)


def test_min_points_is_a_window_of_the_moving_average():
    assert min_points(0.98) == 50 and min_points(0.9) == 10 and min_points(0.0) == 3
    assert min_points(0.98, min_windows=3) == 150


def test_long_clean_curve_is_reliable():
    lrs, curve = known_curve(300)
    assert assess_suggestion(curve, beta=0.98) == (True, "")


def test_short_curve_is_flagged_as_too_few_points():
    lrs, curve = known_curve(30)                  # the same curve, 30 points: its minimum is at step 23 of 30
    reliable, note = assess_suggestion(curve, beta=0.98)
    assert not reliable and "21 points" in note and "fewer than 50" in note
    assert assess_suggestion(curve, beta=0.5)[0]  # with a 2-point window, 21 points are plenty


def test_minimum_at_either_end_is_flagged():
    rising = np.linspace(1.0, 2.0, 200)           # never fell
    reliable, note = assess_suggestion(rising, beta=0.9)
    assert not reliable and "very start" in note
    falling = np.linspace(2.0, 1.0, 200)          # still falling at the last LR
    reliable, note = assess_suggestion(falling, beta=0.9)
    assert not reliable and "very end" in note
    assert not assess_suggestion([float("nan")], beta=0.9)[0]


def test_30_iteration_range_test_warns():
    """A 30-step test (beta = 0.98) cannot support a suggestion: it says so in the result and with a warning."""
    batches, _ = linear_problem(0)
    torch.manual_seed(0)
    model = nn.Conv2d(3, 1, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.warns(UnreliableSuggestionWarning, match="unreliable"):
        result = lr_range_test(model, optimizer, batches, mse, min_lr=1e-6, max_lr=1.0, iters=30, progress=False)
    assert not result.reliable and result.note


def test_long_range_test_on_a_quadratic_does_not_warn():
    batches, lr_bound = linear_problem(0)
    torch.manual_seed(0)
    model = nn.Conv2d(3, 1, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnreliableSuggestionWarning)
        result = lr_range_test(model, optimizer, batches, mse, min_lr=1e-5, max_lr=1e2, iters=400, progress=False)
    assert result.reliable and result.note == ""
    assert lr_bound / 100 <= result.suggested_lr <= lr_bound


def test_command_line(isbi_root, tmp_path, capsys):
    """The entry point on a tiny synthetic ISBI folder: runs, writes csv/png/json with the suggestion, and warns
    that 6 steps cannot support it."""
    from experiments import lr_range_test as cli

    out = tmp_path / "run"
    summary = cli.main(["--task", "isbi", "--data-root", str(isbi_root), "--widths", "4,8,16", "--tile", "60",
                        "--iters", "6", "--accumulate", "2", "--val-slices", "1", "--min-lr", "1e-4",
                        "--max-lr", "1e-2", "--out", str(out)])
    assert {p.name for p in out.iterdir()} == {"lr_range.csv", "lr_range.png", "lr_range.json"}
    saved = json.loads((out / "lr_range.json").read_text())
    assert saved["suggested_lr"] == summary["suggested_lr"] and 1e-4 <= saved["suggested_lr"] <= 1e-2
    assert saved["config"]["widths"] == [4, 8, 16] and saved["config"]["accumulate"] == 2
    assert saved["task"] == "isbi" and saved["iterations_run"] == 6
    assert saved["reliable"] is False and saved["note"] == summary["note"] != ""
    assert "warning: the suggested LR" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        cli.main(["--data-root", str(tmp_path / "nowhere")])
    assert e.value.code == 1 and "data not found" in capsys.readouterr().err
