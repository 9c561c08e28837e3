"""Every combination of answers renders fully, with exactly the files its answers pick."""

import ast
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conftest import ALL_COMBINATIONS, CHOICES, Render, combination_id, render_template

# Jinja that survived rendering; GitHub Actions' own `${{ }}` is not Jinja.
LEFTOVER_JINJA = re.compile(r"(?<!\$)\{\{|\{%|%\}|\{#|cookiecutter\.")

BACKEND_FILES = {
    "background": ["app/tasks/background/queue.py", "tests/tasks/background/test_queue.py"],
    "celery": [
        "app/tasks/celery_app.py",
        "app/tasks/celery/queue.py",
        "tests/tasks/celery/test_workers.py",
    ],
    "redis_queue": [
        "app/tasks/redis_queue/queue.py",
        "app/tasks/worker.py",
        "tests/tasks/redis_queue/test_workers.py",
    ],
}
DOCKER_FILES = ["Dockerfile", "compose.yaml", ".dockerignore"]
TRACING_FILES = [
    "app/observability/tracing.py",
    "app/infrastructure/cache/tracing.py",
    "app/tasks/tracing.py",
    "tests/otlp_receiver.py",
    "tests/observability/test_tracing.py",
    "tests/tasks/test_tracing.py",
]
ALWAYS = [
    ".env.example",
    ".gitignore",
    ".pre-commit-config.yaml",
    "README.md",
    "alembic.ini",
    "app/main.py",
    "pyproject.toml",
    "tests/conftest.py",
]
# Settings of DESIGN.md that .env.example must show with their defaults.
DESIGN_SETTINGS = {
    "DATABASE_URL",
    "CACHE_URL",
    "CACHE_PREFIX",
    "CACHE_DEFAULT_TTL",
    "RESPONSE_CACHE_TTL",
    "TASK_MAX_ATTEMPTS",
    "TASK_VISIBILITY_TIMEOUT",
}


@pytest.fixture(scope="module", params=ALL_COMBINATIONS, ids=combination_id)
def project(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> tuple[dict[str, str], Path]:
    """One rendered project per combination, shared by the checks of this module."""
    answers: dict[str, str] = request.param
    return answers, render_template(tmp_path_factory.mktemp("render"), **answers)


def project_files(root: Path) -> list[Path]:
    """Every file of a rendered project."""
    return [path for path in root.rglob("*") if path.is_file()]


def test_no_jinja_left(project: tuple[dict[str, str], Path]) -> None:
    _, root = project
    leftovers = [
        f"{path.relative_to(root)}: {line.strip()}"
        for path in project_files(root)
        for line in path.read_text().splitlines()
        if LEFTOVER_JINJA.search(line)
    ]
    assert leftovers == []


def test_picked_files_exist_and_the_others_do_not(
    project: tuple[dict[str, str], Path],
) -> None:
    answers, root = project
    expected = ALWAYS + BACKEND_FILES[answers["task_backend"]]
    unexpected = [
        path
        for backend, paths in BACKEND_FILES.items()
        if backend != answers["task_backend"]
        for path in paths
    ]
    (expected if answers["use_docker"] == "yes" else unexpected).extend(DOCKER_FILES)
    github = ".github/workflows/ci.yml"
    (expected if answers["use_github_actions"] == "yes" else unexpected).append(github)
    (expected if answers["use_opentelemetry"] == "yes" else unexpected).extend(TRACING_FILES)

    assert [path for path in expected if not (root / path).is_file()] == []
    assert [path for path in unexpected if (root / path).exists()] == []
    assert not (root / ".github").exists() or answers["use_github_actions"] == "yes"


def test_a_project_without_opentelemetry_has_no_trace_of_it(
    project: tuple[dict[str, str], Path],
) -> None:
    """Neither a dependency, nor an import, nor a line of the README mentions it."""
    answers, root = project
    mentions = [
        str(path.relative_to(root))
        for path in project_files(root)
        if "opentelemetry" in path.read_text().lower()
    ]
    if answers["use_opentelemetry"] == "no":
        assert mentions == []
    else:
        assert "pyproject.toml" in mentions


def test_no_empty_directories(project: tuple[dict[str, str], Path]) -> None:
    _, root = project
    assert [path for path in root.rglob("*") if path.is_dir() and not any(path.iterdir())] == []


def test_python_parses(project: tuple[dict[str, str], Path]) -> None:
    _, root = project
    for path in root.rglob("*.py"):
        ast.parse(path.read_text(), filename=str(path))


def test_ruff_passes(project: tuple[dict[str, str], Path]) -> None:
    _, root = project
    for command in (["ruff", "check", "--no-cache", "."], ["ruff", "format", "--check", "."]):
        result = subprocess.run(command, cwd=root, capture_output=True, text=True, check=False)
        assert result.returncode == 0, result.stdout + result.stderr


def test_yaml_files_parse(project: tuple[dict[str, str], Path]) -> None:
    _, root = project
    for path in [*root.rglob("*.yaml"), *root.rglob("*.yml")]:
        assert isinstance(yaml.safe_load(path.read_text()), dict), path


def test_env_example_lists_every_setting_with_its_default(
    project: tuple[dict[str, str], Path],
) -> None:
    answers, root = project
    lines = (root / ".env.example").read_text().splitlines()
    env = dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))
    wanted = DESIGN_SETTINGS | ({"REDIS_URL"} if answers["task_backend"] != "background" else set())
    assert wanted <= env.keys()
    assert {name.lower() for name in env} <= settings_fields(root)
    slug = root.name
    assert env["CACHE_PREFIX"] == slug
    assert env["CACHE_URL"] == "memory://"
    scheme = "postgresql+asyncpg" if answers["database"] == "postgresql" else "sqlite+aiosqlite"
    assert env["DATABASE_URL"].startswith(f"{scheme}://")


def test_readme_settings_table_lists_exactly_the_settings(
    project: tuple[dict[str, str], Path],
) -> None:
    _answers, root = project
    readme = (root / "README.md").read_text()
    table = readme.split("## Settings", 1)[1].split("\n## ", 1)[0]
    documented = set()
    for row in re.findall(r"^\| `([A-Z_]+)`(?: / `([A-Z_]+)`)? \|", table, flags=re.MULTILINE):
        documented |= {name.lower() for name in row if name}
    assert documented == settings_fields(root)


def settings_fields(root: Path) -> set[str]:
    """The field names of the generated Settings class."""
    tree = ast.parse((root / "app/config.py").read_text())
    settings = next(
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.ClassDef) and node.name == "Settings"
    )
    return {
        node.target.id
        for node in settings.body
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
    }


@pytest.mark.parametrize("task_backend", CHOICES["task_backend"])
@pytest.mark.parametrize("database", CHOICES["database"])
def test_docker_and_actions_change_no_python(
    render: Render, task_backend: str, database: str
) -> None:
    """Why the slow tests lint and test one project per backend x database, not all 48."""

    def python_sources(flag: str) -> dict[str, str]:
        slug = f"svc-{flag}"
        root = render(
            task_backend=task_backend,
            database=database,
            use_docker=flag,
            use_github_actions=flag,
            project_slug=slug,
        )
        return {
            str(path.relative_to(root)): path.read_text()
            .replace(slug, "SLUG")
            .replace(slug.replace("-", "_"), "SLUG")
            for path in root.rglob("*.py")
        }

    assert python_sources("yes") == python_sources("no")


@pytest.mark.parametrize("task_backend", CHOICES["task_backend"])
def test_the_longest_allowed_answers_render_and_lint(render: Render, task_backend: str) -> None:
    root = render(
        project_name="N" * 59 + " ",
        project_slug="s" * 50,
        task_backend=task_backend,
        database="postgresql",
    )
    for command in (["ruff", "check", "--no-cache", "."], ["ruff", "format", "--check", "."]):
        result = subprocess.run(command, cwd=root, capture_output=True, text=True, check=False)
        assert result.returncode == 0, result.stdout + result.stderr
