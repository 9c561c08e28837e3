"""Fixtures for the `background` backend: tasks run inside the app under test."""

import pytest

from app.config import Settings

__all__ = ["settings", "task_runner"]


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """Fast retries, and a short stop: tests that leave tasks running end quickly."""
    return settings.model_copy(update={"task_retry_backoff": 0.05, "task_shutdown_timeout": 0.5})


@pytest.fixture
def task_runner() -> None:
    """Nothing to start: the app runs its own tasks."""
