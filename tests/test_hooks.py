"""The hooks: pre-gen rejects bad answers with nothing written; post-gen trims to the answers."""

from pathlib import Path

import pytest
from cookiecutter.exceptions import FailedHookException

from tests.conftest import CHOICES, DEFAULTS, TEMPLATE_DIR, Render, load_hook

pre_gen = load_hook("pre_gen_project")
post_gen = load_hook("post_gen_project")


def generated(output_dir: Path) -> list[Path]:
    """What a render left in `output_dir` (its own config and replay files aside)."""
    return [path for path in output_dir.iterdir() if not path.name.startswith(".")]


GOOD_ANSWERS = {
    "project_name": "My Service",
    "project_slug": "my-service",
    "description": "A service",
    "author_name": "Ada",
    "author_email": "ada@example.com",
    "task_backend": "background",
    "database": "sqlite",
    "use_docker": "yes",
    "use_github_actions": "yes",
    "use_opentelemetry": "yes",
    "auth": "none",
}


@pytest.mark.parametrize("slug", ["my-service", "svc2", "orders_api", "a", "billing-v2"])
def test_good_slugs_pass(slug: str) -> None:
    assert pre_gen.slug_error(slug) is None


@pytest.mark.parametrize(
    ("slug", "reason"),
    [
        ("My-Service", "not a valid distribution name"),
        ("2fast", "not a valid distribution name"),
        ("-svc", "not a valid distribution name"),
        ("svc-", "not a valid distribution name"),
        ("my service", "not a valid distribution name"),
        ("", "not a valid distribution name"),
        ("café", "not a valid distribution name"),
        ("class", "Python keyword"),
        ("match", "Python keyword"),
        ("json", "standard-library"),
        ("asyncio", "standard-library"),
        ("email", "standard-library"),
        ("redis", "depends on or owns"),
        ("celery", "depends on or owns"),
        ("fastapi", "depends on or owns"),
        ("pydantic-settings", "depends on or owns"),
        ("app", "depends on or owns"),
        ("tests", "depends on or owns"),
        ("s" * 51, "longer than 50 characters"),
    ],
)
def test_bad_slugs_are_named_with_the_reason(slug: str, reason: str) -> None:
    error = pre_gen.slug_error(slug)
    assert error is not None
    assert error.startswith(f"project_slug {slug!r}")
    assert reason in error


@pytest.mark.parametrize("email", ["ada@example.com", "a.b+c@mail.example.org"])
def test_good_emails_pass(email: str) -> None:
    assert pre_gen.email_error(email) is None


@pytest.mark.parametrize("email", ["", "ada", "ada@", "@example.com", "ada@example", "a b@c.de"])
def test_bad_emails_are_named(email: str) -> None:
    error = pre_gen.email_error(email)
    assert error is not None
    assert error.startswith("author_email")


def test_choices_match_cookiecutter_json() -> None:
    assert {key: list(values) for key, values in pre_gen.CHOICES.items()} == CHOICES


def test_an_unknown_choice_names_the_field_and_the_allowed_values() -> None:
    errors = pre_gen.choice_errors({**GOOD_ANSWERS, "task_backend": "rq"})
    assert errors == [
        "task_backend 'rq' is not allowed: choose one of background, celery, redis_queue"
    ]


@pytest.mark.parametrize("field", ["project_name", "description", "author_name"])
@pytest.mark.parametrize("value", ['say "hi"', "back\\slash", "two\nlines"])
def test_text_that_would_break_a_literal_is_rejected(field: str, value: str) -> None:
    errors = pre_gen.validate({**GOOD_ANSWERS, field: value})
    assert len(errors) == 1
    assert errors[0].startswith(field)


def test_the_longest_allowed_answers_pass_and_one_more_character_fails() -> None:
    longest = {**GOOD_ANSWERS, "project_name": "N" * 60, "project_slug": "s" * 50}
    assert pre_gen.validate(longest) == []
    too_long = {**longest, "project_name": "N" * 61}
    assert pre_gen.validate(too_long) == [
        f"project_name {'N' * 61!r} is longer than 60 characters: shorten it"
    ]


def test_good_answers_and_the_defaults_validate() -> None:
    assert pre_gen.validate(GOOD_ANSWERS) == []
    first_choices = {key: value[0] for key, value in CHOICES.items()}
    assert pre_gen.validate({**DEFAULTS, **first_choices, "project_slug": "my-service"}) == []


def test_main_reports_every_problem_and_returns_1(capsys: pytest.CaptureFixture[str]) -> None:
    answers = {**GOOD_ANSWERS, "project_slug": "json", "author_email": "nope"}
    assert pre_gen.main(answers) == 1
    err = capsys.readouterr().err
    assert "ERROR: project_slug 'json'" in err
    assert "ERROR: author_email 'nope'" in err
    assert "Nothing was generated" in err


@pytest.mark.parametrize(
    ("answers", "message"),
    [
        ({"project_slug": "redis"}, "project_slug 'redis' shadows"),
        ({"project_slug": "class"}, "project_slug 'class' is a Python keyword"),
        ({"project_slug": "json"}, "project_slug 'json' shadows the standard-library"),
        ({"project_name": "Hello World!"}, "project_slug 'hello-world!' is not a valid"),
        ({"author_email": "not-an-email"}, "author_email 'not-an-email' is not an email"),
        ({"project_name": 'The "Best" API', "project_slug": "best"}, "project_name"),
    ],
)
def test_bad_answers_fail_the_hook_and_write_nothing(
    render: Render,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
    answers: dict[str, str],
    message: str,
) -> None:
    with pytest.raises(FailedHookException):
        render(**answers)
    assert generated(tmp_path / "out") == []
    assert message in capfd.readouterr().err


def test_an_unknown_choice_is_refused_before_anything_is_written(
    render: Render, tmp_path: Path
) -> None:
    with pytest.raises(ValueError, match="choices are"):
        render(task_backend="rq")
    assert generated(tmp_path / "out") == []


def test_answers_with_single_quotes_reach_the_hooks_intact(render: Render) -> None:
    root = render(project_name="O'Brien's Service", project_slug="obrien")
    assert "O'Brien's Service" in (root / "README.md").read_text()


@pytest.mark.parametrize("backend", CHOICES["task_backend"])
def test_unpicked_patterns_are_those_of_the_other_backends(backend: str) -> None:
    patterns = post_gen.unpicked_patterns({**GOOD_ANSWERS, "task_backend": backend})
    own = post_gen.MANIFEST["task_backend"][backend]
    others = [
        pattern
        for value, paths in post_gen.MANIFEST["task_backend"].items()
        if value != backend
        for pattern in paths
    ]
    assert not set(own) & set(patterns)
    assert set(others) - set(own) <= set(patterns)


@pytest.mark.parametrize(
    ("backend", "kept"), [("background", False), ("celery", True), ("redis_queue", True)]
)
def test_a_path_two_backends_list_is_kept_when_either_is_picked(backend: str, kept: bool) -> None:
    patterns = post_gen.unpicked_patterns({**GOOD_ANSWERS, "task_backend": backend})
    assert ("app/tasks/finished_counts.py" not in patterns) is kept


def test_docker_and_actions_files_are_removed_only_when_declined() -> None:
    kept = post_gen.unpicked_patterns(GOOD_ANSWERS)
    assert "Dockerfile" not in kept
    assert ".github" not in kept
    declined = {**GOOD_ANSWERS, "use_docker": "no", "use_github_actions": "no"}
    assert {"Dockerfile", "compose.yaml", ".dockerignore", ".github"} <= set(
        post_gen.unpicked_patterns(declined)
    )


def test_tracing_files_are_removed_only_when_opentelemetry_is_declined() -> None:
    tracing = set(post_gen.MANIFEST["use_opentelemetry"]["yes"])
    assert not tracing & set(post_gen.unpicked_patterns(GOOD_ANSWERS))
    declined = {**GOOD_ANSWERS, "use_opentelemetry": "no"}
    assert tracing <= set(post_gen.unpicked_patterns(declined))


def test_every_plain_manifest_path_exists_in_the_template() -> None:
    project = TEMPLATE_DIR / "{{cookiecutter.project_slug}}"
    missing = [
        path
        for by_value in post_gen.MANIFEST.values()
        for paths in by_value.values()
        for path in paths
        if "*" not in path and not (project / path).exists()
    ]
    assert missing == []


def make_tree(root: Path, paths: list[str]) -> None:
    """Create empty files (and their directories) under root."""
    for path in paths:
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text("")


def test_remove_unpicked_removes_files_dirs_and_emptied_parents(tmp_path: Path) -> None:
    make_tree(
        tmp_path,
        [
            "app/tasks/__init__.py",
            "app/tasks/background/queue.py",
            "app/tasks/celery/queue.py",
            "app/tasks/celery_app.py",
            "app/tasks/redis_queue/queue.py",
            "app/tasks/worker.py",
            "tests/tasks/celery/test_workers.py",
            "tests/tasks/redis_queue/test_workers.py",
            "tests/tasks/background/test_queue.py",
            ".github/workflows/ci.yml",
            "Dockerfile",
        ],
    )
    answers = {**GOOD_ANSWERS, "use_docker": "no", "use_github_actions": "no"}

    removed = post_gen.remove_unpicked(tmp_path, answers)

    remaining = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert remaining == [
        "app/tasks/__init__.py",
        "app/tasks/background/queue.py",
        "tests/tasks/background/test_queue.py",
    ]
    assert not (tmp_path / "app/tasks/celery").exists()
    assert not (tmp_path / "tests/tasks/redis_queue").exists()
    assert not (tmp_path / ".github").exists()
    assert tmp_path / "Dockerfile" in removed


def test_remove_unpicked_is_idempotent(tmp_path: Path) -> None:
    make_tree(
        tmp_path, ["app/tasks/redis_queue/queue.py", "app/tasks/background/queue.py", "compose.yaml"]
    )
    answers = {**GOOD_ANSWERS, "use_docker": "no"}
    assert post_gen.remove_unpicked(tmp_path, answers) != []
    assert post_gen.remove_unpicked(tmp_path, answers) == []
    assert (tmp_path / "app/tasks/background/queue.py").is_file()


def test_prune_empty_parents_stops_at_the_root_and_at_non_empty_dirs(tmp_path: Path) -> None:
    make_tree(tmp_path, ["a/keep.txt"])
    (tmp_path / "a/b/c").mkdir(parents=True)
    post_gen.prune_empty_parents(tmp_path, [tmp_path / "a/b/c/gone.py"])
    assert not (tmp_path / "a/b").exists()
    assert (tmp_path / "a/keep.txt").is_file()
    assert tmp_path.is_dir()


@pytest.mark.parametrize(
    ("backend", "commands"),
    [
        ("background", []),
        (
            "celery",
            ["celery -A app.tasks.celery_app worker", "celery -A app.tasks.celery_app beat"],
        ),
        ("redis_queue", ["python -m app.tasks.worker"]),
    ],
)
def test_next_steps_name_the_commands_of_the_answers(backend: str, commands: list[str]) -> None:
    steps = post_gen.next_steps({**GOOD_ANSWERS, "task_backend": backend})
    assert "cd my-service" in steps
    assert "uv run alembic upgrade head" in steps
    assert "uv run uvicorn app.main:app" in steps
    assert all(command in steps for command in commands)
    assert ("worker" in steps) == bool(commands)


def test_the_hooks_print_next_steps_after_a_real_render(
    render: Render, capfd: pytest.CaptureFixture[str]
) -> None:
    render(task_backend="redis_queue")
    out = capfd.readouterr().out
    assert "cd my-service" in out
    assert "uv run python -m app.tasks.worker" in out
