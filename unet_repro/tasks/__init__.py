"""Tasks: one record per dataset (`Task`) and their registry. Another dataset is one more entry in `TASKS`."""
from .base import DataInfo, DataOptions, Images, Splits, Task, find_data_root, missing_data
from .folder import TASK as FOLDER
from .isbi import TASK as ISBI
from .ph2 import TASK as PH2

TASKS: dict[str, Task] = {task.name: task for task in (ISBI, PH2, FOLDER)}


def get_task(name: str) -> Task:
    from ..errors import UsageError
    if name not in TASKS:
        raise UsageError(f"unknown task {name!r}; known tasks: {', '.join(TASKS)}")
    return TASKS[name]


__all__ = ["DataInfo", "DataOptions", "FOLDER", "ISBI", "Images", "PH2", "Splits", "TASKS", "Task", "find_data_root",
           "get_task", "missing_data"]
