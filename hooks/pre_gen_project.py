"""Validate every answer before cookiecutter writes anything.

On a bad answer this prints one message per field (what was given, what is allowed) and
exits 1; cookiecutter then removes the half-made project directory. Standard library only,
no network. Jinja appears only in the string literal at the bottom, so this file is also
importable as it is, and the template tests unit-test its functions.
"""

import json
import keyword
import re
import sys
from collections.abc import Mapping

CHOICES: dict[str, tuple[str, ...]] = {
    "task_backend": ("background", "celery", "redis_queue"),
    "database": ("sqlite", "postgresql"),
    "use_docker": ("yes", "no"),
    "use_github_actions": ("yes", "no"),
    "use_opentelemetry": ("yes", "no"),
    "auth": ("none", "oidc"),
}

# Import names the generated service depends on or owns: a project named like one of them
# cannot depend on it (uv refuses) or would shadow it on sys.path.
RESERVED_NAMES = frozenset(
    {
        "aiosqlite",
        "alembic",
        "anyio",
        "app",
        "apscheduler",
        "asyncpg",
        "celery",
        "fastapi",
        "httpx",
        "cryptography",
        "jwt",
        "kombu",
        "migrations",
        "mypy",
        "opentelemetry",
        "orjson",
        "pre_commit",
        "prometheus_client",
        "pydantic",
        "pydantic_settings",
        "pytest",
        "pytest_asyncio",
        "redis",
        "ruff",
        "sqlalchemy",
        "starlette",
        "tests",
        "uvicorn",
    }
)

SLUG_PATTERN = re.compile(r"[a-z]([a-z0-9_-]*[a-z0-9])?")
SLUG_RULE = (
    "lowercase letters, digits, '-' and '_', starting with a letter and ending with a "
    "letter or digit (e.g. 'my-service')"
)
EMAIL_PATTERN = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s.]+")
TEXT_FIELDS = ("project_name", "description", "author_name")
REQUIRED_TEXT_FIELDS = frozenset({"project_name", "author_name"})
TEXT_FORBIDDEN = frozenset('"\\\n\r')
# The name is the default APP_NAME, a string literal in app/config.py that must fit one line.
MAX_PROJECT_NAME = 60
# The slug (with '_') names the PostgreSQL database, whose names are cut at 63 bytes.
MAX_SLUG = 50


def import_name(slug: str) -> str:
    """The module name a distribution name maps to (`my-service` -> `my_service`)."""
    return slug.replace("-", "_")


def slug_error(slug: str) -> str | None:
    """Why `slug` cannot name the project, or None when it can."""
    if not SLUG_PATTERN.fullmatch(slug):
        return f"project_slug {slug!r} is not a valid distribution name: use {SLUG_RULE}"
    if len(slug) > MAX_SLUG:
        return f"project_slug {slug!r} is longer than {MAX_SLUG} characters: shorten it"
    name = import_name(slug)
    if keyword.iskeyword(name) or keyword.issoftkeyword(name):
        return f"project_slug {slug!r} is a Python keyword: pick another name"
    if name in sys.stdlib_module_names:
        return f"project_slug {slug!r} shadows the standard-library module {name!r}"
    if name in RESERVED_NAMES:
        return f"project_slug {slug!r} shadows {name!r}, which the service depends on or owns"
    return None


def email_error(email: str) -> str | None:
    """Why `email` is not an email address, or None when it looks like one."""
    if EMAIL_PATTERN.fullmatch(email):
        return None
    return f"author_email {email!r} is not an email address: use the form name@example.com"


def choice_errors(answers: Mapping[str, object]) -> list[str]:
    """One message per multiple-choice answer that is not among its choices."""
    return [
        f"{field} {answers.get(field)!r} is not allowed: choose one of {', '.join(allowed)}"
        for field, allowed in CHOICES.items()
        if answers.get(field) not in allowed
    ]


def text_error(field: str, value: str) -> str | None:
    """Why a free-text answer cannot be used, or None when it can.

    The answers are written into Python and TOML string literals, where a double quote,
    a backslash or a line break would end or corrupt the literal.
    """
    if field in REQUIRED_TEXT_FIELDS and not value.strip():
        return f"{field} must not be empty"
    if field == "project_name" and len(value) > MAX_PROJECT_NAME:
        return f"project_name {value!r} is longer than {MAX_PROJECT_NAME} characters: shorten it"
    if any(char in value for char in TEXT_FORBIDDEN):
        return f"{field} {value!r} must not contain double quotes, backslashes or line breaks"
    return None


def validate(answers: Mapping[str, object]) -> list[str]:
    """Every problem with `answers`, as messages naming the field and what is allowed."""
    problems = [text_error(field, str(answers.get(field, ""))) for field in TEXT_FIELDS]
    problems += [
        slug_error(str(answers.get("project_slug", ""))),
        email_error(str(answers.get("author_email", ""))),
    ]
    return [problem for problem in problems if problem] + choice_errors(answers)


def main(answers: Mapping[str, object]) -> int:
    """Print every problem to stderr; 1 when there is any, else 0."""
    problems = validate(answers)
    for problem in problems:
        print(f"ERROR: {problem}", file=sys.stderr)
    if problems:
        print("Nothing was generated. Run cookiecutter again with other answers.", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    # JSON never holds three unescaped quotes in a row, so no answer can end this literal.
    sys.exit(main(json.loads(r"""{{ cookiecutter | tojson }}""")))
