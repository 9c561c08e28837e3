"""Tasks that misbehave as real ones do, registered only for the fault-injection tests.

Importing this module adds them to the registry: the tests import it to enqueue them, and
their workers import it too (redis_queue: before `app.tasks.worker.main`, see
`FAULTY_WORKER`; Celery: `celery -A app.tasks.celery_app worker --include <this module>`).
"""

import os
import signal
import time
from typing import Literal

from pydantic import BaseModel, Field

from app.tasks.definitions import registry
from app.tasks.registry import TaskContext


class ExitPayload(BaseModel):
    """The status the process exits with."""

    code: int = Field(default=1, ge=0, le=255)


class SignalPayload(BaseModel):
    """The signal the process sends itself."""

    signal: Literal["SIGKILL", "SIGSEGV"]


class NoPayload(BaseModel):
    """Nothing."""


class BlockPayload(BaseModel):
    """How long to block the thread."""

    seconds: float = Field(ge=0, le=600)


@registry.task("exit_process", ExitPayload)
def exit_process(payload: ExitPayload, context: TaskContext) -> None:
    """Kill the worker process at once, as a segfault or the OOM killer would."""
    os._exit(payload.code)


@registry.task("kill_process", SignalPayload)
def kill_process(payload: SignalPayload, context: TaskContext) -> None:
    """Kill the worker process with a signal: SIGKILL as the OOM killer, SIGSEGV as a segfault."""
    os.kill(os.getpid(), signal.Signals[payload.signal])


@registry.task("block_thread", BlockPayload)
def block_thread(payload: BlockPayload, context: TaskContext) -> float:
    """Block a thread (a sync task that hangs): the time limit cannot stop it."""
    time.sleep(payload.seconds)
    return payload.seconds


@registry.task("block_loop", BlockPayload)
async def block_loop(payload: BlockPayload, context: TaskContext) -> float:
    """Block the event loop (an `async` task that never awaits): no cancellation reaches it."""
    time.sleep(payload.seconds)  # noqa: ASYNC251 - the fault this task injects
    return payload.seconds


@registry.task("unstorable_result", NoPayload)
async def unstorable_result(payload: NoPayload, context: TaskContext) -> object:
    """Return what no JSON can hold (a bug in a task)."""
    return object()
