"""Layers import one way: api -> services -> repositories / infrastructure, never back.

Every module of `app/` is parsed (not imported), so an import under `TYPE_CHECKING` or inside
a function counts too.
"""

import ast
from pathlib import Path

import pytest

APP = Path(__file__).resolve().parent.parent / "app"

# What each layer (a package under `app/`, or `config`, `state`, `main`) must not import.
# `state` and `main` wire the layers together; only `api` and `middleware` read `state`.
WIRING = {"state", "main"}
FORBIDDEN = {
    "config": {"api", "core", "infrastructure", "middleware", "services", "tasks"} | WIRING,
    "models": {"api", "core", "infrastructure", "middleware", "repositories", "services", "tasks"}
    | WIRING,
    "infrastructure": {"api", "core", "middleware", "repositories", "services", "tasks"} | WIRING,
    "repositories": {"api", "core", "middleware", "services", "tasks"} | WIRING,
    "core": {"api", "middleware", "services", "tasks"} | WIRING,
    "services": {"api", "middleware", "tasks"} | WIRING,
    "tasks": {"api", "middleware"} | WIRING,
    "middleware": {"api", "services", "tasks", "main"},
    "api": {"main"},
}


def _layer(path: Path) -> str:
    return path.relative_to(APP).with_suffix("").parts[0]


def _imported_layers(path: Path) -> set[str]:
    layers: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            modules = [node.module]
        else:
            continue
        layers.update(m.split(".")[1] for m in modules if m.startswith("app."))
    return layers


MODULES = sorted(APP.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda path: str(path.relative_to(APP)))
def test_imports_go_one_way(path: Path) -> None:
    layer = _layer(path)
    imported = _imported_layers(path) - {layer}
    wrong = imported & FORBIDDEN.get(layer, set())
    assert not wrong, f"{path.relative_to(APP)} ({layer}) imports {sorted(wrong)}"


def test_every_layer_has_rules() -> None:
    assert set(FORBIDDEN) <= {_layer(path) for path in MODULES}
