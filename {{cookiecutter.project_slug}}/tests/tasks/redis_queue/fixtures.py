"""Fixtures for the `redis_queue` backend: real `python -m app.tasks.worker` processes."""

import asyncio
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from app.config import Settings
from app.tasks.redis_queue.queue import GROUP, QueueKeys
from tests.redis_cluster import admin_client
from tests.tasks.helpers import settings_env

__all__ = ["settings", "task_runner", "task_runners", "worker_output", "workers"]

PROJECT_ROOT = Path(__file__).resolve().parents[3]


# The worker's own entry point, with the tasks of `tests/tasks/faulty_tasks.py` registered too.
FAULTY_WORKER = "import tests.tasks.faulty_tasks; from app.tasks.worker import main; main()"


def spawn_worker(
    settings: Settings, concurrency: int, *, faulty: bool = False
) -> subprocess.Popen[bytes]:
    """Start `python -m app.tasks.worker` with `settings` (and the faulty tasks, if asked)."""
    entry = ["-c", FAULTY_WORKER] if faulty else ["-m", "app.tasks.worker"]
    command = [sys.executable, *entry, "--concurrency", str(concurrency)]
    return subprocess.Popen(command, cwd=PROJECT_ROOT, env=settings_env(settings))


@dataclass
class Workers:
    """Start, kill and stop worker processes; every one is stopped at teardown."""

    settings: Settings
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    async def start(
        self, concurrency: int = 4, *, faulty: bool = False, **overrides: object
    ) -> subprocess.Popen[bytes]:
        """Start a worker and wait until it reads from the stream."""
        settings = self.settings.model_copy(update=overrides)
        process = spawn_worker(settings, concurrency, faulty=faulty)
        self.processes.append(process)
        await self.wait_consumers(len([p for p in self.processes if p.poll() is None]))
        return process

    async def wait_consumers(self, count: int, within: float = 20.0) -> None:
        """Wait until `count` consumers have read from the group."""
        redis = admin_client(self.settings.redis_url)
        stream = QueueKeys(self.settings.cache_prefix).stream
        deadline = time.monotonic() + within
        try:
            while time.monotonic() < deadline:
                groups = await redis.xinfo_groups(stream) if await redis.exists(stream) else []
                if any(g["name"] == GROUP.encode() and g["consumers"] >= count for g in groups):
                    return
                await asyncio.sleep(0.05)
        finally:
            await redis.aclose()
        raise TimeoutError(f"{count} workers did not start in {within}s")

    def stop_all(self) -> None:
        """SIGTERM every live worker; SIGKILL those still alive after 10 s."""
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture
def settings(settings: Settings, redis_url: str) -> Settings:
    """The queue on the test's Redis, with small timeouts so that failure paths run fast."""
    return settings.model_copy(
        update={
            "redis_url": redis_url,
            "task_visibility_timeout": 2,
            "task_retry_backoff": 0.05,
            "task_shutdown_timeout": 1.0,
            "task_heartbeat_interval": 3600,
            "rate_limit_enabled": False,  # floods of enqueues: tests/middleware tests limits
        }
    )


@pytest.fixture
async def workers(settings: Settings) -> AsyncIterator[Workers]:
    """A factory of worker processes, all stopped at teardown."""
    pool = Workers(settings)
    try:
        yield pool
    finally:
        pool.stop_all()


@pytest.fixture
async def task_runner(workers: Workers) -> None:
    """One running worker."""
    await workers.start()


@pytest.fixture
async def task_runners(workers: Workers) -> None:
    """Two running worker processes."""
    await workers.start()
    await workers.start()


def spawn_logged_worker(settings: Settings, log: Path) -> subprocess.Popen[bytes]:
    """Start `python -m app.tasks.worker` with its stderr (its log lines) going to `log`."""
    command = [sys.executable, "-m", "app.tasks.worker"]
    with log.open("wb") as sink:  # the worker keeps its own copy of the descriptor
        return subprocess.Popen(command, cwd=PROJECT_ROOT, env=settings_env(settings), stderr=sink)


@pytest.fixture
async def worker_output(workers: Workers, tmp_path: Path) -> Callable[[], str]:
    """One running worker; what it has logged so far."""
    log = tmp_path / "worker.log"
    workers.processes.append(spawn_logged_worker(workers.settings, log))
    await workers.wait_consumers(1)
    return log.read_text
