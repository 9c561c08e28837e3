"""Fixtures for the `background` backend: tasks run inside the app under test."""

import io
import logging
from collections.abc import Callable

import pytest
from httpx import AsyncClient

from app.config import Settings

__all__ = ["settings", "task_runner", "task_runners", "worker_output"]


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """Fast retries, and a short stop: tests that leave tasks running end quickly."""
    # No rate limits: some tests flood the enqueue route (tests/middleware tests the limits).
    update = {"task_retry_backoff": 0.05, "task_shutdown_timeout": 0.5, "rate_limit_enabled": False}
    return settings.model_copy(update=update)


@pytest.fixture
def task_runner() -> None:
    """Nothing to start: the app runs its own tasks."""


@pytest.fixture
def task_runners() -> None:
    """Nothing to start: every API process runs its own tasks."""


@pytest.fixture
def worker_output(client: AsyncClient) -> Callable[[], str]:
    """What the worker (this process: tasks run in the API) logs from now on."""
    logged = io.StringIO()
    for handler in logging.getLogger().handlers:
        if type(handler) is logging.StreamHandler:  # the one `configure_logging` installed
            handler.setStream(logged)
    return logged.getvalue
