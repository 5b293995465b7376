"""What every command-line entry point shares: one flag set, one way to turn flags into a `TrainConfig`, one
error handler, one provenance record, one way to load a trained model, and figures.

Every command is a module of `unet_repro.cli` with ``main(argv=None, prog=None)``; it runs as
``python -m experiments.<name>`` from the repository, ``unet-repro <name>`` after ``pip install``, or
``python -m unet_repro <name>``.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import subprocess
import sys
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, Callable, Sequence, TypeVar

import numpy as np
import torch
from torch import nn

from .. import __version__
from ..errors import DataError, UsageError, UserError
from ..losses import LOSSES
from ..models import MODELS, unet_widths
from ..tasks import DataInfo, DataOptions, Task, default_tile, find_data_root
from ..training import (Trained, TrainConfig, build_model, checkpoint_task, load_checkpoint, load_trained,
                        validate_config)

T = TypeVar("T")
PACKAGE_ROOT = Path(__file__).resolve().parents[2]


# -- errors ------------------------------------------------------------------------------------------------------

def help_with_default(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Every flag's help says its default: append ``(default: ...)``, ``(default: off)`` or ``(required)`` unless
    the text already says it (or names the presets' values)."""
    text = kwargs.get("help")
    if (not text or text == argparse.SUPPRESS or kwargs.get("action") in ("help", "version")
            or re.search(r"default|presets:|required", text)):
        return kwargs
    if kwargs.get("required"):
        text += " (required)"
    elif kwargs.get("action") in ("store_true", "store_const"):
        text += " (default: off)"
    else:
        default = kwargs.get("default")
        text += f" (default: {'none' if default is None else default})"
    return {**kwargs, "help": text}


class _Group(argparse._ArgumentGroup):
    def add_argument(self, *args: Any, **kwargs: Any) -> argparse.Action:
        return super().add_argument(*args, **help_with_default(kwargs))


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line (``error: <what>; see `<prog> --help```, exit code 2) and
    whose every flag's help says its default."""

    def add_argument(self, *args: Any, **kwargs: Any) -> argparse.Action:
        return super().add_argument(*args, **help_with_default(kwargs))

    def add_argument_group(self, *args: Any, **kwargs: Any) -> argparse._ArgumentGroup:
        group = _Group(self, *args, **kwargs)
        self._action_groups.append(group)
        return group

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"error: {message}; see `{self.prog} --help`\n")
        raise SystemExit(2)


def run_main(body: Callable[[], T]) -> T:
    """Run a command's body; a `UserError` ends it with ``error: <message>`` on stderr and its exit code (2 for bad
    usage, 1 for bad data), without a traceback. Anything else is a bug and keeps its traceback."""
    try:
        return body()
    except UserError as e:
        sys.stderr.write(f"error: {e}\n")
        raise SystemExit(e.exit_code) from None
    except KeyboardInterrupt:
        sys.stderr.write("interrupted; a training run continues from its last.pt with --resume\n")
        raise SystemExit(130) from None


def make_parser(prog: str | None, default_prog: str, doc: str | None) -> Parser:
    return Parser(prog=prog or default_prog, description=doc,
                  formatter_class=argparse.RawDescriptionHelpFormatter)


# -- the shared flags --------------------------------------------------------------------------------------------

def int_list(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated whole numbers, got {text!r}") from None


def name_list(text: str) -> list[str]:
    return [v.strip() for v in text.split(",") if v.strip()]


@dataclass(frozen=True)
class Flag:
    """A `TrainConfig` field as a command-line flag."""

    field: str
    help: str
    type: Callable[[str], Any] | None = None
    choices: Sequence[str] | None = None
    flag: str | None = None  # for switches that turn a default-on setting off (--no-augment)


# Every TrainConfig field a user may set, in the order of the help text, grouped.
TRAIN_FLAGS: dict[str, list[Flag]] = {
    "network": [
        Flag("model", "network", str, sorted(MODELS)),
        Flag("widths", "channels per level of the paper's U-Net, e.g. 16,32,64,128,256", int_list),
        Flag("base_width", "first-level channels of the other networks (deeper levels double)", int),
        Flag("dropout", "dropout probability at the end of the contracting path (paper's U-Net)", float),
        Flag("loss", "loss function", str, sorted(LOSSES)),
    ],
    "data and augmentation": [
        Flag("tile", "input tile side in pixels (572 in the paper; default: the tile rule of unet_repro.tasks)", int),
        Flag("w0", "weight-map border amplitude w0", float),
        Flag("sigma", "weight-map border width sigma in pixels", float),
        Flag("augment", "no data augmentation", flag="--no-augment"),
    ],
    "optimisation": [
        Flag("optimizer", "optimizer", str, ["sgd", "adam"]),
        Flag("lr", "learning rate", float),
        Flag("momentum", "SGD momentum", float),
        Flag("weight_decay", "weight decay", float),
        Flag("schedule", "learning-rate schedule over all optimizer steps", str, ["constant", "cosine"]),
        Flag("batch_size", "tiles per forward pass", int),
        Flag("accumulate", "forward passes per optimizer step (gradient accumulation)", int),
        Flag("epochs", "epochs", int),
        Flag("steps_per_epoch", "forward passes per epoch", int),
        Flag("patience", "early-stopping patience in epochs (0: off)", int),
        Flag("monitor", "validation metric that selects best.pt", str, ["loss", "iou"]),
        Flag("seed", "random seed (weights, tiles, augmentation, dropout)", int),
    ],
    "hardware": [
        Flag("device", "auto, cpu, cuda or cuda:N", str),
        Flag("workers", "data-loading worker processes", int),
        Flag("bf16", "train in float32 even where bf16 is native (CUDA; CPUs with AVX512-BF16/AMX)",
             flag="--no-bf16"),
        Flag("channels_last", "no channels-last memory format on CUDA", flag="--no-channels-last"),
    ],
}


def flag_name(field: str) -> str:
    return "--" + field.replace("_", "-")


def preset_values(task: Task, field: str) -> str:
    """``quick: 0.001, paper: 0.001`` for the help text."""
    def show(v: Any) -> str:
        if isinstance(v, (tuple, list)):
            return ",".join(map(str, v)) if v else "-"
        return "-" if v is None else str(v)
    return ", ".join(f"{name}: {show(getattr(cfg, field))}" for name, cfg in task.presets.items())


def add_train_flags(parser: argparse.ArgumentParser, task: Task, skip: Sequence[str] = ()) -> None:
    """The `TrainConfig` flags (all but `skip`), each defaulting to the preset's value, which its help shows."""
    for group_name, flags in TRAIN_FLAGS.items():
        group = parser.add_argument_group(group_name)
        for f in flags:
            if f.field in skip:
                continue
            values = preset_values(task, f.field)
            if f.flag:  # an off-switch
                values = ", ".join(f"{name}: {'on' if getattr(cfg, f.field) else 'off'}"
                                   for name, cfg in task.presets.items())
                group.add_argument(f.flag, dest=f.field, action="store_const", const=False, default=None,
                                   help=f"{f.help} (presets: {f.field.replace('_', ' ')} {values})")
            else:
                group.add_argument(flag_name(f.field), dest=f.field, type=f.type, choices=f.choices, default=None,
                                   metavar=None if f.choices else f.field.upper(),
                                   help=f"{f.help} (presets: {values})")


def add_data_flags(parser: argparse.ArgumentParser, task: Task) -> None:
    """``--data-root`` (tasks with a data folder) and the task's own data flags."""
    group = parser.add_argument_group("data")
    if task.data_dir is not None:
        group.add_argument("--data-root", type=Path, default=None, metavar="DIR",
                           help=f"the {task.title} folder (default: $UNET_REPRO_DATA/{task.data_dir}, else the "
                                f"repository's datasets/{task.data_dir})")
    defaults = DataOptions()
    helps = {
        "size": ("resize every image to SIZE x SIZE", int, f"default: {'256' if task.name == 'ph2' else 'native'}"),
        "split_seed": ("seed of the random train/validation/test split", int, f"default: {defaults.split_seed}"),
        "val_slices": ("the last N training slices are held out for validation", int,
                       f"default: {defaults.val_slices}"),
        "images": ("folder of images", Path, "required"),
        "masks": ("folder of masks with the images' file names (foreground = nonzero)", Path, "required"),
        "val_fraction": ("fraction of the images held out for validation", float,
                         f"default: {defaults.val_fraction}"),
        "test_fraction": ("fraction of the images held out for the final test", float,
                          f"default: {defaults.test_fraction}"),
    }
    for name in task.data_flags:
        text, kind, default = helps[name]
        group.add_argument(flag_name(name), dest=name, type=kind, default=None,
                           metavar="DIR" if kind is Path else None, help=f"{text} ({default})")


def data_options(args: argparse.Namespace) -> DataOptions:
    given = {f.name: getattr(args, f.name) for f in fields(DataOptions) if getattr(args, f.name, None) is not None}
    return DataOptions(**given)


def add_run_flags(parser: argparse.ArgumentParser, task: Task, resume: bool = True) -> None:
    group = parser.add_argument_group("run")
    group.add_argument("--preset", choices=sorted(task.presets), default=None,
                       help=f"starting configuration (default: {task.default_preset}); every flag above overrides it")
    group.add_argument("--out", type=Path, default=None, metavar="DIR",
                       help="run folder (default: runs/<task>-<preset>; with --resume: the checkpoint's folder)")
    group.add_argument("--overwrite", action="store_true",
                       help="replace the run already in --out, deleting its run files first (default: refuse)")
    if resume:
        group.add_argument("--resume", type=Path, default=None, metavar="CKPT",
                           help="continue the run of this last.pt with its own settings; flags given with it may "
                                "change only --epochs, --lr, --patience and the hardware flags")
    group.add_argument("--show-config", action="store_true",
                       help="print the effective configuration (preset + flags) as JSON and exit without running")


def explicit_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The `TrainConfig` fields given on the command line (every training flag defaults to None)."""
    return {f.name: getattr(args, f.name) for f in fields(TrainConfig)
            if f.name != "extra" and getattr(args, f.name, None) is not None}


def with_model(cfg: TrainConfig, model: str) -> TrainConfig:
    """`cfg` for network `model`, with the settings that do not apply to it made neutral (so that the run's config
    never claims a value it did not use): the paper's U-Net has widths and dropout; the others a base width
    (default: the U-Net's first width) and no dropout."""
    if model == "unet":
        return replace(cfg, model=model, base_width=None, widths=cfg.widths or unet_widths(cfg.base_width or 64, 4),
                       dropout=cfg.dropout if cfg.model == "unet" else 0.5)
    return replace(cfg, model=model, base_width=cfg.base_width or (cfg.widths[0] if cfg.widths else 64), widths=(),
                   dropout=0.0)


def build_config(task: Task, args: argparse.Namespace, info: DataInfo | None) -> TrainConfig:
    """The run's configuration: the preset (or, with ``--resume``, the checkpoint's own), then the flags given,
    then the tile rule (when ``--tile`` is not given) and the data's channels; checked with `validate_config`."""
    overrides = explicit_overrides(args)
    if getattr(args, "resume", None) is not None:
        ckpt = load_checkpoint(args.resume, task=task.name)
        saved = TrainConfig.from_dict(ckpt["config"])
        preset = saved.extra.get("preset")
        if args.preset is not None and preset is not None and args.preset != preset:
            raise UsageError(f"--preset {args.preset} differs from the resumed run's preset {preset}; leave out "
                             f"--preset to continue {args.resume}")
        cfg = replace(saved, **overrides)
    else:
        cfg = task.preset(args.preset or task.default_preset)
        if "model" in overrides:
            cfg = with_model(cfg, overrides["model"])
        cfg = replace(cfg, **overrides)
        if info is not None:
            cfg = replace(cfg, in_channels=info.shape[2])
            if "tile" not in overrides:
                validate_config(cfg, tile=False)  # the network must be buildable to choose its tile
                cfg = replace(cfg, tile=default_tile(build_model(cfg), info.shape))
    validate_config(cfg)
    return cfg


def show_config(cfg: TrainConfig, note: str | None = None) -> None:
    print(json.dumps({k: v for k, v in asdict(cfg).items() if k != "extra"}, indent=2, default=str))
    if note:
        print(note, file=sys.stderr)


def check_data(task: Task, args: argparse.Namespace) -> tuple[Path | None, DataInfo]:
    """The task's data folder (by `find_data_root`) and what its check found; raises the task's errors."""
    root = find_data_root(task, getattr(args, "data_root", None))
    return root, task.check(root, data_options(args))


# -- provenance --------------------------------------------------------------------------------------------------

def git_commit() -> str:
    """The checkout's commit (``-dirty`` with uncommitted changes), or the package version when not in a
    checkout (an installed package)."""
    if (PACKAGE_ROOT / ".git").exists():
        try:
            out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=PACKAGE_ROOT, capture_output=True,
                                 text=True, timeout=10)
            dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=PACKAGE_ROOT,
                                   capture_output=True, text=True, timeout=10).stdout.strip()
            if out.returncode == 0:
                return out.stdout.strip() + ("-dirty" if dirty else "")
        except (OSError, subprocess.SubprocessError):
            pass
    return f"unet_repro {__version__} (no git checkout)"


def cpu_name() -> str | None:
    try:
        with open("/proc/cpuinfo") as f:
            return next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), None)
    except OSError:
        return None


def hardware() -> str:
    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name()} (CUDA {torch.version.cuda}), torch {torch.__version__}"
    return f"CPU {cpu_name() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}"


def provenance(prog: str, argv: Sequence[str] | None) -> dict[str, str]:
    """What produced a result: the command as typed, the commit, the hardware and the date."""
    args = list(sys.argv[1:] if argv is None else argv)
    return {"command": " ".join([prog, *args]), "commit": git_commit(), "hardware": hardware(),
            "date": datetime.datetime.now().isoformat(timespec="seconds"),
            "python": platform.python_version()}


# -- trained models ----------------------------------------------------------------------------------------------

def check_image_channels(image: np.ndarray, trained: Trained, path: Path | str) -> None:
    """`DataError` when an image has other channels than the network was trained on."""
    channels = 1 if image.ndim == 2 else image.shape[2]
    if channels != trained.config.in_channels:
        kinds = {1: "gray", 3: "RGB"}
        raise DataError(f"{path} is {kinds.get(channels, f'{channels}-channel')} but the network of "
                        f"{trained.path} takes {kinds.get(trained.config.in_channels, '?')} images "
                        f"({trained.config.in_channels} channel(s)); convert the image or use a matching checkpoint")


def task_of(ckpt: dict[str, Any]) -> str | None:
    return checkpoint_task(ckpt)


# -- figures -----------------------------------------------------------------------------------------------------

def save_panels(path: Path, panels: list[tuple[str, np.ndarray]], probability: Sequence[str] = (),
                title: str | None = None) -> None:
    """Side-by-side PNG of 2-D images with titles (e.g. image | label | prediction). Panels named in `probability`
    are drawn on a fixed 0-1 scale with a labelled colour bar; others in gray (or as RGB)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4.6), squeeze=False)
    for ax, (name, a) in zip(axes[0], panels):
        if name in probability:
            im = ax.imshow(a, cmap="viridis", vmin=0.0, vmax=1.0)
            bar = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
            bar.set_label(name)
        else:
            ax.imshow(a, cmap=None if a.ndim == 3 else "gray")
        ax.set_title(name, fontsize=10)
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
