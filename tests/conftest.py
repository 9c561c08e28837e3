"""Render the template with any answers; every test gets its own output directory."""

import importlib.util
import itertools
import json
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest
from cookiecutter.main import cookiecutter

TEMPLATE_DIR = Path(__file__).resolve().parent.parent
DEFAULTS = json.loads((TEMPLATE_DIR / "cookiecutter.json").read_text())
CHOICES = {key: value for key, value in DEFAULTS.items() if isinstance(value, list)}
ALL_COMBINATIONS = [
    dict(zip(CHOICES, values, strict=True)) for values in itertools.product(*CHOICES.values())
]
# Docker and GitHub Actions add files but change no Python (test_render checks this), so the
# slow tests run one project per backend x database. OpenTelemetry removes files and lines
# (test_render checks that nothing of it is left): one of them runs without it.
WITHOUT_OPENTELEMETRY = ("redis_queue", "sqlite")
# `auth` changes the API's access and its tests: every backend runs once with each answer
# (oidc with PostgreSQL, none with SQLite), so the count of slow projects stays six.
BACKEND_DATABASE = [
    {
        "task_backend": backend,
        "database": database,
        "use_opentelemetry": "no" if (backend, database) == WITHOUT_OPENTELEMETRY else "yes",
        "auth": "oidc" if database == "postgresql" else "none",
    }
    for backend, database in itertools.product(CHOICES["task_backend"], CHOICES["database"])
]

Render = Callable[..., Path]


def combination_id(answers: dict[str, str]) -> str:
    """A short, readable test id for a set of answers."""
    return "-".join(f"{key.removeprefix('use_')}={value}" for key, value in answers.items())


def load_hook(name: str) -> ModuleType:
    """Import a hook file as it is in the template (unrendered)."""
    spec = importlib.util.spec_from_file_location(name, TEMPLATE_DIR / "hooks" / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def render_template(output_dir: Path, template: Path = TEMPLATE_DIR, **answers: str) -> Path:
    """Render `template` with `answers` into `output_dir`; return the project directory.

    The replay files go to `output_dir` too, so parallel runs share nothing.
    """
    output_dir.mkdir(parents=True, exist_ok=True)
    config = output_dir / ".cookiecutter.yaml"
    config.write_text(f"replay_dir: {output_dir / '.replay'}\n")
    project = cookiecutter(
        str(template),
        no_input=True,
        extra_context=answers,
        output_dir=str(output_dir),
        config_file=str(config),
    )
    return Path(project)


@pytest.fixture
def render(tmp_path: Path) -> Render:
    """Render the template with the given answers into the test's own directory."""

    def _render(template: Path = TEMPLATE_DIR, **answers: str) -> Path:
        return render_template(tmp_path / "out", template, **answers)

    return _render
