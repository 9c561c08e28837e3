"""Render services from the template and install their dependencies with uv."""

import contextlib
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

TEMPLATE = Path(__file__).resolve().parents[2]
CHOICES = json.loads((TEMPLATE / "cookiecutter.json").read_text())
SLUG = "my-service"


@contextlib.contextmanager
def _quiet_stdout() -> Iterator[None]:
    """Silence the post-gen hook's next-steps message (it writes to fd 1 from a subprocess)."""
    saved = os.dup(1)
    with open(os.devnull, "wb") as devnull:
        os.dup2(devnull.fileno(), 1)
        try:
            yield
        finally:
            os.dup2(saved, 1)
            os.close(saved)


def render(out: Path, **answers: str) -> Path:
    """Render the template into `out` with `answers` (no prompts); return the project directory."""
    from cookiecutter.main import cookiecutter

    out.mkdir(parents=True, exist_ok=True)
    with _quiet_stdout():
        project = cookiecutter(
            str(TEMPLATE),
            no_input=True,
            overwrite_if_exists=True,
            output_dir=str(out),
            extra_context={"use_docker": "no", "use_github_actions": "no", **answers},
        )
    return Path(project)


def sync(project: Path) -> Path:
    """`uv sync` the rendered project as its Docker image does; return its Python interpreter.

    Bytecode is compiled at install (the image sets UV_COMPILE_BYTECODE=1): where
    PYTHONDONTWRITEBYTECODE is set, as on this machine, every process would otherwise compile
    its imports from source, and a new worker would take seconds longer to start.
    """
    subprocess.run(["uv", "sync", "--quiet", "--compile-bytecode"], cwd=project, check=True, timeout=600)
    return project / ".venv" / "bin" / "python"


def export_pins(project: Path, target: Path) -> Path:
    """The versions `uv sync` resolved for `project` (no dev tools), as a requirements file."""
    subprocess.run(
        ["uv", "export", "--frozen", "--no-dev", "--no-hashes", "--no-emit-project", "--quiet", "-o", str(target)],
        cwd=project,
        check=True,
        timeout=120,
    )
    return target


def environment(path: Path, *requirements: str) -> str:
    """A new virtualenv at `path` with `requirements` (uv pip install arguments), compiled as `sync`
    compiles; its Python."""
    subprocess.run(["uv", "venv", "--quiet", "--python", sys.executable, str(path)], check=True, timeout=120)
    python = path / "bin" / "python"
    subprocess.run(
        ["uv", "pip", "install", "--quiet", "--compile-bytecode", "--python", str(python), *requirements],
        check=True,
        timeout=600,
    )
    return str(python)


def combinations() -> list[dict[str, str]]:
    """Every combination of the template's choice options."""
    options = {key: value for key, value in CHOICES.items() if isinstance(value, list)}
    return [dict(zip(options, values, strict=True)) for values in itertools.product(*options.values())]


def time_all_renders(limit: int | None = None) -> tuple[int, float]:
    """Render every combination (or the first `limit`) into a scratch dir; return (count, wall seconds)."""
    combos = combinations()[:limit]
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-render-") as scratch, _quiet_stdout():
        from cookiecutter.main import cookiecutter

        for index, answers in enumerate(combos):
            cookiecutter(str(TEMPLATE), no_input=True, output_dir=f"{scratch}/{index}", extra_context=answers)
    return len(combos), time.perf_counter() - started
