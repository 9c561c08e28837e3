"""The dependencies: cheap on every request."""

import inspect

from app.api import deps


def test_every_dependency_runs_on_the_event_loop() -> None:
    """FastAPI runs a plain `def` dependency in its thread pool: a thread hop per request."""
    providers = [
        function
        for name, function in vars(deps).items()
        if name.startswith("get_") and inspect.isfunction(function)
    ]

    assert providers
    for provider in providers:
        assert inspect.iscoroutinefunction(provider) or inspect.isasyncgenfunction(provider)
