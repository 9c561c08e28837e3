"""The one attempt state machine every backend runs; backends only move and store what it says.

    queued ──claim──▶ running ──attempt──▶ succeeded
                         ▲                 retrying ──(backoff)──▶ claim again
                         │                 failed (dead-lettered where the backend keeps them)
    a claim whose attempts are used up ───▶ failed, without running

Attempts are counted when a task is claimed, before it runs, and stored with its `running`
status: an attempt whose process never came back (killed, out of memory, a segfault) still
counts, so a task that crashes its worker is stopped after TASK_MAX_ATTEMPTS claims instead of
crashing workers forever. An unknown task name or a payload that no longer validates (a worker
older or newer than the API) fails at once: no retry can fix it.
"""

import asyncio
import logging
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic_core import PydanticSerializationError, to_jsonable_python

from app.config import Settings
from app.tasks.definitions import registry
from app.tasks.origin import NO_ORIGIN, incoming
from app.tasks.registry import InvalidPayloadError, TaskContext, UnknownTaskError
from app.tasks.services import TaskServices
from app.tasks.status import FINAL_STATES, TaskStatus
{%- if cookiecutter.use_opentelemetry == "yes" %}
from app.tasks.tracing import traced_attempt
{%- endif %}

logger = logging.getLogger(__name__)

ERROR_LENGTH = 300  # characters of an exception's message kept in a task's `error`


class TimeLimitError(Exception):
    """An attempt ran longer than TASK_TIME_LIMIT and was cancelled."""


def describe(exc: BaseException) -> str:
    """The exception's type and the first line of its message, bounded; the log has the rest.

    Database errors carry the whole SQL statement and its parameters on later lines: they
    stay out of a status any client can read.
    """
    lines = str(exc).strip().splitlines()
    message = lines[0] if lines else ""
    if len(message) > ERROR_LENGTH:
        message = message[:ERROR_LENGTH] + "…"
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


@dataclass(frozen=True, slots=True)
class Claim:
    """What to do with a task just taken: run it, or only record its end (and acknowledge)."""

    kind: Literal["run", "finished", "exhausted"]
    status: TaskStatus  # `running` to run; the final status otherwise


class TaskAttempts:
    """Claim, run and judge the attempts of tasks; the caller stores each status it returns."""

    def __init__(
        self,
        settings: Settings,
        services: TaskServices,
        *,
        dead_letters: bool,
    ) -> None:
        self._settings = settings
        self._services = services
        self._dead_letters = dead_letters

    def claim(self, stored: TaskStatus | None, task_id: str, name: str) -> Claim:
        """The next step of a task just taken, from its stored status (None: none was found).

        `finished`: it already ended (its worker died before acknowledging): do not run it.
        `exhausted`: its attempts are used up by runs that never finished: it fails unrun.
        """
        status = stored or TaskStatus(id=task_id, name=name)
        if status.status in FINAL_STATES:
            return Claim("finished", status)
        if status.attempts >= self._settings.task_max_attempts:
            error = (
                f"attempt {status.attempts} never finished (its worker process died, ran out"
                " of memory or was stopped) and no attempts are left"
            )
            return Claim("exhausted", self.failed(status, error))
        return Claim("run", status.with_status("running", attempts=status.attempts + 1))

{% if cookiecutter.use_opentelemetry == "yes" %}    @traced_attempt
{% endif %}    async def attempt(
        self, running: TaskStatus, payload: dict[str, Any], origin: Mapping[str, str] = NO_ORIGIN
    ) -> TaskStatus:
        """Run one attempt within TASK_TIME_LIMIT; return it `succeeded`, `retrying` or `failed`.

        It runs under the request id `origin` carries (`app.tasks.origin`): the lines logged
        while it runs name the request that enqueued the task.
        """
        with incoming(origin):
            return await self._judge(running, payload)

    async def _judge(self, running: TaskStatus, payload: dict[str, Any]) -> TaskStatus:
        """Run the task once; where that leaves it."""
        try:
            result = await self._run(running, payload)
        except (UnknownTaskError, InvalidPayloadError) as exc:
            logger.error("task %s (%s) cannot run: %s", running.id, running.name, exc)
            return self.failed(running, describe(exc))
        except Exception as exc:
            logger.warning(
                "task %s (%s) attempt %d failed",
                running.id,
                running.name,
                running.attempts,
                exc_info=exc,
            )
            if running.attempts >= self._settings.task_max_attempts:
                return self.failed(running, describe(exc))
            return running.with_status("retrying", error=describe(exc))
        try:
            stored = to_jsonable_python(result)
        except PydanticSerializationError as exc:  # a bug in the task: no retry can fix it
            return self.failed(running, f"its result cannot be stored as JSON: {describe(exc)}")
        return running.with_status("succeeded", result=stored, error=None)

    async def _run(self, running: TaskStatus, payload: dict[str, Any]) -> Any:
        """The task function's result; cancelled (on the loop) once TASK_TIME_LIMIT has passed."""
        limit = self._settings.task_time_limit
        context = TaskContext(task_id=running.id, attempt=running.attempts, services=self._services)
        try:
            async with asyncio.timeout(limit) as deadline:
                return await registry.run(running.name, payload, context)
        except TimeoutError as exc:
            if deadline.expired():
                raise TimeLimitError(f"cancelled after TASK_TIME_LIMIT ({limit:g} s)") from exc
            raise

    def failed(self, status: TaskStatus, error: str) -> TaskStatus:
        """`status` ended `failed` with `error`, dead-lettered when this backend keeps them."""
        return status.with_status("failed", error=error, dead_lettered=self._dead_letters)

    def retry_delay(self, attempts: int) -> float:
        """Seconds before the next attempt: exponential backoff with ±20 % jitter."""
        delay: float = self._settings.task_retry_backoff * 2 ** (attempts - 1)
        return delay * random.uniform(0.8, 1.2)  # noqa: S311 - jitter, not cryptography
