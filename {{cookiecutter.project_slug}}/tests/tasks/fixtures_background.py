"""Fixtures for the `background` backend: tasks run inside the app under test."""

import pytest

from app.config import Settings


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """Fast retries so that retry tests take a fraction of a second."""
    return settings.model_copy(update={"task_retry_backoff": 0.05})


@pytest.fixture
def task_runner() -> None:
    """Nothing to start: the app runs its own tasks."""
