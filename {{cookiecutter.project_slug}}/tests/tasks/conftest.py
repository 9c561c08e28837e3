"""The picked backend's fixtures: `settings` for it, `task_runner` that runs tasks, and its own."""

from tests.tasks.{{ cookiecutter.task_backend }}.fixtures import *  # noqa: F403
