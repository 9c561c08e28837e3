"""The generated code stays readable: small modules and functions, one-line Jinja toggles."""

import ast
import re
from pathlib import Path

import pytest

from tests.conftest import CHOICES, TEMPLATE_DIR, render_template

PROJECT_TEMPLATE = TEMPLATE_DIR / "{{cookiecutter.project_slug}}"
MAX_MODULE_LINES = 300
MAX_FUNCTION_LINES = 50
JINJA_BLOCK = re.compile(r"\{%-?\s*(\w+).*?-?%\}", re.DOTALL)
OPENS, CLOSES = {"if", "for"}, {"endif", "endfor"}


def code_lines_per_branch(source: str) -> list[tuple[int, int]]:
    """(line, code lines) of every branch of a Jinja `if`/`for` block in `source`."""
    branches: list[tuple[int, int]] = []
    depth, body_start = 0, 0
    for tag in JINJA_BLOCK.finditer(source):
        if depth:
            body = source[body_start : tag.start()]
            line = source.count("\n", 0, body_start) + 1
            branches.append((line, sum(1 for text in body.splitlines() if text.strip())))
        depth += (tag.group(1) in OPENS) - (tag.group(1) in CLOSES)
        body_start = tag.end()
    return branches


def test_the_branch_counter_sees_a_multi_line_block() -> None:
    source = (
        "a = 1\n{%- if x %}\nb = 2\nc = 3\n{%- else %}\nb = 4\n{%- endif %}\n"
        'd = "{% if y %}z{% endif %}"\n'
    )
    assert code_lines_per_branch(source) == [(2, 2), (5, 1), (8, 1)]


@pytest.mark.parametrize(
    "path",
    sorted(PROJECT_TEMPLATE.rglob("*.py")),
    ids=lambda path: str(path.relative_to(PROJECT_TEMPLATE)),
)
def test_jinja_in_python_toggles_at_most_one_line(path: Path) -> None:
    # More than one line per option belongs in a file of its own (the post-gen MANIFEST).
    long_branches = [line for line, code in code_lines_per_branch(path.read_text()) if code > 1]
    assert long_branches == [], f"multi-line Jinja blocks start on lines {long_branches}"


@pytest.fixture(scope="module", params=CHOICES["task_backend"])
def app_modules(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, str]:
    """Path -> source of every module of `app/`, rendered for one task backend."""
    root = render_template(tmp_path_factory.mktemp("shape"), task_backend=request.param)
    return {str(path.relative_to(root)): path.read_text() for path in (root / "app").rglob("*.py")}


def test_modules_stay_under_the_line_limit(app_modules: dict[str, str]) -> None:
    long_modules = {
        path: lines
        for path, source in app_modules.items()
        if (lines := len(source.splitlines())) > MAX_MODULE_LINES
    }
    assert long_modules == {}


def test_functions_stay_under_the_line_limit(app_modules: dict[str, str]) -> None:
    long_functions = {
        f"{path}:{node.lineno} {node.name}": lines
        for path, source in app_modules.items()
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        if (lines := (node.end_lineno or node.lineno) - node.lineno + 1) > MAX_FUNCTION_LINES
    }
    assert long_functions == {}


def import_graph(app_modules: dict[str, str], *, depth: int | None) -> dict[str, set[str]]:
    """Which parts of `app` import which: packages (`depth=1`) or whole modules (`None`).

    Every import counts, also one under TYPE_CHECKING or inside a function.
    """

    def part(dotted: str) -> str:
        return ".".join(dotted.split(".")[: depth and depth + 1])

    modules = {
        path.removesuffix(".py").replace("/", ".").removesuffix(".__init__"): source
        for path, source in app_modules.items()
    }
    graph: dict[str, set[str]] = {}
    for module, source in modules.items():
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.ImportFrom) and node.module and not node.level:
                submodules = (f"{node.module}.{alias.name}" for alias in node.names)
                names = [name if name in modules else node.module for name in submodules]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            for name in names:
                if name in modules and part(name) != part(module):
                    graph.setdefault(part(module), set()).add(part(name))
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The import cycles of `graph`, each once, as the path that closes it."""
    found: dict[frozenset[str], list[str]] = {}
    for start in sorted(graph):
        stack = [(start, [start])]
        while stack:
            node, path = stack.pop()
            for following in sorted(graph.get(node, ())):
                if following == start:
                    found.setdefault(frozenset(path), [*path, start])
                elif following not in path:
                    stack.append((following, [*path, following]))
    return list(found.values())


def test_the_cycle_finder_sees_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]


def test_no_package_imports_another_that_imports_it_back(app_modules: dict[str, str]) -> None:
    assert cycles(import_graph(app_modules, depth=1)) == []


def test_no_module_imports_another_that_imports_it_back(app_modules: dict[str, str]) -> None:
    assert cycles(import_graph(app_modules, depth=None)) == []
