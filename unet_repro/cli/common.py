"""What every command-line entry point shares: one flag set, one way to turn flags into a `TrainConfig` and a
`unet_repro.runs.RunPlan`, and one error handler. Parsing and wiring only: what a run does lives in
`unet_repro.runs` and `unet_repro.training`.

Every command is a module of `unet_repro.cli` with ``main(argv=None, prog=None)``; it runs as
``python -m experiments.<name>`` from the repository, ``unet-repro <name>`` after ``pip install``, or
``python -m unet_repro <name>``.
"""
from __future__ import annotations

import argparse
import errno
import json
import os
import re
import sys
import time
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, Callable, Sequence, TypeVar

import torch

from ..errors import ConfigError, UsageError, UserError
from ..geometry import training_tile
from ..losses import LOSSES
from ..models import NETWORKS, unet_widths
from ..provenance import display_path, provenance
from ..runs import RunPlan
from ..tasks import DataInfo, DataOptions, Task, find_data_root
from ..training import Resume, TrainConfig, check_run_dir, is_finished, neutral_settings, validate_config
from ..training.init_from import StartingWeights

T = TypeVar("T")


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


# What a user's files are like after any failure: every file the package writes is replaced atomically.
KEPT = ("files written before are intact (every file is replaced atomically); a training run continues from its "
        "last.pt with --resume")


def run_main(body: Callable[[], T]) -> T:
    """Run a command's body. A `UserError` ends it with ``error: <message>`` on stderr and its exit code (2 for bad
    usage, 1 for bad data); so do a full disk, a file that cannot be written and memory that ran out (exit code 1,
    saying what ran out and what was kept), without a traceback. Anything else is a bug and keeps its traceback."""
    try:
        return body()
    except UserError as e:
        return _fail(str(e), e.exit_code)
    except KeyboardInterrupt:
        sys.stderr.write("interrupted; a training run continues from its last.pt with --resume\n")
        raise SystemExit(130) from None
    except OSError as e:
        name = e.filename or "a file"
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            return _fail(f"the disk is full (writing {name}); free space and run the command again; {KEPT}", 1)
        if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            return _fail(f"{name}: {e.strerror}; check its permissions (or, for an output, choose another --out); "
                         f"{KEPT}", 1)
        if e.errno in (errno.ENOTDIR, errno.EEXIST, errno.EISDIR):
            return _fail(f"{name}: {e.strerror}: a file stands where a folder is needed, or a folder where a file "
                         f"is; choose another --out (or move what is in the way)", 2)
        raise
    except (MemoryError, torch.OutOfMemoryError) as e:
        where = "GPU memory" if isinstance(e, torch.OutOfMemoryError) else "memory (RAM)"
        return _fail(f"out of {where}; use a smaller --batch-size, --tile or network, or fewer --workers; {KEPT}", 1)


def _fail(message: str, code: int) -> Any:
    sys.stderr.write(f"error: {message}\n")
    raise SystemExit(code) from None


def make_parser(prog: str | None, default_prog: str, doc: str | None) -> Parser:
    return Parser(prog=prog or default_prog, description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)


# -- the shared flags --------------------------------------------------------------------------------------------

def int_list(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated whole numbers, got {text!r}") from None


def name_list(text: str) -> list[str]:
    return [v.strip() for v in text.split(",") if v.strip()]


def seed_list(text: str) -> list[int]:
    try:
        seeds = [int(v) for v in name_list(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated whole numbers, got {text!r}") from None
    if not seeds or any(not 0 <= s < 2**32 for s in seeds):
        raise argparse.ArgumentTypeError(f"expected seeds from 0 to 2**32 - 1, got {text!r}")
    return seeds


def minutes(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of minutes, got {text!r}") from None
    if not 0 < value < 1e7:
        raise argparse.ArgumentTypeError(f"must be a number of minutes > 0, got {text}")
    return value


@dataclass(frozen=True)
class Flag:
    """A `TrainConfig` field as a command-line flag."""

    field: str
    help: str
    type: Callable[[str], Any] | None = None
    choices: Sequence[str] | Callable[[], Sequence[str]] | None = None  # a callable: read when a parser is built
    flag: str | None = None  # for switches that turn a default-on setting off (--no-augment)


# Every TrainConfig field a user may set, in the order of the help text, grouped.
TRAIN_FLAGS: dict[str, list[Flag]] = {
    "network": [
        Flag("model", "network", str, lambda: sorted(NETWORKS)),
        Flag("widths", "channels per level of the paper's U-Net, e.g. 16,32,64,128,256", int_list),
        Flag("base_width", "first-level channels, deeper levels double (the paper's U-Net: widths b,2b,4b,8b,16b)",
             int),
        Flag("dropout", "dropout probability at the end of the contracting path (paper's U-Net)", float),
        Flag("classes", "K >= 2: K classes, K output channels and a soft-max (default: one foreground class, one "
                        "output channel and a sigmoid)", int),
        Flag("loss", "loss function", str, lambda: sorted(LOSSES)),
    ],
    "data and augmentation": [
        Flag("tile", "input tile side in pixels (572 in the paper; default: the tile rule of unet_repro.geometry)",
             int),
        Flag("w0", "weight-map border amplitude w0", float),
        Flag("sigma", "weight-map border width sigma in pixels", float),
        Flag("normalization", "how gray values become the network's input: range (the dtype's range, e.g. /255) or "
                              "percentile (per image, 1st to 99.8th percentile to 0..1)", str, ["range", "percentile"]),
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
    "hardware and saving": [
        Flag("device", "auto, cpu, cuda or cuda:N", str),
        Flag("workers", "data-loading worker processes (default: chosen from the machine: 0 on a CPU, up to 8 on a "
                        "GPU)", int),
        Flag("bf16", "train and evaluate in float32 even where bf16 is native (CUDA; CPUs with AVX512-BF16/AMX)",
             flag="--no-bf16"),
        Flag("channels_last", "no channels-last memory format on CUDA", flag="--no-channels-last"),
        Flag("checkpoint_every", "seconds between checkpoints (also at the end and on an interrupt; 0: every "
                                 "epoch)", float),
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
            if f.flag:  # an off-switch
                values = ", ".join(f"{name}: {'on' if getattr(cfg, f.field) else 'off'}"
                                   for name, cfg in task.presets.items())
                group.add_argument(f.flag, dest=f.field, action="store_const", const=False, default=None,
                                   help=f"{f.help} (presets: {f.field.replace('_', ' ')} {values})")
            elif f.field in ("tile", "workers", "classes"):  # no preset sets these: the data or the machine decide
                group.add_argument(flag_name(f.field), dest=f.field, type=f.type, default=None,
                                   metavar=f.field.upper(), help=f.help if "default" in f.help else
                                   f"{f.help} (default: decided from the data)")
            else:
                choices = f.choices() if callable(f.choices) else f.choices  # networks registered since import too
                group.add_argument(flag_name(f.field), dest=f.field, type=f.type, choices=choices, default=None,
                                   metavar=None if choices else f.field.upper(),
                                   help=f"{f.help} (presets: {preset_values(task, f.field)})")


DATA_FLAG_HELP = {
    "size": ("resize every image to SIZE x SIZE", int, None),
    "split_seed": ("seed of the random train/validation/test split", int, None),
    "val_slices": ("the last N training slices are held out for validation", int, None),
    "images": ("folder of images (PNG, TIFF incl. multi-page stacks, BMP, JPEG; 8/16-bit, float)", Path, None),
    "masks": ("folder of masks with the images' file names", Path, None),
    "mask_kind": ("what the masks are: binary (foreground = nonzero), instances (each value one object) or "
                  "classes (0..K-1); default: decided from the masks (docs/own-data.md)", str,
                  ["binary", "instances", "classes"]),
    "border_width": ("instance labels: pixels of background drawn between touching objects (1 or 2)", int, None),
    "val_fraction": ("fraction of the images held out for validation", float, None),
    "test_fraction": ("fraction of the images held out for the final test", float, None),
}


def add_data_flags(parser: argparse.ArgumentParser, task: Task) -> None:
    """``--data-root`` (tasks with a data folder) and the task's own data flags."""
    group = parser.add_argument_group("data")
    if task.data_dir is not None:
        group.add_argument("--data-root", type=Path, default=None, metavar="DIR",
                           help=f"the {task.title} folder (default: $UNET_REPRO_DATA/{task.data_dir}, else the "
                                f"repository's datasets/{task.data_dir})")
    defaults = DataOptions()
    for name in task.data_flags:
        text, kind, choices = DATA_FLAG_HELP[name]
        default = task.data_defaults.get(name, getattr(defaults, name, None))
        shown = ("required" if name in ("images", "masks") else "" if "default:" in text else
                 f"default: {'native' if default is None else default}")
        group.add_argument(flag_name(name), dest=name, type=kind, default=None, choices=choices,
                           metavar="DIR" if kind is Path else None, help=f"{text} ({shown})" if shown else text)


def data_options(args: argparse.Namespace, task: Task | None = None) -> DataOptions:
    """The data flags given, else the task's own defaults (`Task.data_defaults`), checked (`UsageError` naming the
    flag)."""
    given = {f.name: getattr(args, f.name) for f in fields(DataOptions) if getattr(args, f.name, None) is not None}
    given = {**(dict(task.data_defaults) if task is not None else {}), **given}
    size, seed = given.get("size"), given.get("split_seed")
    if size is not None and not 1 <= size <= 65536:
        raise UsageError(f"--size must be a side in pixels from 1 to 65536, got {size}")
    if seed is not None and not 0 <= seed < 2**32:
        raise UsageError(f"--split-seed must be a whole number from 0 to 2**32 - 1, got {seed}")
    for key in ("val_fraction", "test_fraction"):
        value = given.get(key)
        low = 0 if key == "test_fraction" else None
        if value is not None and not ((low == 0 and value == 0) or 0 < value < 1):
            raise UsageError(f"--{key.replace('_', '-')} must be a fraction above 0 and below 1"
                             + (" (or 0: no test images)" if low == 0 else " (at least one validation image is "
                                                                             "held out)") + f", got {value}")
    return DataOptions(**given)


def add_run_flags(parser: argparse.ArgumentParser, task: Task, resume: bool = True) -> None:
    group = parser.add_argument_group("run")
    group.add_argument("--preset", choices=sorted(task.presets), default=None,
                       help=f"starting configuration (default: {task.default_preset}); every flag above overrides it")
    group.add_argument("--out", type=Path, default=None, metavar="DIR",
                       help="run folder (default: runs/<task>-<preset>; with --resume: the checkpoint's folder)")
    group.add_argument("--overwrite", action="store_true",
                       help="replace the run already in --out, deleting its run files first, once the new run has "
                            "passed its checks (default: refuse)")
    if resume:
        group.add_argument("--resume", type=Path, default=None, metavar="CKPT",
                           help="continue the run of this last.pt with its own settings; flags given with it may "
                                "change only --epochs, --lr, --patience and the hardware flags")
    group.add_argument("--init-from", type=Path, default=None, metavar="CKPT",
                       help="start a new run from the weights of this checkpoint (fine-tuning: its own data, epochs, "
                            "learning rate and folder; the network must be the checkpoint's)")
    group.add_argument("--reinit-head", action="store_true",
                       help="with --init-from: a checkpoint with another number of classes gives all weights but the "
                            "head's, which starts afresh")
    group.add_argument("--time-limit", type=minutes, default=None, metavar="MINUTES",
                       help="stop cleanly so that training and scoring end within MINUTES (checkpoint saved, best "
                            "epoch scored, 'stopped: time limit' recorded; --resume continues)")
    group.add_argument("--show-config", action="store_true",
                       help="print the effective configuration (preset + flags) as JSON and exit without running")


def explicit_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The `TrainConfig` fields given on the command line (every training flag defaults to None)."""
    return {f.name: getattr(args, f.name) for f in fields(TrainConfig)
            if f.name != "extra" and getattr(args, f.name, None) is not None}


# -- from flags to a configuration and a plan --------------------------------------------------------------------

def with_model(cfg: TrainConfig, model: str) -> TrainConfig:
    """`cfg` for network `model`, with the settings that do not apply to it made neutral (so that the run's config
    never claims a value it did not use) and those it takes carried over or set to the network's own defaults."""
    first = cfg.base_width or (cfg.widths[0] if cfg.widths else 64)
    carried = {"widths": cfg.widths or unet_widths(first, 4), "base_width": first,
               "dropout": cfg.dropout if cfg.model == model else TrainConfig.dropout,
               "padding": cfg.padding if cfg.model == model else TrainConfig.padding}
    switched = replace(cfg, model=model, **{k: carried[k] for k in NETWORKS[model].settings})
    return replace(switched, **neutral_settings(switched))


def with_base_width(cfg: TrainConfig) -> TrainConfig:
    """A base width given to a network that takes widths: the widths it means (b, 2b, ... over as many levels)."""
    if cfg.base_width is None or "widths" not in NETWORKS[cfg.model].settings:
        return cfg
    depth = max(1, len(cfg.widths) - 1) if cfg.widths else 4
    return replace(cfg, widths=unet_widths(cfg.base_width, depth), base_width=None)


def build_config(task: Task, args: argparse.Namespace, info: DataInfo | None,
                 resume: Resume | None = None) -> TrainConfig:
    """The run's configuration: the preset (or, resuming, the checkpoint's own, whose network may not change), then
    the flags given, then the data's channels and the tile rule (when ``--tile`` is not given); checked with
    `validate_config`."""
    overrides = explicit_overrides(args)
    if resume is not None:
        saved = resume.config
        preset = saved.extra.get("preset")
        if getattr(args, "preset", None) is not None and preset is not None and args.preset != preset:
            raise UsageError(f"--preset {args.preset} differs from the resumed run's preset {preset}; leave out "
                             f"--preset to continue {resume.path}")
        cfg = replace(saved, **overrides)
        resume.changes(cfg)  # refuses what a resume cannot change, the network first
        validate_config(cfg)
        return cfg
    cfg = task.preset(getattr(args, "preset", None) or task.default_preset)
    if "model" in overrides:
        cfg = with_model(cfg, overrides["model"])
    cfg = with_base_width(replace(cfg, **overrides))
    cfg = replace(cfg, tile=overrides.get("tile"))
    if info is not None:  # what the data decided: its channels, what its masks are, and K for class masks
        cfg = replace(cfg, in_channels=info.shape[2], mask_kind=info.mask_kind)
        if info.mask_kind == "classes":
            cfg = replace(cfg, classes=info.classes)
    validate_config(cfg)
    if cfg.tile is None and info is not None:
        try:
            cfg = replace(cfg, tile=training_tile(cfg.geometry(), info.shape).input)
        except ValueError as e:
            raise ConfigError("tile", f"cannot be chosen for this network: {e}", "pass --tile, or use fewer levels "
                                                                               "(--widths)") from None
    return cfg


def show_config(cfg: TrainConfig, note: str | None = None) -> None:
    print(json.dumps({k: v for k, v in asdict(cfg).items() if k != "extra"}, indent=2, default=str))
    if note:
        print(note, file=sys.stderr)


def check_data(task: Task, args: argparse.Namespace) -> tuple[Path | None, DataInfo]:
    """The task's data folder (by `find_data_root`) and what its check found; raises the task's errors."""
    root = find_data_root(task, getattr(args, "data_root", None))
    return root, task.check(root, data_options(args, task))


def deadline(args: argparse.Namespace, started: float | None = None) -> float | None:
    """``--time-limit`` as a ``time.monotonic()`` deadline counted from `started` (default: now)."""
    limit = getattr(args, "time_limit", None)
    return None if limit is None else (started if started is not None else time.monotonic()) + 60 * limit


@dataclass
class Configured:
    """A run's checked inputs: its checkpoint (when resuming), its data folder and what the data check found, its
    configuration with the notes of where it came from, and the weights it starts from (fine-tuning)."""

    resume: Resume | None
    root: Path | None
    info: DataInfo
    cfg: TrainConfig
    init: StartingWeights | None = None


def configure(task: Task, args: argparse.Namespace, prog: str, argv: list[str] | None,
              resume: Path | None = None) -> Configured | None:
    """Check the checkpoint (read once), the data and the configuration; None after ``--show-config``."""
    resume_path = resume if resume is not None else getattr(args, "resume", None)
    if resume_path is not None and getattr(args, "init_from", None) is not None:
        raise UsageError("--init-from starts a new run from a checkpoint's weights; --resume continues a run: give "
                         "one of them")
    if getattr(args, "reinit_head", False) and getattr(args, "init_from", None) is None:
        raise UsageError("--reinit-head applies to --init-from CKPT only")
    loaded = Resume.load(resume_path, task=task.name) if resume_path is not None else None
    if loaded is not None:
        args = with_saved_data_flags(task, args, loaded)
    # The intensity rule is decided before the data is read (reading applies it): the flag, else the run's own.
    rule = getattr(args, "normalization", None) or (loaded.config if loaded is not None else
                                                     task.preset(getattr(args, "preset", None) or
                                                                 task.default_preset)).normalization
    args = argparse.Namespace(**{**vars(args), "normalization": rule})
    root, info = check_data(task, args)
    cfg = build_config(task, args, info, loaded)
    if getattr(args, "show_config", False):
        show_config(cfg)
        return None
    for line in info.lines:  # what was read: images, sizes, channels, bit depth, mask kind, classes or objects
        print(line)
    init = None
    if getattr(args, "init_from", None) is not None:
        init = StartingWeights.load(args.init_from, cfg, args.reinit_head)
    record = provenance(prog, argv)
    if loaded is not None:
        cfg = replace(cfg, extra={**cfg.extra, "resumed": [*cfg.extra.get("resumed", []), record]})
    else:
        data = {k: display_path(v) if isinstance(v, Path) else v for k, v in asdict(data_options(args, task)).items()
                if k in task.data_flags}
        cfg = replace(cfg, extra={"task": task.name, "preset": getattr(args, "preset", None) or task.default_preset,
                                  "data_root": display_path(root), **data, **record,
                                  **({"reading": list(info.lines)} if info.lines else {}),
                                  **({"init_from": {**init.source, "path": display_path(init.path)}} if init else {})})
    return Configured(loaded, root, info, cfg, init)


def plan_run(task: Task, args: argparse.Namespace, prog: str, argv: list[str] | None, out: Path | None = None,
             resume: Path | None = None) -> RunPlan | None:
    """`configure`, then decide the run folder and check it (not yet touched); None after ``--show-config``.

    The folder: ``--out``, else the resumed checkpoint's own folder, else ``runs/<task>-<preset>``. A finished run
    (trained to its stop rule and scored) is refused with what to do; a new run refuses a folder holding another
    run or other files unless ``--overwrite`` (`unet_repro.training.run_dir.check_run_dir`).
    """
    done = configure(task, args, prog, argv, resume)
    if done is None:
        return None
    loaded, cfg = done.resume, done.cfg
    out = Path(out or getattr(args, "out", None) or (loaded.path.parent if loaded else Path("runs") /
                                                      f"{task.name}-{cfg.extra.get('preset')}"))
    reason = loaded.finished_reason(cfg) if loaded is not None else None
    if reason and is_finished(out):
        raise UsageError(f"the run in {out} is finished ({reason}; best epoch {loaded.state.get('best_epoch')}); to "
                         f"train it longer, resume with a larger --epochs (it has {cfg.epochs})"
                         + (" or --patience" if cfg.patience else ""))
    check_run_dir(out, loaded.path if loaded else None, getattr(args, "overwrite", False))
    options = data_options(with_saved_data_flags(task, args, loaded) if loaded else args, task)
    return RunPlan(task, cfg, out, loaded, done.root, options, done.info, getattr(args, "overwrite", False),
                   getattr(args, "tta", False), deadline(args), done.init)


def _same(given: Any, old: Any) -> bool:
    if isinstance(old, Path):
        return Path(given).resolve() == old.resolve()
    return given == old


def with_saved_data_flags(task: Task, args: argparse.Namespace, resume: Resume) -> argparse.Namespace:
    """A resumed run reads its data as it was first read: data flags not given now come from the checkpoint."""
    extra = resume.config.extra
    saved = {}
    for key in (*task.data_flags, "data_root"):
        given, old = getattr(args, key, None), extra.get(key)
        if old is None:
            continue
        old = Path(os.path.expandvars(old)) if key in ("images", "masks", "data_root") else old
        if given is None:
            saved[key] = old
        elif key != "data_root" and not _same(given, old):  # the data may move, but not change
            raise UsageError(f"--{key.replace('_', '-')} {given} differs from the resumed run's {old}; a resumed run "
                             f"reads its data as it was first read: leave the flag out")
    if "data_root" in saved and not saved["data_root"].exists():  # moved since: look for it as a new run would
        del saved["data_root"]
    return argparse.Namespace(**{**vars(args), **saved})


__all__ = ["Flag", "Parser", "TRAIN_FLAGS", "add_data_flags", "add_run_flags", "add_train_flags", "build_config",
           "check_data", "configure", "data_options", "deadline", "explicit_overrides", "make_parser", "name_list", "plan_run",
           "run_main", "show_config", "with_model"]
