"""Fixtures of the picked task backend: `settings` for it and `task_runner` that runs tasks."""

# Only the picked backend's fixtures remain after generation.
{%- if cookiecutter.task_backend == "background" %}
from tests.tasks.fixtures_background import settings, task_runner  # noqa: F401
{%- elif cookiecutter.task_backend == "celery" %}
from tests.tasks.fixtures_celery import (  # noqa: F401
    broker,
    broker_url,
    celery_processes,
    rabbitmq_server,
    settings,
    task_runner,
)
{%- else %}
from tests.tasks.fixtures_redis_queue import settings, task_runner, workers  # noqa: F401
{%- endif %}
