"""The errors a user can cause, one family for the whole library.

Every mistake a user can make (a bad flag or setting, data that cannot be read or is not what it should be, a
checkpoint that is not one, a run folder that holds another run, a diverging loss) raises a `UserError` whose message
says what is wrong, which file or setting, and what to do. The command-line entry points catch `UserError` once
(`unet_repro.cli.common.run_main`) and print ``error: <message>`` without a traceback; anything else is a bug and keeps
its traceback.

Each class also derives from the built-in exception that library callers would expect (``ValueError``,
``FileNotFoundError``), so ``except ValueError`` keeps working.
"""
from __future__ import annotations


class UserError(Exception):
    """A mistake of the user's, not a bug. ``exit_code``: 2 for bad usage (flags, settings), 1 for bad input."""

    exit_code = 1


class UsageError(UserError, ValueError):
    """A flag or setting that cannot work (exit code 2)."""

    exit_code = 2


class ConfigError(UsageError):
    """A `TrainConfig` value out of range or not valid for the model; names the setting and its flag."""

    def __init__(self, key: str, problem: str, fix: str | None = None) -> None:
        self.key = key
        flag = "--" + key.replace("_", "-")
        super().__init__(f"{key} ({flag}) {problem}" + (f"; {fix}" if fix else ""))


class RunFolderError(UsageError):
    """A run would overwrite, or mix with, another run's folder."""


class ConfigMismatchError(UsageError):
    """A resumed run was asked for settings that its checkpoint cannot continue with (another network...)."""


class DataError(UserError, ValueError):
    """Data that cannot be read or is not what the task expects (exit code 1); names the file."""


class DataNotFoundError(DataError, FileNotFoundError):
    """Data that is not where it was looked for; says where it was expected and how to get it."""


class CheckpointError(UserError, ValueError):
    """A file that is not a unet_repro checkpoint, or one that does not fit what was asked of it."""


class DivergedError(UserError, RuntimeError):
    """The training loss became NaN or infinite; the message names the last good checkpoint."""


__all__ = ["CheckpointError", "ConfigError", "ConfigMismatchError", "DataError", "DataNotFoundError", "DivergedError", "RunFolderError",
           "UsageError", "UserError"]
