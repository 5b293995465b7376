"""Learning-rate range test (Smith 2017, "Cyclical Learning Rates for Training Neural Networks", section 3.3).

Train for a short while with a learning rate that grows exponentially from ``min_lr`` to ``max_lr``, one value per
optimizer step, and record the training loss. The loss first barely moves (LR too small), then falls (useful LRs),
then rises and blows up (LR too large). A good LR lies where the loss falls fastest, well below the point where it
starts to rise.

    result = lr_range_test(model, optimizer, loader, WeightedBCEWithLogitsLoss(), iters=100)
    result.suggested_lr, result.min_loss_lr
    result.reliable, result.note      # False + why, when the suggestion rests on too few points (also warned)
    result.to_csv("lr_range.csv"); result.plot("lr_range.png")

The model and the optimizer are left exactly as they were (weights, gradients, optimizer state, param-group
learning rates, train/eval modes, RNG states): the test can be run on the very objects a training run then uses.
"""
from __future__ import annotations

import contextlib
import copy
import csv
import itertools
import math
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from .training.checkpoint import rng_state, set_rng_state
from .progress import progress as progress_bar
from .report import pyplot, save_figure

# The first SKIP_FRACTION of the recorded points are not considered for the suggestion: the bias-corrected average
# is then a mean of only a few losses and its slope is mostly noise (and the LR is still far too small to matter).
SKIP_FRACTION = 0.1
# A suggestion is trusted only when the points between the skipped head and the minimum of the smoothed loss span at
# least MIN_WINDOWS effective windows 1 / (1 - beta) of the moving average: over a shorter stretch the smoothed curve
# is still mostly the average of the (flat) head, lags the raw losses by up to a window, and its steepest point is
# noise (a 30-step test with beta = 0.98 suggested 4.2e-06). One window leaves the losses of the stretch itself
# >= 1 - 1/e ~ 63 % of the weight at the minimum.
MIN_WINDOWS = 1.0


class UnreliableSuggestionWarning(UserWarning):
    """The LR range test's suggestion rests on too few points, or its minimum lies at an end of the range."""


Batch = dict[str, torch.Tensor]
LossFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class LRRangeResult:
    """The recorded curve of an LR range test and what it suggests.

    Attributes:
        lrs: the learning rate of each iteration run (one optimizer step each).
        losses: the raw training loss of each iteration (mean over its accumulated passes).
        smoothed: the bias-corrected exponential moving average of ``losses``.
        suggested_lr: the LR of steepest descent of ``smoothed`` w.r.t. log10(lr) before its minimum (see
            `suggest_lr`).
        min_loss_lr: the LR at the minimum of ``smoothed`` (an upper bound of what is usable, not a choice).
        stopped_early: True when the run was stopped by the divergence criterion (smoothed loss above
            ``diverge_factor`` x its best, or not finite).
        reliable: False when the suggestion should not be trusted (see `assess_suggestion`): too few points
            between the skipped head and the minimum, or the minimum at the very start or end of the range.
        note: why it is not reliable ("" when it is).
    """

    lrs: list[float]
    losses: list[float]
    smoothed: list[float]
    suggested_lr: float
    min_loss_lr: float
    stopped_early: bool
    reliable: bool = True
    note: str = ""

    def to_csv(self, path: Path | str) -> None:
        """One row per iteration run: ``iteration, lr, loss, smoothed_loss``."""
        with open(path, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["iteration", "lr", "loss", "smoothed_loss"])
            for i, (lr, loss, smooth) in enumerate(zip(self.lrs, self.losses, self.smoothed)):
                writer.writerow([i, repr(lr), repr(loss), repr(smooth)])

    def plot(self, path: Path | str, title: str | None = None) -> None:
        """Raw and smoothed loss against the LR (log x axis), the suggestion and the minimum marked, as a PNG."""
        plt = pyplot()
        lrs, raw, smooth = (np.asarray(v, dtype=float) for v in (self.lrs, self.losses, self.smoothed))
        fig, ax = plt.subplots(figsize=(7, 4.5))
        ax.plot(lrs, raw, color="tab:blue", alpha=0.35, lw=1, label="loss")
        ax.plot(lrs, smooth, color="tab:blue", lw=2, label="smoothed loss")
        finite = np.isfinite(raw) & np.isfinite(smooth)
        if len(finite) and finite[0]:
            # Keep the part before the minimum readable: a diverging tail (losses of 1e3 and more) would otherwise
            # squash it to a flat line. Raw losses beyond the top are cut off.
            n = len(finite) if finite.all() else int(np.argmin(finite))  # the leading finite points
            head = smooth[:n]
            i_min = int(np.argmin(head))
            low = min(head.min(), raw[:i_min + 1].min())
            top = head[:i_min + 1].max()
            high = min(max(raw[:n].max(), top), top + 1.5 * max(top - low, 0.05 * abs(top)))
            pad = 0.05 * max(high - low, 1e-12)
            ax.set_ylim(low - pad, high + pad)
        if math.isfinite(self.min_loss_lr):
            ax.axvline(self.min_loss_lr, color="gray", ls=":", lw=1.5,
                       label=f"min smoothed loss: lr={self.min_loss_lr:.2e}")
        if math.isfinite(self.suggested_lr):
            ax.axvline(self.suggested_lr, color="tab:red", ls="--", lw=1.5,
                       label=f"suggestion (steepest descent): lr={self.suggested_lr:.2e}"
                             + ("" if self.reliable else " - UNRELIABLE, see note"))
            # at the bottom: the legend takes the top left, where a suggestion usually lies
            ax.annotate(f"{self.suggested_lr:.2e}", xy=(self.suggested_lr, 0.03), xycoords=("data", "axes fraction"),
                        xytext=(4, 0), textcoords="offset points", color="tab:red", va="bottom")
        ax.set_xscale("log")
        ax.set_xlabel("learning rate")
        ax.set_ylabel("training loss")
        ax.set_title(title or "LR range test" + (" (stopped: loss diverged)" if self.stopped_early else ""),
                     fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        save_figure(fig, path)


def exponential_lrs(min_lr: float, max_lr: float, iters: int) -> list[float]:
    """``min_lr * (max_lr / min_lr) ** (i / (iters - 1))`` for i = 0 .. iters-1 (min_lr first, max_lr last)."""
    return [min_lr * (max_lr / min_lr) ** (i / (iters - 1)) for i in range(iters)]


def suggest_lr(lrs: Iterable[float], smoothed: Iterable[float],
               skip_fraction: float = SKIP_FRACTION) -> tuple[float, float]:
    """The LR of steepest descent and the LR of minimum loss of a smoothed LR-range curve.

    Only the leading finite part of the curve is used. With ``i_min`` the index of the smallest smoothed loss, the
    slope ``g = np.gradient(smoothed, log10(lrs))`` is searched for its most negative value among indices
    ``[int(skip_fraction * n), i_min]`` (n = number of finite points; the whole ``[0, i_min]`` when the minimum lies
    in the skipped head). When the loss never fell (``i_min == 0``) or fewer than 3 points exist there is no slope
    to speak of and the suggestion is the LR of the minimum.

    Returns:
        (suggested_lr, min_loss_lr); both NaN when no point is finite.
    """
    lr, s = np.asarray(list(lrs), dtype=float), np.asarray(list(smoothed), dtype=float)
    bad = np.flatnonzero(~np.isfinite(s))
    n = int(bad[0]) if len(bad) else len(s)
    if n == 0:
        return math.nan, math.nan
    lr, s = lr[:n], s[:n]
    i_min = int(np.argmin(s))
    if n < 3 or i_min == 0:
        return float(lr[i_min]), float(lr[i_min])
    slope = np.gradient(s, np.log10(lr))
    start = int(skip_fraction * n)
    if start >= i_min:
        start = 0
    k = start + int(np.argmin(slope[start:i_min + 1]))
    return float(lr[k]), float(lr[i_min])


def min_points(beta: float, min_windows: float = MIN_WINDOWS) -> int:
    """The fewest points between the skipped head and the minimum that a suggestion may rest on:
    ``max(3, ceil(min_windows / (1 - beta)))``, i.e. ``min_windows`` effective windows of the exponential moving
    average (50 points for beta = 0.98 and one window), and at least the 3 points a slope needs."""
    if not 0 <= beta < 1:
        raise ValueError(f"beta must be in [0, 1), got {beta}")
    return max(3, math.ceil(min_windows / (1.0 - beta) - 1e-9))


def assess_suggestion(smoothed: Iterable[float], beta: float, skip_fraction: float = SKIP_FRACTION,
                      min_windows: float = MIN_WINDOWS) -> tuple[bool, str]:
    """Whether the suggestion of `suggest_lr` on this smoothed curve can be trusted, and if not, why.

    On the leading finite part of the curve (n points; ``start = int(skip_fraction * n)`` skipped, ``i_min`` the
    index of its minimum) it cannot when

    * n == 0 (no finite loss);
    * ``i_min <= start``: the minimum lies at the very start of the range (in the skipped head): the loss never
      fell, the range starts too high or is too short;
    * ``i_min`` is the last point recorded and the run did not diverge after it: the loss was still falling at
      the end of the range, whose minimum is then unknown;
    * ``i_min - start + 1 < min_points(beta, min_windows)``: the suggestion rests on fewer points than
      ``min_windows`` windows ``1 / (1 - beta)`` of the moving average (see `MIN_WINDOWS`).

    Returns:
        (reliable, note); note is "" when reliable.
    """
    s = np.asarray(list(smoothed), dtype=float)
    bad = np.flatnonzero(~np.isfinite(s))
    n = int(bad[0]) if len(bad) else len(s)
    if n == 0:
        return False, "no finite loss was recorded"
    i_min = int(np.argmin(s[:n]))
    start = int(skip_fraction * n)
    need = min_points(beta, min_windows)
    window = 1.0 / (1.0 - beta)
    if i_min <= start:
        return False, (f"the smoothed loss was lowest at the very start of the range (step {i_min} of {len(s)}, "
                       f"within the first {skip_fraction:.0%} that are skipped): it never fell; start the range "
                       f"lower (min_lr) or run more iters")
    if i_min == len(s) - 1:
        return False, (f"the smoothed loss was lowest at the very end of the range (step {i_min}, the last): it "
                       f"was still falling; raise max_lr")
    points = i_min - start + 1
    if points < need:
        return False, (f"the suggestion rests on {points} points between the skipped start (step {start}) and "
                       f"the minimum (step {i_min}), fewer than {need} = {min_windows:g} x the smoothing window "
                       f"1/(1-beta) = {window:.0f} points: a noise pick; run more iters or smooth less (smaller "
                       f"beta)")
    return True, ""


def _stream(batches: Iterable[Batch]) -> Iterator[Batch]:
    """Endless batches: a re-iterable (list, DataLoader) is iterated again when it runs out; a one-shot iterator is
    cycled over the batches it yielded (kept in memory, like `itertools.cycle`)."""
    if isinstance(batches, Iterator):
        source: Iterable[Batch] = itertools.cycle(batches)
        yield from source
        raise ValueError("lr_range_test: `batches` yielded nothing")
    while True:
        empty = True
        for batch in batches:
            empty = False
            yield batch
        if empty:
            raise ValueError("lr_range_test: `batches` yielded nothing")


def _device_of(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def lr_range_test(model: nn.Module, optimizer: torch.optim.Optimizer, batches: Iterable[Batch], loss_fn: LossFn,
                  min_lr: float = 1e-6, max_lr: float = 1.0, iters: int = 100, accumulate: int = 1,
                  beta: float = 0.98, diverge_factor: float = 4.0, device: torch.device | str | None = None,
                  progress: bool = True, autocast_dtype: torch.dtype | None = None) -> LRRangeResult:
    """Smith's LR range test (Smith 2017, "Cyclical Learning Rates for Training Neural Networks").

    Iteration ``i`` (0-based) sets every param group's LR to ``min_lr * (max_lr / min_lr) ** (i / (iters - 1))``
    and makes ONE optimizer step after ``accumulate`` forward/backward passes, each loss scaled by
    ``1 / accumulate`` before ``backward`` (the gradient accumulation of `unet_repro.train.train`). The recorded loss
    of an iteration is the mean of its passes' (unscaled) losses, measured before its step. The model is in
    training mode during the test (dropout active, as in training).

    Smoothing: ``avg = beta * avg + (1 - beta) * loss``, ``smoothed_i = avg / (1 - beta ** (i + 1))`` (bias-
    corrected exponential moving average). The run stops early, after recording the iteration, when the smoothed
    loss exceeds ``diverge_factor`` times the best smoothed loss so far or is not finite (a non-finite pass loss
    ends the iteration at once, without a step).

    Suggestion: the LR at the steepest descent of the smoothed loss with respect to log10(lr) (the most negative
    ``np.gradient(smoothed, log10(lrs))``), searched between the first 10 % of the recorded points
    (`SKIP_FRACTION`, too few losses averaged to be trusted) and the minimum of the smoothed loss; see `suggest_lr`.
    Also returned: the LR at that minimum, and whether the suggestion is reliable (`assess_suggestion`: at least
    `MIN_WINDOWS` x ``1 / (1 - beta)`` points between the skipped head and the minimum, which lies at neither end
    of the range); an unreliable one also raises an `UnreliableSuggestionWarning`. Note that the loss is recorded
    before the step at the same LR, and that the smoothed curve lags the raw one by up to ``1 / (1 - beta)``
    iterations (50 for beta = 0.98, a large part of a short run).

    Everything the test touches is put back afterwards, also on an exception: the model's state_dict and gradients,
    the optimizer's state_dict (state tensors such as momentum buffers, param-group LRs), the train/eval mode of
    every submodule, and the python, numpy, torch (and CUDA) RNG states.

    Args:
        model: the network; its parameters must be those `optimizer` updates.
        optimizer: any torch optimizer; its param groups' ``lr`` is overwritten during the test.
        batches: an iterable of dicts with ``image`` (B, C, H, W), ``label`` and ``weight`` (B, 1, H', W') tensors
            (`unet_repro.data.TileDataset` items, batched); re-iterated (or, for an iterator, cycled) when it runs
            out before ``iters * accumulate`` batches.
        loss_fn: ``loss_fn(logits, label, weight) -> scalar`` (logits are cast to float32, as in training).
        min_lr, max_lr: the LR of the first and of the last iteration (0 < min_lr < max_lr).
        iters: number of iterations (optimizer steps) at most, >= 2.
        accumulate: forward/backward passes per optimizer step.
        beta: smoothing factor in [0, 1); 0 means no smoothing.
        diverge_factor: stop when the smoothed loss exceeds this multiple of the best one.
        device: where batches are moved (default: the device of the model's first parameter).
        progress: show progress (a tqdm bar with the LR and the smoothed loss on a terminal, plain lines elsewhere).
        autocast_dtype: run forward passes under ``torch.autocast`` with this dtype (e.g. torch.bfloat16 on CUDA,
            as training does); None: no autocast.

    Returns:
        `LRRangeResult` with the per-iteration lrs, losses and smoothed losses, ``suggested_lr``, ``min_loss_lr``,
        ``stopped_early``, ``reliable`` and ``note``.
    """
    if not 0 < min_lr < max_lr:
        raise ValueError(f"need 0 < min_lr < max_lr, got min_lr={min_lr}, max_lr={max_lr}")
    if iters < 2:
        raise ValueError(f"iters must be >= 2, got {iters}")
    if accumulate < 1:
        raise ValueError(f"accumulate must be >= 1, got {accumulate}")
    if not 0 <= beta < 1:
        raise ValueError(f"beta must be in [0, 1), got {beta}")
    if diverge_factor <= 1:
        raise ValueError(f"diverge_factor must be > 1, got {diverge_factor}")
    device = torch.device(device) if device is not None else _device_of(model)

    model_state = copy.deepcopy(model.state_dict())
    optimizer_state = copy.deepcopy(optimizer.state_dict())
    grads = {name: None if p.grad is None else p.grad.detach().clone() for name, p in model.named_parameters()}
    modes = {name: m.training for name, m in model.named_modules()}
    rng = rng_state()

    lrs: list[float] = []
    losses: list[float] = []
    smoothed: list[float] = []
    stopped_early = False
    bar = progress_bar(exponential_lrs(min_lr, max_lr, iters), desc="LR range test", enabled=progress)
    stream = _stream(batches)
    try:
        model.train()
        avg, best = 0.0, math.inf
        for i, lr in enumerate(bar):
            for group in optimizer.param_groups:
                group["lr"] = lr
            optimizer.zero_grad(set_to_none=True)
            total, finite = 0.0, True
            for _ in range(accumulate):
                batch = next(stream)
                x, y = batch["image"].to(device, non_blocking=True), batch["label"].to(device, non_blocking=True)
                w = batch["weight"].to(device, non_blocking=True) if "weight" in batch else None
                with (torch.autocast(device.type, dtype=autocast_dtype) if autocast_dtype is not None
                      else contextlib.nullcontext()):
                    logits = model(x)
                loss = loss_fn(logits.float(), y, w)
                value = float(loss.detach())
                if not math.isfinite(value):
                    total, finite = value, False
                    break
                (loss / accumulate).backward()
                total += value
            mean = total / accumulate if finite else total
            avg = beta * avg + (1 - beta) * mean
            smooth = avg / (1 - beta ** (i + 1))
            lrs.append(lr)
            losses.append(mean)
            smoothed.append(smooth)
            if hasattr(bar, "set_postfix"):
                bar.set_postfix(ordered_dict={"lr": f"{lr:.2e}", "smoothed_loss": f"{smooth:.4f}"})
            if not math.isfinite(smooth) or smooth > diverge_factor * best:
                stopped_early = True
                break
            best = min(best, smooth)
            optimizer.step()
    finally:
        if hasattr(bar, "close"):
            bar.close()
        stream.close()  # ends a DataLoader's iteration (and its workers) now
        model.load_state_dict(model_state)
        optimizer.load_state_dict(optimizer_state)
        for name, p in model.named_parameters():
            p.grad = grads[name]
        for name, m in model.named_modules():
            m.training = modes[name]
        set_rng_state(rng)

    suggested, at_min = suggest_lr(lrs, smoothed)
    reliable, note = assess_suggestion(smoothed, beta)
    if not reliable:
        warnings.warn(f"LR range test: suggestion {suggested:.3g} is unreliable: {note}", UnreliableSuggestionWarning,
                      stacklevel=2)
    return LRRangeResult(lrs=lrs, losses=losses, smoothed=smoothed, suggested_lr=suggested, min_loss_lr=at_min,
                         stopped_early=stopped_early, reliable=reliable, note=note)


__all__ = ["LRRangeResult", "MIN_WINDOWS", "SKIP_FRACTION", "UnreliableSuggestionWarning", "assess_suggestion",
           "exponential_lrs", "lr_range_test", "min_points", "suggest_lr"]
