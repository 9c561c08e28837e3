"""Fixtures for the `celery` backend: real `celery -A app.tasks.celery_app` processes."""

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from app.config import Settings

PROJECT_ROOT = Path(__file__).resolve().parents[2]
CELERY = [sys.executable, "-m", "celery", "-A", "app.tasks.celery_app"]
# Mingle and gossip only exchange worker metadata; leaving them out saves a second per start.
QUIET = ["--without-mingle", "--without-gossip"]


def celery_env(settings: Settings) -> dict[str, str]:
    """The environment that gives a celery process exactly these settings."""
    env = {
        key.upper(): value if isinstance(value, str) else json.dumps(value)
        for key, value in settings.model_dump(mode="json").items()
        if value is not None
    }
    return {**os.environ, **env}


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

    def spawn(self, *args: str, **overrides: object) -> CeleryProcess:
        """Start `celery -A app.tasks.celery_app <args>` with the settings plus `overrides`."""
        process = subprocess.Popen(
            [*CELERY, *args],
            cwd=PROJECT_ROOT,
            env=celery_env(self.settings.model_copy(update=overrides)),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        started = CeleryProcess(process)
        self.started.append(started)
        return started

    async def worker(self, concurrency: int = 2, **overrides: object) -> CeleryProcess:
        """Start a worker and wait until it consumes."""
        name = f"worker{len(self.started) + 1}@%h"
        worker = self.spawn(
            "worker", f"--concurrency={concurrency}", f"--hostname={name}", *QUIET, **overrides
        )
        await asyncio.to_thread(worker.wait_for, " ready.")
        return worker

    async def beat(self, **overrides: object) -> CeleryProcess:
        """Start a beat and wait until it schedules."""
        beat = self.spawn("beat", **overrides)
        await asyncio.to_thread(beat.wait_for, "beat: Starting...")
        return beat

    def kill_all(self) -> None:
        """SIGKILL every process group: teardown needs no graceful stop (the tests that do wait)."""
        for started in self.started:
            started.kill()


@pytest.fixture
def settings(settings: Settings, redis_url: str) -> Settings:
    """The test's Redis as broker, with short timeouts so that failure paths run fast."""
    return settings.model_copy(
        update={
            "redis_url": redis_url,
            "task_visibility_timeout": 2,
            "task_retry_backoff": 1.0,  # Celery's smallest backoff: 0-1 s, then 0-2 s
            "task_shutdown_timeout": 1.0,
            "task_heartbeat_interval": 3600,
            "task_concurrency": 2,
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
