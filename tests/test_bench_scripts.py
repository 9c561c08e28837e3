"""The benchmark scripts import the generated app; a rename in the template must not break them.

The bench runs only in `.ci/run` (after the whole suite) and by hand, so this static check finds
a stale import in a second instead of a crashed benchmark at the end of a CI run.
"""

import ast
from pathlib import Path

import pytest

from tests.conftest import CHOICES, TEMPLATE_DIR, Render

BENCH_SCRIPTS = sorted((TEMPLATE_DIR / "bench" / "scripts").glob("*.py"))


def _top_level_names(module: Path) -> set[str]:
    """Names a module defines or imports at its top level (what `from module import x` can get)."""
    names: set[str] = set()
    for node in ast.parse(module.read_text()).body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
    return names


def _imports(script: Path, package: str = "app") -> list[tuple[str, str]]:
    """(module, name) for every `from <package>... import name` in a bench script."""
    return [
        (node.module, alias.name)
        for node in ast.walk(ast.parse(script.read_text()))
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == package
        for alias in node.names
    ]


def _missing(project: Path, package: str) -> list[str]:
    """The bench scripts' `from <package>... import name` that `project` lacks."""
    missing = []
    for script in BENCH_SCRIPTS:
        for module, name in _imports(script, package):
            path = project / Path(*module.split("."))
            source = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
            if not source.exists() or name not in _top_level_names(source):
                missing.append(f"{script.name}: from {module} import {name}")
    return missing


def test_the_bench_has_scripts_that_import_the_app() -> None:
    assert any(_imports(script) for script in BENCH_SCRIPTS)


@pytest.mark.parametrize("task_backend", CHOICES["task_backend"])
def test_every_bench_import_from_the_app_exists(render: Render, task_backend: str) -> None:
    project = render(task_backend=task_backend, project_slug="my-service")
    missing = _missing(project, "app")
    assert not missing, "bench scripts import what the generated app lacks:\n" + "\n".join(missing)


def test_every_bench_import_from_the_projects_tests_exists(render: Render) -> None:
    """Scripts that run the project's test helpers as programs (the Cluster and Sentinel
    servers, the OpenID provider) find them in the render they run in: redis_queue, auth=oidc."""
    project = render(task_backend="redis_queue", auth="oidc", project_slug="my-service")
    missing = _missing(project, "tests")
    assert not missing, "bench scripts import what the project's tests lack:\n" + "\n".join(missing)
