"""Fixtures for the `celery` backend: real `celery -A app.tasks.celery_app` processes."""

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from kombu import Connection
from redis.asyncio import Redis

from app.config import Settings
from app.redis_urls import parse_redis_url
from tests.rabbitmq_server import RabbitMQServer, running_rabbitmq
from tests.tasks.helpers import settings_env

__all__ = [
    "broker",
    "broker_url",
    "celery_processes",
    "rabbitmq_server",
    "settings",
    "task_runner",
    "task_runners",
    "worker_output",
]

PROJECT_ROOT = Path(__file__).resolve().parents[3]
TEST_QUEUES = ("celery", "routed")  # the queues the tests publish to
CELERY = [sys.executable, "-m", "celery", "-A"]
SERVICE_APP = "app.tasks.celery_app"
# Mingle and gossip only exchange worker metadata; leaving them out saves a second per start.
QUIET = ["--without-mingle", "--without-gossip"]


@dataclass
class CeleryProcess:
    """One celery process (worker or beat), leading its own process group; its log lines."""

    process: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)

    @property
    def log(self) -> str:
        """Everything the process printed so far."""
        return "".join(self.lines)

    def wait_for(self, text: str, within: float = 30.0) -> None:
        """Block until a log line contains `text`; fail if the process exits first."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if any(text in line for line in self.lines):
                return
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"no {text!r} in the celery log within {within}s:\n{self.log}")

    def kill(self) -> None:
        """SIGKILL the whole process group (main process and pool children) and reap it."""
        with contextlib.suppress(ProcessLookupError):  # the group is gone already
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()


@dataclass
class CeleryProcesses:
    """Start workers and beats with the test's settings; every one is killed at teardown."""

    settings: Settings
    started: list[CeleryProcess] = field(default_factory=list)

    def spawn(
        self, *args: str, app: str = SERVICE_APP, overrides: dict[str, object] | None = None
    ) -> CeleryProcess:
        """Start `celery -A <app> <args>` with the settings plus `overrides`."""
        process = subprocess.Popen(
            [*CELERY, app, *args],
            cwd=PROJECT_ROOT,
            env=settings_env(self.settings.model_copy(update=overrides or {})),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        started = CeleryProcess(process)
        self.started.append(started)
        return started

    async def worker(
        self,
        concurrency: int = 2,
        *,
        app: str = SERVICE_APP,
        queues: str | None = None,
        include: str | None = None,
        **overrides: object,
    ) -> CeleryProcess:
        """Start a worker (of `app`, consuming `queues`, importing `include`) until it consumes."""
        options = [f"--concurrency={concurrency}", f"--hostname=worker{len(self.started) + 1}@%h"]
        options += [f"--queues={queues}"] if queues else []
        options += [f"--include={include}"] if include else []
        worker = self.spawn("worker", *options, *QUIET, app=app, overrides=overrides)
        await asyncio.to_thread(worker.wait_for, " ready.")
        return worker

    async def beat(self, **overrides: object) -> CeleryProcess:
        """Start a beat and wait until it schedules."""
        beat = self.spawn("beat", overrides=overrides)
        await asyncio.to_thread(beat.wait_for, "beat: Starting...")
        return beat

    def kill_all(self) -> None:
        """SIGKILL every process group: teardown needs no graceful stop (the tests that do wait)."""
        for started in self.started:
            started.kill()


async def held_by_kombu(redis_url: str, queue: str = "celery") -> int:
    """Messages kombu's Redis transport holds: waiting in `queue` or delivered, unacked."""
    async with Redis.from_url(redis_url) as redis:
        return int(await redis.llen(queue)) + int(await redis.hlen("unacked"))


async def until_acknowledged(redis_url: str, within: float = 30.0) -> None:
    """Wait until kombu holds no message: every one was acknowledged (or dropped)."""
    deadline = asyncio.get_running_loop().time() + within
    while await held_by_kombu(redis_url):
        assert asyncio.get_running_loop().time() < deadline, "a message was never acknowledged"
        await asyncio.sleep(0.05)


@pytest.fixture(scope="session")
def rabbitmq_server() -> Iterator[RabbitMQServer | str]:
    """A RabbitMQ broker for the whole run: `TEST_RABBITMQ_URL`, or a node we start."""
    external = os.environ.get("TEST_RABBITMQ_URL")
    if external:
        yield external
        return
    with running_rabbitmq() as server:
        yield server


@pytest.fixture
def broker(request: pytest.FixtureRequest, redis_server: str) -> str:
    """The broker of the test: `redis` unless parametrized (indirectly) with `rabbitmq`, or
    the suite's Redis is a cluster (`TEST_REDIS_URL`), which kombu cannot use: `rabbitmq`."""
    on_a_cluster = parse_redis_url(redis_server).topology == "cluster"
    return str(getattr(request, "param", "rabbitmq" if on_a_cluster else "redis"))


@pytest.fixture
def broker_url(broker: str, request: pytest.FixtureRequest) -> str | None:
    """CELERY_BROKER_URL for the test: None (the status store's Redis) or an empty RabbitMQ."""
    if broker == "redis":
        return None
    server: RabbitMQServer | str = request.getfixturevalue("rabbitmq_server")
    url = server if isinstance(server, str) else server.url
    with Connection(url) as connection:  # no message of an earlier test may be delivered
        channel: Any = connection.default_channel
        for queue in TEST_QUEUES:
            channel.queue_delete(queue)
    return url


@pytest.fixture
def settings(settings: Settings, redis_url: str, broker_url: str | None) -> Settings:
    """The test's broker, with short timeouts so that failure paths run fast."""
    return settings.model_copy(
        update={
            "redis_url": redis_url,
            "celery_broker_url": broker_url,
            "task_visibility_timeout": 2,
            "task_retry_backoff": 1.0,  # Celery's smallest backoff: 0-1 s, then 0-2 s
            "task_shutdown_timeout": 1.0,
            "task_heartbeat_interval": 3600,
            "task_concurrency": 2,
            "rate_limit_enabled": False,  # floods of enqueues: tests/middleware tests limits
        }
    )


@pytest.fixture
async def celery_processes(settings: Settings) -> AsyncIterator[CeleryProcesses]:
    """A factory of celery workers and beats, all killed at teardown."""
    processes = CeleryProcesses(settings)
    try:
        yield processes
    finally:
        processes.kill_all()


@pytest.fixture
async def task_runner(celery_processes: CeleryProcesses) -> None:
    """One running worker."""
    await celery_processes.worker()


@pytest.fixture
async def task_runners(celery_processes: CeleryProcesses) -> None:
    """Two running workers (each with its pool processes)."""
    await celery_processes.worker()
    await celery_processes.worker()


@pytest.fixture
async def worker_output(celery_processes: CeleryProcesses) -> Callable[[], str]:
    """One running worker; what it has printed so far (its log lines)."""
    worker = await celery_processes.worker()
    return lambda: worker.log
