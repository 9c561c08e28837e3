"""Remove what the answers did not pick, then print the next steps.

MANIFEST is the one list of option-specific files: a path listed under an option's values is
kept only when one of those values was picked. The hook is idempotent (a path already gone is
skipped), so `cruft update`, which runs it again, is safe. Standard library only, no
network. Jinja appears only in the string literal at the bottom, so this file is importable
as it is, and the template tests unit-test its functions.
"""

import json
import shutil
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

# option -> picked value -> paths (globs, relative to the project) that only that value keeps.
MANIFEST: dict[str, dict[str, tuple[str, ...]]] = {
    "task_backend": {
        "background": (
            "app/tasks/background",
            "tests/tasks/background",
        ),
        "celery": (
            "app/tasks/celery",
            "app/tasks/celery_app.py",
            "app/tasks/dead_letters.py",
            "tests/tasks/test_dead_letter_store.py",
            "app/tasks/finished_counts.py",
            "tests/tasks/celery",
            "tests/tasks/test_finished_counts.py",
            "tests/tasks/test_queue_redis.py",
            "tests/tasks/test_quotas_processes.py",
            "app/infrastructure/queue_redis.py",
            "tests/rabbitmq_server.py",
            "deploy/celery-*.service",
        ),
        "redis_queue": (
            "app/tasks/redis_queue",
            "app/tasks/worker.py",
            "app/tasks/dead_letters.py",
            "tests/tasks/test_dead_letter_store.py",
            "app/tasks/finished_counts.py",
            "tests/tasks/redis_queue",
            "tests/tasks/test_finished_counts.py",
            "tests/tasks/test_queue_redis.py",
            "tests/tasks/test_quotas_processes.py",
            "app/infrastructure/queue_redis.py",
        ),
    },
    "database": {
        "postgresql": ("tests/api/test_postgres_faults.py", "tests/api/test_postgres_tls.py"),
        "sqlite": ("tests/api/test_sqlite_faults.py", "tests/api/test_sqlite_ids.py"),
    },
    "use_docker": {"yes": ("Dockerfile", "compose.yaml", ".dockerignore")},
    "use_github_actions": {"yes": (".github",)},
    "use_opentelemetry": {
        "yes": (
            "app/observability/tracing.py",
            "app/infrastructure/cache/tracing.py",
            "app/middleware/tracing.py",
            "app/tasks/tracing.py",
            "app/tasks/celery/tracing.py",
            "tests/otlp_receiver.py",
            "tests/**/test_tracing*.py",
        )
    },
    "auth": {
        "none": (
            "app/api/access/none.py",
            "tests/api/test_admin_token.py",
        ),
        "oidc": (
            "app/api/access/oidc.py",
            "app/infrastructure/oidc.py",
            "app/middleware/authentication.py",
            "tests/identity_provider.py",
            "tests/api/test_oidc.py",
            "tests/api/test_oidc_shared_cache.py",
            "tests/tasks/test_subject.py",
        ),
    },
}

WORKER_COMMANDS: dict[str, tuple[str, ...]] = {
    "background": (),
    "celery": (
        "uv run celery -A app.tasks.celery_app worker",
        "uv run celery -A app.tasks.celery_app beat",
    ),
    "redis_queue": ("uv run python -m app.tasks.worker",),
}


def unpicked_patterns(answers: Mapping[str, object]) -> list[str]:
    """The patterns listed under values the answers did not pick, and under no picked value."""
    listed = [
        (answers.get(option) == value, pattern)
        for option, by_value in MANIFEST.items()
        for value, patterns in by_value.items()
        for pattern in patterns
    ]
    kept = {pattern for picked, pattern in listed if picked}
    return [pattern for picked, pattern in listed if not picked and pattern not in kept]


def matching_paths(root: Path, patterns: Iterable[str]) -> list[Path]:
    """The existing paths under `root` that match any of `patterns`."""
    return sorted({path for pattern in patterns for path in root.glob(pattern)})


def remove_path(path: Path) -> None:
    """Delete a file or a whole directory; a path that is already gone is fine."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def prune_empty_parents(root: Path, paths: Iterable[Path]) -> None:
    """Remove directories that the removals left empty, up to (not including) `root`."""
    for path in paths:
        parent = path.parent
        while parent != root and parent.is_dir() and not any(parent.iterdir()):
            parent.rmdir()
            parent = parent.parent


def remove_unpicked(root: Path, answers: Mapping[str, object]) -> list[Path]:
    """Remove every file the answers did not pick; return what was removed."""
    removed = matching_paths(root, unpicked_patterns(answers))
    for path in removed:
        remove_path(path)
    prune_empty_parents(root, removed)
    return removed


def next_steps(answers: Mapping[str, object]) -> str:
    """The commands that take the new project to a running service."""
    lines = [
        f"Created {answers['project_slug']}. Next steps:",
        f"  cd {answers['project_slug']}",
        "  uv sync                      # creates .venv and uv.lock: commit uv.lock",
    ]
    if answers.get("database") == "postgresql":
        lines.append("  # start PostgreSQL and set DATABASE_URL (see .env.example)")
    lines += [
        "  uv run alembic upgrade head",
        "  API_DOCS_ENABLED=true uv run uvicorn app.main:app  # http://127.0.0.1:8000/docs",
    ]
    workers = WORKER_COMMANDS.get(str(answers.get("task_backend")), ())
    if workers:
        lines.append("  # workers (each in its own terminal; they need Redis at REDIS_URL):")
        lines += [f"  {command}" for command in workers]
    if answers.get("use_docker") == "yes":
        lines.append("  # or everything in containers: docker compose up --build")
    lines.append("  uv run pytest                # the test suite")
    return "\n".join(lines)


def main(root: Path, answers: Mapping[str, object]) -> int:
    """Trim the project at `root` to the answers and print the next steps."""
    remove_unpicked(root, answers)
    print(next_steps(answers))
    return 0


if __name__ == "__main__":
    # JSON never holds three unescaped quotes in a row, so no answer can end this literal.
    sys.exit(main(Path.cwd(), json.loads(r"""{{ cookiecutter | tojson }}""")))
