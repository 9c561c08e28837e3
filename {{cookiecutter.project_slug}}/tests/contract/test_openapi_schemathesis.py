"""The API does what its OpenAPI document says, for any input: schemathesis, all checks.

The app runs under uvicorn on a free port, over the project's database and a real Redis
(cache included), as in production. Every operation goes through the examples, coverage
and fuzzing phases, then the stateful phase chains operations through the links inferred
from the document (create an item, then read, change and delete it). Example counts are
kept small so the whole file runs in well under a minute.
"""

import asyncio
import threading
import time
from collections.abc import Iterator
from typing import Any

import hypothesis
import pytest
import schemathesis
import uvicorn
from hypothesis import HealthCheck
from schemathesis import Case
from schemathesis.config import SchemathesisConfig
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from app.config import Settings
from app.main import create_app
from app.models import Base
from tests.redis_cluster import admin_client
from tests.servers import free_port

MAX_EXAMPLES = 25
STATEFUL_STEPS = 20
CONFIG = {
    "generation": {"max-examples": MAX_EXAMPLES, "database": "none"},
    "checks": {"enabled": True},
    # Sequences use valid data: invalid input is the other phases' job.
    "phases": {"stateful": {"max-steps": STATEFUL_STEPS, "generation": {"mode": "positive"}}},
    "request-timeout": 30.0,
}


@pytest.fixture
def live_server(settings: Settings, redis_url: str) -> Iterator[str]:
    """The app under uvicorn in a thread of its own, with its lifespan, over a real Redis."""
    # Redis for the cache too; tasks still running at the end are given a second, not ten.
    # No rate limits: hypothesis sends thousands of requests from one address.
    update = {"cache_url": redis_url, "task_shutdown_timeout": 1.0, "rate_limit_enabled": False}
    app = create_app(settings.model_copy(update=update))
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive(), "the server stopped while starting"
        assert time.monotonic() < deadline, "the server did not start within 30 s"
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=30)


def valid_credentials(case: Case[Any], credentials: str) -> dict[str, str]:
    """The suite's credentials (a token with every scope, or ADMIN_TOKEN) in place of the ones
    the case made up; none where it sends none (a negative case: the 401 is what it tests)."""
    sent = {name.lower() for name in case.headers or {}}
    return {"Authorization": credentials} if "authorization" in sent else {}


# Built from the document alone (no lifespan, no server): collection needs the operations.
schema = schemathesis.openapi.from_dict(
    create_app(Settings()).openapi(), config=SchemathesisConfig.from_dict(CONFIG)
)


@schema.parametrize()
@hypothesis.settings(suppress_health_check=list(HealthCheck), deadline=None)
def test_every_operation_keeps_its_contract(
    case: Case[Any], live_server: str, credentials: str
) -> None:
    case.call_and_validate(base_url=live_server, headers=valid_credentials(case, credentials))


async def _empty(database_url: str, redis_url: str) -> None:
    """Remove every row (ids start again at 1) and every cached value and task status."""
    engine = create_async_engine(database_url)
    tables = [table.name for table in reversed(Base.metadata.sorted_tables)]  # children first
    async with engine.begin() as connection:
        if engine.dialect.name == "sqlite":
            for table in tables:
                await connection.execute(text(f'DELETE FROM "{table}"'))
            await connection.execute(text("DELETE FROM sqlite_sequence"))
        else:
            names = ", ".join(f'"{table}"' for table in tables)
            await connection.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
    await engine.dispose()
    redis = admin_client(redis_url)
    await redis.flushdb()
    await redis.aclose()


def test_sequences_of_operations_keep_their_contract(
    live_server: str, settings: Settings, redis_url: str, credentials: str
) -> None:
    # The document of the app under test (API_DOCS_ENABLED is false: the server has no copy).
    document = create_app(settings).openapi()
    served = schemathesis.openapi.from_dict(document, config=SchemathesisConfig.from_dict(CONFIG))

    class Workflow(served.as_state_machine()):  # type: ignore[misc]
        """Each scenario starts from an empty service, so replaying one gives the same answers
        (Hypothesis replays scenarios to shrink them, and refuses ones that change)."""

        def setup(self) -> None:
            asyncio.run(_empty(settings.database_url, redis_url))

        def get_call_kwargs(self, case: Case[Any]) -> dict[str, Any]:
            """Every call that sends credentials sends the suite's."""
            return {"headers": valid_credentials(case, credentials), "base_url": live_server}

    Workflow.run(
        settings=hypothesis.settings(
            max_examples=MAX_EXAMPLES,
            stateful_step_count=STATEFUL_STEPS,
            suppress_health_check=list(HealthCheck),
            deadline=None,
        )
    )
