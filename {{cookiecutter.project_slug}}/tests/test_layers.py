"""Layers import one way: api -> services -> repositories / infrastructure, never back.

The task domain (`app/tasks/*.py`) never imports a backend (`app/tasks/<backend>/`); a
backend imports the domain and nothing of another backend. Every module of `app/` is parsed
(not imported), so an import under `TYPE_CHECKING` or inside a function counts too.
"""

import ast
from pathlib import Path

import pytest

APP = Path(__file__).resolve().parent.parent / "app"

BACKENDS = {"tasks.background", "tasks.celery", "tasks.redis_queue"}
# The modules the documented worker commands name, each a thin door into its backend.
ENTRY_POINTS = {"tasks.celery_app": "tasks.celery", "tasks.worker": "tasks.redis_queue"}
# What each layer (a package under `app/`, `config`, `state`, `main`, a top-level module, or a
# task backend) must not import. `state` and `main` wire the layers together; only `api` and
# `middleware` read `state`; only `main` picks a backend. `schemas` are the data shapes the
# layers above exchange; `observability` (logs, metrics, traces) serves every layer above
# `infrastructure`; `problems` (RFC 9457 documents) is HTTP's, for `middleware`, `api`, `main`.
WIRING = {"state", "main"}
# Every layer that is above the plain data and helper modules.
ABOVE = {"api", "core", "infrastructure", "middleware", "observability", "problems"}
ABOVE |= {"repositories", "services", "tasks"}
FORBIDDEN = {
    "__init__": ABOVE | WIRING,
    "config": ABOVE | WIRING,
    "redis_urls": ABOVE | {"config"} | WIRING,
    "database_urls": ABOVE | {"config"} | WIRING,
    "rates": ABOVE | {"config", "redis_urls", "database_urls"} | WIRING,
    "gc_freeze": ABOVE | {"config", "models", "schemas", "redis_urls"} | WIRING,
    "models": ABOVE | {"schemas"} | WIRING,
    "schemas": ABOVE | WIRING,
    "infrastructure": ABOVE - {"infrastructure"} | WIRING,
    "repositories": ABOVE - {"infrastructure", "repositories"} | WIRING,
    "observability": {"api", "core", "middleware", "problems", "repositories", "services", "tasks"}
    | WIRING,
    "problems": ABOVE - {"observability", "problems"} | WIRING,
    "core": {"api", "middleware", "problems", "services", "tasks"} | WIRING,
    "services": {"api", "middleware", "problems", "tasks"} | WIRING,
    "tasks": {"api", "middleware", "problems"} | WIRING,
    "middleware": {"api", "services", "tasks", "main"},
    "api": {"main"},
    "state": {"api", "main"},
    "main": set(),  # the top: it wires everything
}
FORBIDDEN = {
    layer: forbidden if layer == "main" else forbidden | BACKENDS
    for layer, forbidden in FORBIDDEN.items()
}
FORBIDDEN |= {backend: FORBIDDEN["tasks"] - {backend} for backend in BACKENDS}


def _layer(module: str) -> str:
    """The layer of a module of `app`, named by its dotted path under `app`."""
    parts = module.split(".")
    package = ".".join(parts[:2])
    if package in BACKENDS:
        return package
    return ENTRY_POINTS.get(package, parts[0])


def _module(path: Path) -> str:
    return ".".join(path.relative_to(APP).with_suffix("").parts)


def _imported_layers(path: Path) -> set[str]:
    layers: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            modules = [node.module]
        else:
            continue
        layers.update(_layer(m.removeprefix("app.")) for m in modules if m.startswith("app."))
    return layers


MODULES = sorted(APP.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda path: str(path.relative_to(APP)))
def test_imports_go_one_way(path: Path) -> None:
    layer = _layer(_module(path))
    imported = _imported_layers(path) - {layer}
    wrong = imported & FORBIDDEN.get(layer, set())
    assert not wrong, f"{path.relative_to(APP)} ({layer}) imports {sorted(wrong)}"


def _classes_on_foreign_bases(path: Path) -> list[str]:
    """Classes of `path` derived from a class it imports from another layer of `app`."""
    tree = ast.parse(path.read_text(), filename=str(path))
    layer = _layer(_module(path))
    foreign = {
        alias.asname or alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("app.")
        if _layer(node.module.removeprefix("app.")) != layer
        for alias in node.names
    }
    return [
        f"{node.name}({ast.unparse(base)})"
        for node in ast.walk(tree)
        if isinstance(node, ast.ClassDef)
        for base in node.bases
        if ast.unparse(base).split(".")[0] in foreign
    ]


@pytest.mark.parametrize("path", sorted((APP / "schemas").glob("*.py")), ids=lambda path: path.name)
def test_api_schemas_are_their_own_models(path: Path) -> None:
    # A schema that subclasses a domain model changes the HTTP contract with the domain.
    assert _classes_on_foreign_bases(path) == []


def test_every_layer_has_rules_and_one_backend_is_there() -> None:
    # A new package (or top-level module) of `app/` fails here until FORBIDDEN gives it a rule.
    layers = {_layer(_module(path)) for path in MODULES}
    assert layers - set(FORBIDDEN) == set()
    assert len(layers & BACKENDS) == 1


@pytest.mark.parametrize(
    ("module", "layer"),
    [
        ("tasks.status", "tasks"),
        ("tasks.celery.task_app", "tasks.celery"),
        ("tasks.celery_app", "tasks.celery"),
        ("tasks.worker", "tasks.redis_queue"),
        ("tasks.redis_queue.queue", "tasks.redis_queue"),
        ("services.items", "services"),
    ],
)
def test_a_module_s_layer_is_its_package_or_its_task_backend(module: str, layer: str) -> None:
    assert _layer(module) == layer
