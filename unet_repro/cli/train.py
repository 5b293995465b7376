"""Train any registered task (`unet_repro.tasks.TASKS`) with the shared flags, then score the best checkpoint.

    python -m experiments.train --task isbi --preset quick
    python -m experiments.train --task folder --images my/images --masks my/masks
    python -m experiments.train --task glas --data-root ~/data/glas     # a task registered by your own code

The task's own command (`experiments.isbi`, `experiments.folder`, `experiments.ph2`) offers more (the ISBI
cross-validation and challenge report, the PH2 grid); this one is what every task gets from its `TASKS` entry alone:
its presets, data flags and checks, a run folder, resuming, fine-tuning, time limits and scoring
(`unet_repro.runs.run_and_score`). A task registered from a script: register it, then call ``main([...])``.
"""
from __future__ import annotations

import argparse

from ..runs import run_and_score
from ..tasks import TASKS, Task, get_task
from .common import Parser, add_data_flags, add_run_flags, add_train_flags, make_parser, plan_run, run_main

PROG = "python -m experiments.train"


def add_task_flags(parser: argparse.ArgumentParser, task: Task) -> argparse.ArgumentParser:
    """Every flag a run of `task` takes: the shared training flags, the task's data flags, the run flags, --tta."""
    add_train_flags(parser, task)
    add_data_flags(parser, task)
    add_run_flags(parser, task)
    parser.add_argument("--tta", action="store_true",
                        help="score with the average over the 8 symmetries of the square")
    return parser


def build_parser(argv: list[str] | None, prog: str | None = None) -> argparse.ArgumentParser:
    # The flags depend on the task (its presets and data flags): read --task first.
    pre = Parser(prog=prog or PROG, add_help=False)
    pre.add_argument("--task", choices=sorted(TASKS), default="isbi")
    known, _ = pre.parse_known_args(argv)
    parser = make_parser(prog, PROG, __doc__)
    parser.add_argument("--task", choices=sorted(TASKS), default="isbi",
                        help="the dataset and how to train on it (default: isbi)")
    return add_task_flags(parser, get_task(known.task))


def train_task(task: Task, args: argparse.Namespace, prog: str, argv: list[str] | None) -> dict:
    """Plan (every check first), load the data, train and score: a run of `task`."""
    plan = plan_run(task, args, prog, argv)
    if plan is None:
        return {}
    return run_and_score(plan, task.load(plan.root, plan.options))


def run(args: argparse.Namespace, prog: str, argv: list[str] | None) -> dict:
    return train_task(get_task(args.task), args, prog, argv)


def main(argv: list[str] | None = None, prog: str | None = None) -> dict:
    parser = build_parser(argv, prog)
    return run_main(lambda: run(parser.parse_args(argv), parser.prog, argv))


__all__ = ["add_task_flags", "build_parser", "main", "run", "train_task"]
