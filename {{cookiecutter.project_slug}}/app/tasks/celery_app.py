"""`celery -A app.tasks.celery_app worker` (and `beat`): the app, built on first access."""

from functools import cache

from app.config import get_settings
from app.tasks.celery.task_app import TaskApp, create_celery_app


@cache
def _default_app() -> TaskApp:
    app = create_celery_app(get_settings())
    app.set_current()  # `@shared_task` in the worker and beat processes: this app
    app.set_default()
    return app


def __getattr__(name: str) -> TaskApp:
    """Serve `app` (what `celery -A app.tasks.celery_app` looks up), built on first access.

    Importing this module has no side effects; the worker and beat build the app from the
    environment when the celery command asks for it, and tests build their own.
    """
    if name == "app":
        return _default_app()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
