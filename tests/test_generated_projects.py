"""The generated projects themselves: lint, types, their own test suite, pre-commit, cruft.

One project per task backend x database (Docker and GitHub Actions change no Python; see
test_render). Each runs `uv sync` against uv's shared cache, so six environments cost little
more than one. The generated suites start real Redis and PostgreSQL servers; under CI=true a
skipped generated test fails the template test, so a green run never hides an untested server.
"""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import BACKEND_DATABASE, TEMPLATE_DIR, Render, combination_id

pytestmark = pytest.mark.slow

UNDER_CI = os.environ.get("CI", "").lower() == "true"
GIT_IDENTITY = ["-c", "user.name=Template Tests", "-c", "user.email=tests@example.com"]


def clean_env() -> dict[str, str]:
    """This process's environment without what would leak into a nested uv or pytest."""
    return {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PYTEST_", "VIRTUAL_ENV", "UV_PROJECT_ENVIRONMENT"))
    }


def run(command: list[str], cwd: Path, timeout: float = 600) -> str:
    """Run a command in `cwd`; fail the test with its output unless it exits 0."""
    result = subprocess.run(
        command,
        cwd=cwd,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if result.returncode != 0:
        shown = " ".join(command)
        pytest.fail(f"`{shown}` exited {result.returncode} in {cwd}:\n{failure(result)}")
    return result.stdout + result.stderr


def failure(result: subprocess.CompletedProcess[str]) -> str:
    """What a failed command printed: pytest's FAILED and ERROR lines (`-rfE`) first, which
    the logs of a long run would push out of view, then the ends of its output."""
    lines = result.stdout.splitlines()
    failed = [line for line in lines if line.startswith(("FAILED", "ERROR"))]
    return "\n".join([*failed[:40], result.stdout[-6000:], result.stderr[-2000:]])


# Bytecode compiled at install, as the Docker image does: where PYTHONDONTWRITEBYTECODE is
# set, every worker and server a generated suite starts would otherwise compile its imports
# from source (the celery suite ran in 127 s without, 78 s with).
SYNC = ["uv", "sync", "--quiet", "--compile-bytecode"]


def skipped_count(pytest_output: str) -> int:
    """How many tests the closing line of a pytest run reports as skipped."""
    found = re.findall(r"(\d+) skipped", pytest_output.splitlines()[-1] if pytest_output else "")
    return int(found[0]) if found else 0


@pytest.mark.parametrize("answers", BACKEND_DATABASE, ids=combination_id)
def test_generated_project_lints_type_checks_and_passes_its_tests(
    render: Render, answers: dict[str, str]
) -> None:
    root = render(**answers, use_docker="no", use_github_actions="no")
    run(SYNC, root)
    run(["uv", "run", "ruff", "check", "--no-cache", "."], root)
    run(["uv", "run", "ruff", "format", "--check", "."], root)
    run(["uv", "run", "mypy", "--no-incremental", "."], root)
    output = run(["uv", "run", "pytest", "-q", "-rfEs", "-p", "no:cacheprovider"], root, 1200)
    assert re.search(r"\d+ passed", output), output[-2000:]
    skipped = skipped_count(output.strip())
    if UNDER_CI:
        assert skipped == 0, f"under CI every generated test must run:\n{output[-4000:]}"
    elif skipped:
        pytest.fail(f"{skipped} generated tests were skipped (missing servers?):\n{output[-4000:]}")


def test_pre_commit_passes_on_a_fresh_project(render: Render) -> None:
    root = render()
    run(["git", "init", "--quiet"], root)
    run(SYNC, root)
    run(["git", "add", "--all"], root)
    run(["uv", "run", "pre-commit", "run", "--all-files", "--show-diff-on-failure"], root, 900)


def free_port() -> int:
    """A port that is free on loopback right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def get_json(url: str, data: bytes | None = None) -> tuple[int, object]:
    """The status and JSON body of one request."""
    request = urllib.request.Request(url, data=data, headers={"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=5) as response:
        return response.status, json.loads(response.read())


@pytest.fixture
def quick_started(render: Render) -> Iterator[str]:
    """The README's quick start on the default answers; yields the base URL it serves."""
    root = render()
    run(["uv", "run", "alembic", "upgrade", "head"], root)
    port = free_port()
    server = subprocess.Popen(
        ["uv", "run", "uvicorn", "app.main:app", "--host", "127.0.0.1", "--port", str(port)],
        cwd=root,
        env=clean_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and server.poll() is None:
            try:
                get_json(f"{base}/health/live")
                break
            except OSError:
                time.sleep(0.2)
        yield base
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def test_quick_start_serves_the_default_project(quick_started: str) -> None:
    assert get_json(f"{quick_started}/health/live") == (200, {"status": "ok"})
    status, _ = get_json(f"{quick_started}/health/ready")
    assert status == 200
    item = json.dumps({"name": "first", "price": "1.50"}).encode()
    status, body = get_json(f"{quick_started}/api/v1/items", data=item)
    assert status == 201
    assert isinstance(body, dict)
    assert body["name"] == "first"


def committed_copy(source: Path, target: Path) -> Path:
    """A git repository holding the template's working tree (cruft clones templates)."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=source,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        if (source / name).is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source / name, target / name)
    commit_all(target, "template")
    return target


def commit_all(repo: Path, message: str) -> None:
    """Commit everything in `repo`, making it a repository first if needed."""
    if not (repo / ".git").exists():
        run(["git", "init", "--quiet"], repo)
    run(["git", "add", "--all"], repo)
    run(["git", *GIT_IDENTITY, "commit", "--quiet", "-m", message], repo)


def test_cruft_create_check_and_update_rerun_the_hooks_safely(tmp_path: Path) -> None:
    template = committed_copy(TEMPLATE_DIR, tmp_path / "template")
    out = tmp_path / "out"
    cruft = ["uv", "run", "--project", str(TEMPLATE_DIR), "cruft"]
    answers = json.dumps({"task_backend": "redis_queue", "use_docker": "no"})
    create = ["create", "--no-input", "--output-dir", str(out), "--extra-context", answers]
    run([*cruft, *create, str(template)], tmp_path)
    project = out / "my-service"
    recorded = json.loads((project / ".cruft.json").read_text())["context"]["cookiecutter"]
    assert recorded["task_backend"] == "redis_queue"
    run([*cruft, "check"], project)
    commit_all(project, "generated")

    readme = template / "{{cookiecutter.project_slug}}" / "README.md"
    readme.write_text(readme.read_text() + "\nA line the template added later.\n")
    commit_all(template, "template change")

    run([*cruft, "update", "--skip-apply-ask"], project)

    assert "A line the template added later." in (project / "README.md").read_text()
    assert (project / "app/tasks/worker.py").is_file()
    assert not (project / "app/tasks/background").exists()
    assert not (project / "Dockerfile").exists()
    run([*cruft, "check"], project)
