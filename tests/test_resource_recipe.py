"""The generated README's "Add a resource" recipe works as written, on every backend.

The test follows it in a fresh project: it writes each file the README shows (the blocks
that start with `# <path>`), makes the two one-line registrations the README describes, runs
`alembic revision --autogenerate` against a real database of the project's kind, and then
holds the result to what the README promises: at most eight files changed, and the project's
lint, type check and test suite pass (the contract test included, new routes and all). The
suite runs without its slow-marked tests: they start workers, kill servers and fail over,
which a resource does not change, and `test_generated_projects` runs them on every backend.
"""

import re
import subprocess
from pathlib import Path

import pytest

from tests.conftest import BACKEND_DATABASE, Render, combination_id
from tests.test_generated_projects import SYNC, commit_all, run, skipped_count

pytestmark = pytest.mark.slow

MAX_FILES = 8
NEW_TESTS = "tests/services/test_orders.py"
# One project per backend, both databases and both access answers among them.
RECIPE_PROJECTS = [
    answers
    for answers in BACKEND_DATABASE
    if (answers["task_backend"], answers["database"])
    in {("background", "postgresql"), ("celery", "sqlite"), ("redis_queue", "postgresql")}
]
SECTION = re.compile(r"^## Add a resource\n(.*?)^## ", re.DOTALL | re.MULTILINE)
FILE_BLOCK = re.compile(r"^```python\n# (\S+\.py)\n(.*?)^```\n", re.DOTALL | re.MULTILINE)
# Autogenerate compares the models with a database at head: a PostgreSQL project asks a real
# PostgreSQL (the project's own test helper starts one), a SQLite one its default file.
AUTOGENERATE = """
import os, subprocess
from tests.servers import running_postgres

def alembic(env, *args):
    subprocess.run(["alembic", *args], env=env, check=True)

with running_postgres() as url:
    env = {**os.environ, "DATABASE_URL": url}
    alembic(env, "upgrade", "head")
    alembic(env, "revision", "--autogenerate", "-m", "add orders")
"""


def recipe_files(readme: str) -> dict[str, str]:
    """Path -> text of every file the recipe section of `readme` shows whole."""
    found = SECTION.search(readme)
    assert found, "the README has no 'Add a resource' section"
    return dict(FILE_BLOCK.findall(found.group(1)))


def edit(path: Path, old: str, new: str) -> None:
    """Replace the one occurrence of `old` in `path` (the recipe's one-line registrations)."""
    text = path.read_text()
    assert text.count(old) == 1, f"{path}: {old!r} is not there once"
    path.write_text(text.replace(old, new))


def follow_recipe(root: Path, database: str) -> None:
    """Do what the README's recipe says, step by step."""
    for name, text in recipe_files((root / "README.md").read_text()).items():
        (root / name).write_text(text)
    models = root / "app/models/__init__.py"
    edit(
        models,
        "from app.models.item import Item\n",
        "from app.models.item import Item\nfrom app.models.order import Order\n",
    )
    edit(models, '["Base", "Item"]', '["Base", "Item", "Order"]')
    main = root / "app/main.py"
    edit(
        main,
        "import docs, health, items, metrics, tasks\n",
        "import docs, health, items, metrics, orders, tasks\n",
    )
    mounted = '    app.include_router(items.router, prefix="/api/v1", responses=limited)\n'
    edit(main, mounted, mounted + mounted.replace("items", "orders"))
    if database == "postgresql":
        run(["uv", "run", "python", "-c", AUTOGENERATE], root)
    else:
        run(["uv", "run", "alembic", "upgrade", "head"], root)
        run(["uv", "run", "alembic", "revision", "--autogenerate", "-m", "add orders"], root)


def changed_files(root: Path) -> list[str]:
    """Every file the working tree adds or changes against the last commit (untracked too)."""
    status = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=all"],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return sorted(line[3:] for line in status.splitlines())


def test_the_readme_shows_every_file_of_the_recipe(render: Render) -> None:
    root = render(use_docker="no", use_github_actions="no")

    shown = recipe_files((root / "README.md").read_text())

    assert sorted(shown) == [
        "app/api/orders.py",
        "app/models/order.py",
        "app/schemas/order.py",
        "app/services/orders.py",
        NEW_TESTS,
    ]
    assert all(not (root / name).exists() for name in shown)


@pytest.mark.parametrize("answers", RECIPE_PROJECTS, ids=combination_id)
def test_the_recipe_adds_a_resource_in_eight_files_that_pass_every_check(
    render: Render, answers: dict[str, str]
) -> None:
    root = render(**answers, use_docker="no", use_github_actions="no")
    run(SYNC, root)
    commit_all(root, "generated")

    follow_recipe(root, answers["database"])

    changed = changed_files(root)
    assert len(changed) <= MAX_FILES, changed
    assert [name for name in changed if name.startswith("migrations/versions/")], changed
    run(["uv", "run", "ruff", "check", "--no-cache", "."], root)
    run(["uv", "run", "ruff", "format", "--check", "."], root)
    run(["uv", "run", "mypy", "--no-incremental", "."], root)
    orders = run(["uv", "run", "pytest", "-q", "-p", "no:cacheprovider", NEW_TESTS], root)
    assert re.search(r"\d+ passed", orders), orders[-2000:]
    suite = ["uv", "run", "pytest", "-q", "-rfEs", "-m", "not slow", "-p", "no:cacheprovider"]
    output = run(suite, root, 1500)
    assert re.search(r"\d+ passed", output), output[-2000:]
    assert skipped_count(output.strip()) == 0, output[-4000:]
