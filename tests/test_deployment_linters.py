"""The field's own linters pass on every combination's deployment files and on our own CI.

zizmor (the GitHub Actions security linter) on the workflows, hadolint on the Dockerfile, and
check-jsonschema's vendored compose-spec and GitHub-workflow schemas: all come from PyPI with
the template's dev dependencies and run offline. Each linter is first shown a file with a
known fault, so that one which silently checks nothing cannot pass.
"""

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import BACKEND_DATABASE, TEMPLATE_DIR, combination_id, render_template

TOOLS = Path(sys.executable).parent  # the template's virtual environment
TEMPLATE_WORKFLOWS = sorted((TEMPLATE_DIR / ".github" / "workflows").glob("*.yml"))
PINNED = re.compile(r"^[\w.-]+/[\w./-]+@[0-9a-f]{40} # v\d+\.\d+\.\d+$")


def lint(tool: str, *args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run one linter of the dev dependency group; its exit status says whether it found faults."""
    binary = TOOLS / tool
    assert binary.exists(), f"{tool} is missing: `uv sync` installs the template's dev group"
    command = [str(binary), *map(str, args)]
    return subprocess.run(
        command, cwd=cwd, capture_output=True, text=True, check=False, timeout=300
    )


def zizmor(*paths: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    """zizmor's default audits, offline and without any configuration that could mute one."""
    return lint("zizmor", "--offline", "--no-config", "--no-progress", *paths, cwd=cwd)


def hadolint(dockerfile: Path) -> subprocess.CompletedProcess[str]:
    """hadolint with its default rules; it fails on any finding, down to `info`."""
    return lint("hadolint", "--failure-threshold", "info", dockerfile, cwd=dockerfile.parent)


def schema_check(schema: str, *paths: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    """check-jsonschema against one of the schemas it ships (`vendor.*`): no download."""
    return lint("check-jsonschema", "--builtin-schema", f"vendor.{schema}", *paths, cwd=cwd)


def report(result: subprocess.CompletedProcess[str]) -> str:
    """What a linter said, for an assertion message."""
    return f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"


@pytest.fixture(scope="module", params=BACKEND_DATABASE, ids=combination_id)
def project(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project with Docker and GitHub Actions, for one backend x database."""
    answers = {**request.param, "use_docker": "yes", "use_github_actions": "yes"}
    return render_template(tmp_path_factory.mktemp("lint"), **answers)


def workflows(root: Path) -> list[Path]:
    """The GitHub workflows of a rendered project."""
    found = sorted((root / ".github" / "workflows").glob("*.yml"))
    assert found
    return found


def test_each_linter_reports_a_known_fault(tmp_path: Path) -> None:
    workflow = tmp_path / "ci.yml"
    workflow.write_text(
        "on: push\npermissions: {}\njobs:\n  test:\n    runs-on: ubuntu-latest\n    steps:\n"
        "      - uses: actions/checkout@v4\n"
    )
    no_runner = tmp_path / "no-runner.yml"
    no_runner.write_text(workflow.read_text().replace("    runs-on: ubuntu-latest\n", ""))
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text("FROM python:3.12-slim\nRUN apt-get update && apt-get install -y curl\n")
    compose = tmp_path / "compose.yaml"
    compose.write_text("services:\n  api:\n    image: api\n    ports: 8000\n")

    unpinned = zizmor(workflow, cwd=tmp_path)
    assert unpinned.returncode != 0
    assert "unpinned-uses" in unpinned.stdout + unpinned.stderr
    assert "artipacked" in unpinned.stdout + unpinned.stderr
    assert "DL3008" in hadolint(dockerfile).stdout  # apt-get install without versions
    assert schema_check("compose-spec", compose, cwd=tmp_path).returncode != 0
    assert schema_check("github-workflows", workflow, cwd=tmp_path).returncode == 0
    assert schema_check("github-workflows", no_runner, cwd=tmp_path).returncode != 0


def test_zizmor_finds_nothing_in_the_generated_workflow(project: Path) -> None:
    result = zizmor(*workflows(project), cwd=project)
    assert result.returncode == 0, report(result)


def test_hadolint_finds_nothing_in_the_dockerfile(project: Path) -> None:
    result = hadolint(project / "Dockerfile")
    assert result.returncode == 0, report(result)


def test_compose_file_follows_the_compose_specification(project: Path) -> None:
    result = schema_check("compose-spec", project / "compose.yaml", cwd=project)
    assert result.returncode == 0, report(result)


def test_generated_workflow_follows_the_github_workflow_schema(project: Path) -> None:
    result = schema_check("github-workflows", *workflows(project), cwd=project)
    assert result.returncode == 0, report(result)


def test_zizmor_finds_nothing_in_the_templates_own_workflows() -> None:
    result = zizmor(*TEMPLATE_WORKFLOWS, cwd=TEMPLATE_DIR)
    assert result.returncode == 0, report(result)


def test_templates_own_workflows_follow_the_github_workflow_schema() -> None:
    result = schema_check("github-workflows", *TEMPLATE_WORKFLOWS, cwd=TEMPLATE_DIR)
    assert result.returncode == 0, report(result)


@pytest.mark.parametrize("which", ["generated", "template"])
def test_workflows_pin_actions_keep_no_credentials_and_grant_only_reads(
    which: str, tmp_path: Path
) -> None:
    if which == "generated":
        answers = {"use_github_actions": "yes", "database": "postgresql"}
        paths = workflows(render_template(tmp_path, **answers))
    else:
        paths = TEMPLATE_WORKFLOWS
    for path in paths:
        workflow = yaml.safe_load(path.read_text())
        assert workflow["permissions"] == {}, path  # each job says what it needs
        for name, job in workflow["jobs"].items():
            assert job["permissions"] == {"contents": "read"}, (path, name)
            for step in job["steps"]:
                if "uses" not in step:
                    continue
                line = next(li for li in path.read_text().splitlines() if step["uses"] in li)
                assert PINNED.match(line.split("uses: ", 1)[1]), line  # a SHA and its version
                if step["uses"].startswith("actions/checkout@"):
                    assert step["with"]["persist-credentials"] is False, (path, name)
