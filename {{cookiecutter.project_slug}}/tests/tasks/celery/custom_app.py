"""What users add to the Celery app, for the publishing tests: routes, a key prefix, a task.

`celery -A tests.tasks.celery.custom_app worker -Q routed` runs a worker of the routed app;
`--include tests.tasks.celery.custom_app` gives the service's own worker the shared task.
"""

from functools import cache
from typing import Any

from celery import shared_task
from redis import Redis

from app.config import Settings, get_settings
from app.tasks.celery.publish import RUN_TASK
from app.tasks.celery.task_app import TaskApp, create_celery_app

KEY_PREFIX = "routed-prefix:"
ROUTED_QUEUE = "routed"
PRIORITY = 9


def create_routed_app(settings: Settings) -> TaskApp:
    """The service's app, with every registry task routed to its own queue and prefixed keys."""
    app = create_celery_app(settings)
    app.conf.task_routes = {RUN_TASK: {"queue": ROUTED_QUEUE, "priority": PRIORITY}}
    options = app.conf.broker_transport_options
    app.conf.broker_transport_options = {**options, "global_keyprefix": KEY_PREFIX}
    return app


@shared_task(name="tests.record")
def record(redis_url: str, key: str, value: str) -> None:
    """A user's own task: set `key` to `value` in Redis."""
    with Redis.from_url(redis_url) as redis:
        redis.set(key, value)


@cache
def _routed_app() -> TaskApp:
    return create_routed_app(get_settings())


def __getattr__(name: str) -> Any:
    """Serve `app`, the routed app built from the environment, for `celery -A`."""
    if name == "app":
        return _routed_app()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
