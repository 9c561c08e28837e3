"""Dockerfile, compose.yaml and the generated GitHub workflow match the answers and the README.

No Docker engine runs here, so these check what can be checked without one: the files parse,
and their services, commands and dependencies are the ones the answers and the README name.
"""

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import CHOICES, Render

# Bounded headers, connections and keep-alive: the README's "Serving: slow clients".
API_COMMAND = ["uvicorn", "app.main:app", "--host", "0.0.0.0", "--port", "8000", "--http", "h11"]
API_COMMAND += ["--h11-max-incomplete-event-size", "16384", "--limit-concurrency", "1000"]
API_COMMAND += ["--timeout-keep-alive", "5", "--no-server-header", "--no-proxy-headers"]
WORKER_COMMANDS = {
    "background": {},
    "celery": {
        "worker": "celery -A app.tasks.celery_app worker",
        "beat": "celery -A app.tasks.celery_app beat",
    },
    "redis_queue": {"worker": "python -m app.tasks.worker"},
}
BACKEND_DATABASE = [(b, d) for b in CHOICES["task_backend"] for d in CHOICES["database"]]


def load_yaml(path: Path) -> Any:
    """Parse one YAML file."""
    return yaml.safe_load(path.read_text())


def command_line(service: dict[str, Any]) -> str:
    """A compose service's command as one string, whichever form it was written in."""
    command = service["command"]
    return command if isinstance(command, str) else " ".join(command)


def dockerfile_instructions(path: Path, keyword: str) -> list[str]:
    """The arguments of every `keyword` instruction in a Dockerfile (continuations joined)."""
    text = re.sub(r"\\\n\s*", " ", path.read_text())
    return [
        line.split(None, 1)[1]
        for line in text.splitlines()
        if line.split(None, 1)[:1] == [keyword] and len(line.split(None, 1)) == 2
    ]


@pytest.fixture(params=BACKEND_DATABASE, ids=lambda pair: "-".join(pair))
def project(request: pytest.FixtureRequest, render: Render) -> tuple[str, str, Path]:
    """A project with Docker and GitHub Actions, for one backend x database."""
    backend, database = request.param
    root = render(
        task_backend=backend, database=database, use_docker="yes", use_github_actions="yes"
    )
    return backend, database, root


def test_compose_has_exactly_the_services_the_answers_need(
    project: tuple[str, str, Path],
) -> None:
    backend, database, root = project
    services = load_yaml(root / "compose.yaml")["services"]
    expected = {"api", "migrate", "redis"} | set(WORKER_COMMANDS[backend])
    if backend != "background":
        expected.add("redis-queue")  # the queue never shares eviction with the cache
    if backend == "celery":
        expected.add("flower")
    if database == "postgresql":
        expected.add("postgres")
    assert set(services) == expected


def test_compose_commands_match_the_design_and_the_readme(project: tuple[str, str, Path]) -> None:
    backend, _, root = project
    services = load_yaml(root / "compose.yaml")["services"]
    readme = (root / "README.md").read_text()
    assert services["api"]["command"] == API_COMMAND
    assert " ".join(API_COMMAND) in readme  # the command tests/test_slow_clients.py runs
    assert services["api"]["ulimits"]["nofile"] == {"soft": 65536, "hard": 65536}
    assert command_line(services["migrate"]) == "alembic upgrade head"
    assert "alembic upgrade head" in readme
    for name, command in WORKER_COMMANDS[backend].items():
        assert command_line(services[name]).startswith(command)
        assert command in readme, f"the README does not say how to run the {name}: {command}"


def test_every_long_running_service_has_a_healthcheck(project: tuple[str, str, Path]) -> None:
    _, _, root = project
    services = load_yaml(root / "compose.yaml")["services"]
    unchecked = [name for name, spec in services.items() if "healthcheck" not in spec]
    assert unchecked == ["migrate"]  # a one-shot job: compose waits for it to exit instead
    api_check = " ".join(services["api"]["healthcheck"]["test"])
    assert "urllib.request" in api_check
    assert "/health/ready" in api_check


def test_processes_that_run_tasks_get_longer_than_their_shutdown_timeout(
    project: tuple[str, str, Path],
) -> None:
    backend, _, root = project
    services = load_yaml(root / "compose.yaml")["services"]
    runners = ["api"] if backend == "background" else list(WORKER_COMMANDS[backend])
    runners = [name for name in runners if name != "beat"]  # beat only sends
    shutdown = 10  # TASK_SHUTDOWN_TIMEOUT's default, in seconds
    for name in runners:
        grace = services[name].get("stop_grace_period", "10s")  # Docker's default
        assert grace.endswith("s")
        assert int(grace.removesuffix("s")) > shutdown, name


def test_api_and_workers_start_after_the_migration_succeeded(
    project: tuple[str, str, Path],
) -> None:
    backend, database, root = project
    services = load_yaml(root / "compose.yaml")["services"]
    for name in ["api", *(n for n in WORKER_COMMANDS[backend] if n != "beat")]:
        assert services[name]["depends_on"]["migrate"] == {
            "condition": "service_completed_successfully"
        }
    migrate_needs = services["migrate"].get("depends_on", {})
    assert ("postgres" in migrate_needs) == (database == "postgresql")


def test_services_of_the_app_share_one_environment(project: tuple[str, str, Path]) -> None:
    backend, database, root = project
    services = load_yaml(root / "compose.yaml")["services"]
    app_services = ["api", "migrate", *WORKER_COMMANDS[backend]]
    environments = [services[name]["environment"] for name in app_services]
    assert all(env == environments[0] for env in environments)
    env = environments[0]
    assert env["CACHE_URL"].startswith("redis://redis:6379")
    if backend != "background":
        assert "@redis-queue:6379/" in env["REDIS_URL"]
    assert ("REDIS_URL" in env) == (backend != "background")
    host = "@postgres:5432/" if database == "postgresql" else "sqlite+aiosqlite:////app/data/"
    assert host in env["DATABASE_URL"]


def test_the_cache_may_evict_and_the_queue_never_does(project: tuple[str, str, Path]) -> None:
    backend, _, root = project
    services = load_yaml(root / "compose.yaml")["services"]
    cache = command_line(services["redis"])
    assert "--maxmemory 256mb" in cache
    assert "--maxmemory-policy allkeys-lru" in cache
    if backend == "background":
        assert "REDIS_PASSWORD" not in (root / "compose.yaml").read_text()
        return
    queue = services["redis-queue"]
    command = command_line(queue)
    assert "--maxmemory-policy noeviction" in command
    assert "--appendonly yes --appendfsync everysec" in command
    assert '--requirepass "$$REDIS_PASSWORD"' in command  # $$: compose leaves it to sh
    required = re.compile(r"^\$\{REDIS_PASSWORD:\?[^}]+\}$")  # compose stops when unset
    assert required.match(queue["environment"]["REDIS_PASSWORD"])
    url = services["api"]["environment"]["REDIS_URL"]
    assert re.match(r"redis://:\$\{REDIS_PASSWORD:\?[^}]+\}@redis-queue:6379/0$", url), url
    for name in ["api", *WORKER_COMMANDS[backend]]:
        assert services[name]["depends_on"]["redis-queue"] == {"condition": "service_healthy"}
    docker_section = (root / "README.md").read_text().split("## Docker", 1)[1]
    assert "REDIS_PASSWORD" in docker_section
    assert "# REDIS_PASSWORD=" in (root / ".env.example").read_text()


def test_dockerfile_is_multi_stage_locked_and_non_root(project: tuple[str, str, Path]) -> None:
    _, _, root = project
    dockerfile = root / "Dockerfile"
    assert len(dockerfile_instructions(dockerfile, "FROM")) >= 2
    assert any("uv.lock" in args for args in dockerfile_instructions(dockerfile, "COPY"))
    runs = " ".join(dockerfile_instructions(dockerfile, "RUN"))
    assert "uv sync --locked --no-dev" in runs
    users = dockerfile_instructions(dockerfile, "USER")
    assert users
    assert users[-1] not in {"root", "0"}
    for ignore_file in (".dockerignore", ".gitignore"):
        patterns = (root / ignore_file).read_text().splitlines()
        assert not [p for p in patterns if "uv.lock" in p and not p.startswith("#")]


def runtime_stage(dockerfile: Path) -> str:
    """The instructions of the Dockerfile's last stage, continuations joined."""
    text = re.sub(r"\\\n\s*", " ", dockerfile.read_text())
    return re.split(r"^FROM .*$", text, flags=re.MULTILINE)[-1]


def test_runtime_user_can_write_only_the_data_directory(project: tuple[str, str, Path]) -> None:
    _, _, root = project
    stage = runtime_stage(root / "Dockerfile")
    copies = re.findall(r"^(?:COPY|ADD) .*$", stage, flags=re.MULTILINE)
    assert copies
    assert not [line for line in copies if "--chown" in line or "--chmod" in line]  # root's
    chowned = re.findall(r"chown\s+(?:-\S+\s+)*\S+\s+(.+?)(?:\s*&&|$)", stage, re.MULTILINE)
    assert chowned == ["/app/data"]
    assert "chmod" not in stage
    (user,) = re.findall(r"^USER (\S+)$", stage, flags=re.MULTILINE)
    uid, _, gid = user.partition(":")
    assert uid.isdigit()  # numeric: no /etc/passwd lookup
    assert int(uid) > 0  # never root
    assert f"--uid {uid}" in stage
    assert f"--gid {gid}" in stage
    assert "PYTHONDONTWRITEBYTECODE=1" in stage  # the code is read-only to the user
    builder = (root / "Dockerfile").read_text().split("AS runtime")[0]
    assert "compileall" in builder


def test_compose_takes_the_database_password_from_the_environment(
    project: tuple[str, str, Path],
) -> None:
    _, database, root = project
    text = (root / "compose.yaml").read_text()
    assert "postgres:postgres" not in text
    services = load_yaml(root / "compose.yaml")["services"]
    if database != "postgresql":
        assert "POSTGRES" not in text
        return
    required = re.compile(r"^\$\{POSTGRES_PASSWORD:\?[^}]+\}$")  # compose stops when unset
    assert required.match(services["postgres"]["environment"]["POSTGRES_PASSWORD"])
    url = services["api"]["environment"]["DATABASE_URL"]
    found = re.match(r"postgresql\+asyncpg://(\$\{[^}]+\}):(\$\{[^}]+\})@postgres:5432/", url)
    assert found, url
    user, password = found.groups()
    assert user == services["postgres"]["environment"]["POSTGRES_USER"]
    assert required.match(password)
    readme = (root / "README.md").read_text()
    assert "POSTGRES_PASSWORD" in readme.split("## Docker", 1)[1]
    env_example = (root / ".env.example").read_text()
    assert "# POSTGRES_PASSWORD=" in env_example  # shown, never set, in a committed file
    assert ".env" in (root / ".gitignore").read_text().splitlines()


def test_dockerfile_cmd_is_the_api_command_of_compose_and_readme(
    project: tuple[str, str, Path],
) -> None:
    _, _, root = project
    (cmd,) = dockerfile_instructions(root / "Dockerfile", "CMD")
    assert json.loads(cmd) == API_COMMAND
    assert " ".join(API_COMMAND[:2]) in (root / "README.md").read_text()


def test_github_workflow_runs_lint_types_and_tests_against_service_containers(
    project: tuple[str, str, Path],
) -> None:
    _, database, root = project
    workflow = load_yaml(root / ".github/workflows/ci.yml")
    steps = [step.get("run", "") for job in workflow["jobs"].values() for step in job["steps"]]
    for command in ("ruff check", "ruff format --check", "mypy", "pytest"):
        assert any(command in step for step in steps), command
    test_job = workflow["jobs"]["test"]
    assert "redis" in test_job["services"]
    assert ("postgres" in test_job["services"]) == (database == "postgresql")
    conftest = (root / "tests/conftest.py").read_text()
    for name in test_job["env"]:
        assert f'"{name}"' in conftest, f"tests/conftest.py does not read {name}"
    assert ("TEST_DATABASE_URL" in test_job["env"]) == (database == "postgresql")
    assert workflow["concurrency"]["cancel-in-progress"] is True
    assert "${{ github.ref }}" in workflow["concurrency"]["group"]
