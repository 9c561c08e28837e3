"""Fixtures shared by every test: real servers, fresh state per test, an app with its lifespan."""

import asyncio
import os
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from alembic import command
from alembic.config import Config
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient
from pydantic import SecretStr
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from app.config import Settings
from app.infrastructure.redis_client import redis_client
from app.main import create_app
from app.models import Base
from app.state import AppState
{%- if cookiecutter.auth == "oidc" %}
from tests.identity_provider import identity_provider, running_provider  # noqa: F401
{%- endif %}
{%- if cookiecutter.use_opentelemetry == "yes" %}
from tests.otlp_receiver import no_ambient_tracing, otlp_receiver  # noqa: F401
{%- endif %}
from tests.redis_cluster import RedisCluster, running_cluster
from tests.servers import RedisServer, running_postgres, running_redis
{%- if cookiecutter.task_backend == "celery" %}
from tests.tasks.celery.fixtures import broker, broker_url, rabbitmq_server  # noqa: F401
{%- endif %}

PROJECT_ROOT = Path(__file__).resolve().parent.parent
{%- if cookiecutter.auth == "none" %}
ADMIN_TOKEN = "test-admin-token"
{%- endif %}
METRICS_TOKEN = "test-metrics-token"
# With auth=oidc every /api/v1 request carries a token, and the shared response cache answers
# only verified tokens (tests/api/test_oidc_shared_cache.py): the tests of what it gives
# anonymous callers are left out, and so are the tests that count anonymous callers by address
# (rate limits) or change the item reads' access: the auth=none projects run them.
SHARED_RESPONSE_CACHE = {{ cookiecutter.auth == "none" }}
OPEN_ROUTES_ONLY = ("shared_response_cache", "anonymous_callers")
USES_POSTGRES = str(Settings.model_fields["database_url"].default).startswith("postgresql")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Leave out the tests of open routes (`OPEN_ROUTES_ONLY` markers) where none are open."""
    if SHARED_RESPONSE_CACHE:
        return
    left_out = [
        item for item in items if any(item.get_closest_marker(name) for name in OPEN_ROUTES_ONLY)
    ]
    config.hook.pytest_deselected(items=left_out)
    items[:] = [item for item in items if item not in left_out]


def alembic_config(database_url: str) -> Config:
    """The project's Alembic configuration, pointed at `database_url`."""
    config = Config(str(PROJECT_ROOT / "alembic.ini"))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def migrate(database_url: str) -> None:
    """Bring the database at `database_url` to the newest Alembic revision."""
    command.upgrade(alembic_config(database_url), "head")


@pytest.fixture(scope="session")
def redis_server() -> Iterator[str]:
    """The URL of a real Redis for the whole run (`TEST_REDIS_URL`, or one we start)."""
    external = os.environ.get("TEST_REDIS_URL")
    if external:
        yield external
        return
    with running_redis() as server:
        yield server.url


@pytest.fixture
async def redis_url(redis_server: str) -> str:
    """The shared Redis, emptied before the test so that no state leaks between tests.

    With `TEST_REDIS_URL=redis+cluster://...` it is a cluster, and every master is emptied.
    """
    client = redis_client(redis_server, max_connections=1, timeout=10.0)
    await client.flushdb()
    await client.aclose()
    return redis_server


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisCluster]:
    """A real three-master Redis Cluster of the run's own (readiness and topology tests)."""
    with running_cluster() as cluster:
        yield cluster


@pytest.fixture
def restartable_redis() -> Iterator[RedisServer]:
    """A Redis of the test's own, which the test may stop and start (outage tests)."""
    with running_redis() as server:
        yield server


async def create_database(server_url: str, name: str) -> None:
    """Create (or empty) the database `name` on the server `server_url` points at."""
    engine = create_async_engine(server_url, isolation_level="AUTOCOMMIT")
    async with engine.connect() as connection:
        await connection.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        await connection.execute(text(f'CREATE DATABASE "{name}"'))
    await engine.dispose()


@pytest.fixture(scope="session")
def migrated_database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A database migrated once per run: a SQLite file to copy, or a PostgreSQL database."""
    if not USES_POSTGRES:
        url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('db') / 'migrated.db'}"
        migrate(url)
        yield url
        return
    external = os.environ.get("TEST_DATABASE_URL")
    if external:
        yield _migrated_postgres(external)
        return
    with running_postgres() as server_url:
        yield _migrated_postgres(server_url)


def _migrated_postgres(server_url: str) -> str:
    base, _, _ = server_url.rpartition("/")
    asyncio.run(create_database(server_url, "app_test"))
    url = f"{base}/app_test"
    migrate(url)
    return url


@pytest.fixture
async def database_url(migrated_database_url: str, tmp_path: Path) -> str:
    """A migrated database with no rows: a fresh SQLite copy, or truncated PostgreSQL tables."""
    if not USES_POSTGRES:
        source = migrated_database_url.removeprefix("sqlite+aiosqlite:///")
        target = tmp_path / "test.db"
        shutil.copyfile(source, target)
        return f"sqlite+aiosqlite:///{target}"
    engine = create_async_engine(migrated_database_url)
    tables = ", ".join(f'"{table.name}"' for table in Base.metadata.sorted_tables)
    async with engine.begin() as connection:
        await connection.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    await engine.dispose()
    return migrated_database_url


def _guarded(client: httpx.AsyncClient) -> bool:
    """Whether `client` calls the service (a real server, or an app of `create_app`), not an
    app a test assembled without access control (the response-cache middleware tests)."""
    transport = client._transport
    if not isinstance(transport, ASGITransport):
        return True
    return hasattr(getattr(transport.app, "state", None), "settings")


@pytest.fixture(autouse=True)
def credentials(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The Authorization every test's httpx client sends where the service asks for one
    (`auth=oidc`: all of /api/; `auth=none`: the operator routes), unless the request sets its
    own: the suite exercises the service, `tests/api/test_oidc.py` / `test_admin_token.py` access.
    """
{%- if cookiecutter.auth == "oidc" %}
    value, needs = f"Bearer {request.getfixturevalue('identity_provider').token()}", "/api/"
{%- else %}
    value, needs = f"Bearer {ADMIN_TOKEN}", "/dead-letters"
{%- endif %}
    send = httpx.AsyncClient.send

    async def send_with_credentials(
        client: httpx.AsyncClient, sent: httpx.Request, **options: object
    ) -> httpx.Response:
        if needs in sent.url.path and "authorization" not in sent.headers and _guarded(client):
            sent.headers["Authorization"] = value
        if sent.url.path == "/metrics" and "authorization" not in sent.headers:
            sent.headers["Authorization"] = f"Bearer {METRICS_TOKEN}"  # tests/api/test_metrics.py
        return await send(client, sent, **options)  # type: ignore[arg-type]

    monkeypatch.setattr(httpx.AsyncClient, "send", send_with_credentials)
    return value


@pytest.fixture
def settings(database_url: str, request: pytest.FixtureRequest) -> Settings:
    """Settings for one test: fresh database, in-process cache, the test's Redis as broker."""
    settings = Settings(
        database_url=database_url,
        cache_url="memory://",
        log_format="console",
        task_demo_tasks=True,  # sleep and flaky, which many tests enqueue
        task_max_in_flight_per_client=100_000,  # floods from one client; test_quotas bounds it
    )
{%- if cookiecutter.auth == "oidc" %}
    access = request.getfixturevalue("identity_provider").settings()
{%- else %}
    access = {"admin_token": SecretStr(ADMIN_TOKEN)}
{%- endif %}
    settings = settings.model_copy(update=access)
    scraper = {"metrics_token": SecretStr(METRICS_TOKEN), "metrics_render_interval": 0.0}
    settings = settings.model_copy(update=scraper)
    if "redis_url" not in Settings.model_fields:  # the background backend has no broker
        return settings
    queues: dict[str, object] = {"redis_url": request.getfixturevalue("redis_url")}
    if "celery_broker_url" in Settings.model_fields:  # RabbitMQ when the Redis is a cluster
        queues["celery_broker_url"] = request.getfixturevalue("broker_url")
    return settings.model_copy(update=queues)


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    """An app with its lifespan running, so every client is open as in production."""
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[AsyncClient]:
    """An HTTP client that calls the app in-process."""
    transport = ASGITransport(app=app)
    async with AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


@pytest.fixture
def resources(app: FastAPI) -> AppState:
    """The clients the app's lifespan opened."""
    state: AppState = app.state.resources
    return state
