"""The application module: importing it builds nothing; uvicorn's `app.main:app` still works."""

import gc
import importlib
from collections.abc import Iterator

import pytest
from fastapi import FastAPI


@pytest.fixture
def unfrozen() -> Iterator[None]:
    """Start with no frozen objects and leave none: serving the default app freezes them."""
    gc.unfreeze()
    yield
    gc.unfreeze()


def test_importing_the_module_builds_no_app() -> None:
    module = importlib.reload(importlib.import_module("app.main"))

    assert "app" not in vars(module)


@pytest.mark.usefixtures("unfrozen")
def test_the_default_app_is_built_once_on_first_access() -> None:
    module = importlib.import_module("app.main")

    first, second = module.app, module.app

    assert isinstance(first, FastAPI)
    assert first is second


@pytest.mark.usefixtures("unfrozen")
def test_serving_the_default_app_leaves_its_startup_objects_out_of_collections() -> None:
    module = importlib.reload(importlib.import_module("app.main"))
    assert gc.get_freeze_count() == 0

    module.app  # noqa: B018 - what uvicorn does to `app.main:app`

    # A full collection now walks only what was created after startup.
    assert gc.get_freeze_count() > 10 * len(gc.get_objects())
