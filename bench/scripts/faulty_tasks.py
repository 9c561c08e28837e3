"""A task that kills its worker, for the fault rows of the tasks section (harness/sections/task_faults.py).

A worker started with `python -c "import faulty_tasks; from app.tasks.worker import main; main()"`
runs it; `uvicorn faulty_tasks:app` serves the service's API with it registered, so it can be
enqueued over HTTP like any other task.
"""

import importlib
import os
from typing import Any

from app.tasks.definitions import registry
from app.tasks.registry import TaskContext
from pydantic import BaseModel


class NoPayload(BaseModel):
    """Nothing."""


@registry.task("exit_process", NoPayload)
def exit_process(payload: NoPayload, context: TaskContext) -> None:
    """Kill the whole process at once, as a segfault or the OOM killer would."""
    os._exit(1)


def __getattr__(name: str) -> Any:
    """`faulty_tasks:app`: the service's own app, built once this module registered its task."""
    if name == "app":
        return importlib.import_module("app.main").app
    raise AttributeError(name)
