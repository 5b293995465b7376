"""The command-line entry points, one module each. Run them as ``python -m experiments.<name>`` from the repository,
``unet-repro <name>`` after ``pip install``, or ``python -m unet_repro <name>``."""
from __future__ import annotations

import importlib
import sys

# command name -> module of unet_repro.cli (the repository's shim: experiments/<name with _>.py)
COMMANDS = {
    "train": "train",
    "isbi": "isbi",
    "ph2": "ph2",
    "folder": "folder",
    "predict": "predict",
    "evaluate": "evaluate",
    "export": "export",
    "isbi-eval": "isbi_eval",
    "lr-range-test": "lr_range",
    "weightmap-demo": "weightmap_demo",
    "reproduce": "reproduce",
}


def main(argv: list[str] | None = None) -> object:
    """``unet-repro <command> [flags]``: dispatch to the command's own ``main``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        lines = [f"  {name:<15} python -m experiments.{name.replace('-', '_')}" for name in COMMANDS]
        text = "usage: unet-repro <command> [flags]   (unet-repro <command> --help for its flags)\n\ncommands " \
               "(the same as, from the repository):\n" + "\n".join(lines) + "\n"
        if argv and argv[0] not in ("-h", "--help"):
            sys.stderr.write(f"error: unknown command {argv[0]!r}; choose from {', '.join(COMMANDS)}\n")
            raise SystemExit(2)
        sys.stdout.write(text)
        return None
    module = importlib.import_module(f"{__name__}.{COMMANDS[argv[0]]}")
    return module.main(argv[1:], prog=f"unet-repro {argv[0]}")


def console() -> int:
    """The ``unet-repro`` console script: exit code 0 on success (errors exit through `run_main`)."""
    main()
    return 0
