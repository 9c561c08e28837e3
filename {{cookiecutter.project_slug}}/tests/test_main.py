"""The application module: importing it builds nothing; uvicorn's `app.main:app` still works."""

import importlib

from fastapi import FastAPI


def test_importing_the_module_builds_no_app() -> None:
    module = importlib.reload(importlib.import_module("app.main"))

    assert "app" not in vars(module)


def test_the_default_app_is_built_once_on_first_access() -> None:
    module = importlib.import_module("app.main")

    first, second = module.app, module.app

    assert isinstance(first, FastAPI)
    assert first is second
