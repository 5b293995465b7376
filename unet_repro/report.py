"""Figures of the package, drawn one way: matplotlib set up once (`pyplot`, off-screen), written atomically
(`save_figure`), probabilities always on a fixed 0-1 scale with a labelled colour bar (`save_panels`), and the
training curves of a run (`plot_curves`)."""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from .files import atomic_write


@functools.cache
def pyplot() -> Any:
    """matplotlib.pyplot with the off-screen Agg backend (no display is needed or used)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def save_figure(fig: Any, path: Path | str, dpi: int = 100) -> None:
    """Write `fig` as a PNG atomically and close it."""
    with atomic_write(path) as f:
        fig.savefig(f, dpi=dpi, format="png")
    pyplot().close(fig)


def save_panels(path: Path | str, panels: list[tuple[str, np.ndarray]], probability: Sequence[str] = (),
                title: str | None = None, classes: Mapping[str, int] | None = None) -> None:
    """Side-by-side PNG of 2-D images with titles (e.g. image | label | prediction). Panels named in `probability`
    are drawn on a fixed 0-1 scale with a labelled colour bar; panels named in `classes` (name -> K) as class
    indices 0..K-1, one colour each, with a colour bar of the class numbers; others in gray (or as RGB)."""
    plt = pyplot()
    classes = classes or {}
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4.6), squeeze=False)
    for ax, (name, a) in zip(axes[0], panels):
        if name in probability:
            im = ax.imshow(a, cmap="viridis", vmin=0.0, vmax=1.0)
            bar = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
            bar.set_label(name)
        elif name in classes:
            k = classes[name]
            im = ax.imshow(a, cmap=plt.get_cmap("tab10" if k <= 10 else "tab20", k), vmin=-0.5, vmax=k - 0.5,
                           interpolation="nearest")
            bar = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, ticks=range(k))
            bar.set_label("class")
        else:
            ax.imshow(a, cmap=None if a.ndim == 3 else "gray")
        ax.set_title(name, fontsize=10)
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    save_figure(fig, path)


def object_colours(labels: np.ndarray, seed: int = 0) -> np.ndarray:
    """Instance labels as an RGB image: background black, each object a random colour (the same label the same
    colour in every figure drawn with the same seed; the same colour does not mean the same object across panels)."""
    palette = np.vstack([[0.0, 0.0, 0.0], np.random.default_rng(seed).uniform(0.25, 1.0, (4095, 3))])
    return palette[np.where(labels > 0, (labels - 1) % 4095 + 1, 0)]


def plot_curves(rows: list[dict[str, float]], out: Path | str, loss_name: str, title: str | None = None) -> None:
    """Training and validation loss per epoch (`loss_name`: the run's real loss), and validation IoU and pixel
    error on a fixed 0-1 scale, as a PNG (`rows`: ``metrics.csv``). Every epoch is a visible marker, so a one-epoch
    run shows its points."""
    if not rows:
        return
    plt = pyplot()
    epochs = [int(r["epoch"]) for r in rows]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    ax1.plot(epochs, [r["train_loss"] for r in rows], "o-", label=f"training ({loss_name}, augmented tiles)")
    ax1.plot(epochs, [r["val_loss"] for r in rows], "s-", label=f"validation ({loss_name}, whole images)")
    ax1.set_xlabel("epoch")
    ax1.set_ylabel(f"loss ({loss_name})")
    ax1.legend(fontsize=8)
    ax2.plot(epochs, [r["val_iou"] for r in rows], "o-", label="validation IoU (foreground)")
    ax2.plot(epochs, [r["val_pixel_error"] for r in rows], "s-", label="validation pixel error (fraction wrong)")
    ax2.set_ylim(0, 1)
    ax2.set_xlabel("epoch")
    ax2.legend(fontsize=8)
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        if len(epochs) == 1:
            ax.set_xlim(epochs[0] - 1, epochs[0] + 1)
        ax.xaxis.get_major_locator().set_params(integer=True)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    save_figure(fig, out)


__all__ = ["object_colours", "plot_curves", "pyplot", "save_figure", "save_panels"]
