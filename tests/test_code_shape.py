"""The generated code stays readable: Jinja in Python files toggles one line at a time."""

import re
from pathlib import Path

import pytest

from tests.conftest import TEMPLATE_DIR

PROJECT_TEMPLATE = TEMPLATE_DIR / "{{cookiecutter.project_slug}}"
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
