"""TLS to PostgreSQL with libpq's `sslmode` / `sslrootcert` in DATABASE_URL, against a server
that accepts TCP over TLS only, under a CA this test makes (README "Before you expose it").
"""

import asyncio
import ssl
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

import pytest
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient

from app.config import Settings
from app.main import create_app
from tests.conftest import create_database, migrate
from tests.servers import PostgresServer, running_postgres_server
from tests.tls_servers import Authorities, running_tls_postgres
from tests.tls_servers import authorities as authorities

pytestmark = pytest.mark.slow
TIMEOUT = 1.0  # each database wait, so that a refused connection answers quickly


@pytest.fixture(scope="module")
def tls_postgres(authorities: Authorities) -> Iterator[PostgresServer]:
    """A PostgreSQL of this module's own with `hostssl` alone, and a migrated database."""
    with running_tls_postgres(authorities) as server:
        # No sslmode: asyncpg's `prefer` takes TLS, unverified, where the server offers it.
        asyncio.run(create_database(server.url, "tls"))
        migrate(url_of(server, ""))
        yield server


def url_of(server: PostgresServer, query: str) -> str:
    """The URL of the `tls` database on `server`, with `query` after the `?`."""
    return f"postgresql+asyncpg://postgres@127.0.0.1:{server.port}/tls" + (
        f"?{query}" if query else ""
    )


@asynccontextmanager
async def client_at(settings: Settings, url: str, **more: object) -> AsyncIterator[AsyncClient]:
    """A client of an app whose DATABASE_URL is `url` (and any other settings in `more`)."""
    update = {
        "database_url": url,
        "database_connect_timeout": TIMEOUT,
        "database_pool_timeout": TIMEOUT,
        "health_check_timeout": 2 * TIMEOUT,
        **more,
    }
    app: FastAPI = create_app(Settings.model_validate(settings.model_dump() | update))
    async with app.router.lifespan_context(app):
        transport = ASGITransport(app=app)
        async with AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield client


async def assert_serves(client: AsyncClient) -> None:
    """A write and the read of it succeed, and readiness says the database is ok."""
    created = await client.post("/api/v1/items", json={"name": "over tls", "price": 2})
    assert created.status_code == 201, created.text
    read = await client.get(f"/api/v1/items/{created.json()['id']}")
    assert read.status_code == 200
    assert read.json()["name"] == "over tls"
    ready = await client.get("/health/ready")
    assert ready.json()["components"]["database"] == "ok"


async def assert_refused(client: AsyncClient) -> None:
    """Readiness and a read answer 503 (with Retry-After), never 500."""
    ready = await client.get("/health/ready")
    assert ready.status_code == 503
    assert ready.json()["components"]["database"] == "unavailable"
    read = await client.get("/api/v1/items?offset=3")
    assert read.status_code == 503, read.text
    assert int(read.headers["retry-after"]) >= 1


async def test_verify_full_with_the_ca_in_the_url_writes_and_reads(
    settings: Settings, tls_postgres: PostgresServer, authorities: Authorities
) -> None:
    url = url_of(tls_postgres, f"sslmode=verify-full&sslrootcert={authorities.ca_file}")
    async with client_at(settings, url) as client:
        await assert_serves(client)


async def test_migrations_take_the_same_url(
    tls_postgres: PostgresServer, authorities: Authorities
) -> None:
    await create_database(tls_postgres.url, "migrated")
    query = f"sslmode=verify-full&sslrootcert={authorities.ca_file}"
    url = url_of(tls_postgres, query).replace("/tls?", "/migrated?")
    await asyncio.to_thread(migrate, url)  # Alembic's engine reads sslmode as the app's does

    other_ca = url.replace(str(authorities.ca_file), str(authorities.other_ca_file))
    with pytest.raises(ssl.SSLCertVerificationError):
        await asyncio.to_thread(migrate, other_ca)


async def test_verify_full_with_database_ssl_root_cert_serves(
    settings: Settings, tls_postgres: PostgresServer, authorities: Authorities
) -> None:
    url = url_of(tls_postgres, "sslmode=verify-full")
    async with client_at(settings, url, database_ssl_root_cert=authorities.ca_file) as client:
        await assert_serves(client)


async def test_the_url_s_sslrootcert_wins_over_database_ssl_root_cert(
    settings: Settings, tls_postgres: PostgresServer, authorities: Authorities
) -> None:
    url = url_of(tls_postgres, f"sslmode=verify-full&sslrootcert={authorities.other_ca_file}")
    async with client_at(settings, url, database_ssl_root_cert=authorities.ca_file) as client:
        await assert_refused(client)


async def test_pgsslrootcert_is_read_when_neither_the_url_nor_the_setting_names_a_ca(
    settings: Settings,
    tls_postgres: PostgresServer,
    authorities: Authorities,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PGSSLROOTCERT", str(authorities.ca_file))  # asyncpg reads it itself
    url = url_of(tls_postgres, "sslmode=verify-full")
    async with client_at(settings, url) as client:
        await assert_serves(client)
    async with client_at(settings, url, database_ssl_root_cert=authorities.other_ca_file) as client:
        await assert_refused(client)  # DATABASE_SSL_ROOT_CERT wins over PGSSLROOTCERT


@pytest.mark.parametrize("mode", ["verify-full", "verify-ca", "require"])
async def test_a_ca_that_did_not_sign_the_server_s_certificate_is_refused(
    settings: Settings, tls_postgres: PostgresServer, authorities: Authorities, mode: str
) -> None:
    # `require` with a CA file checks the certificate as verify-ca does (as libpq's does).
    url = url_of(tls_postgres, f"sslmode={mode}&sslrootcert={authorities.other_ca_file}")
    async with client_at(settings, url) as client:
        await assert_refused(client)


async def test_verify_full_refuses_a_certificate_for_another_host_and_verify_ca_takes_it(
    settings: Settings, tls_postgres: PostgresServer, authorities: Authorities
) -> None:
    # The server also listens on 127.0.0.2; its certificate names 127.0.0.1 alone.
    ca = f"sslrootcert={authorities.ca_file}"
    other_host = url_of(tls_postgres, "").replace("127.0.0.1", "127.0.0.2")
    async with client_at(settings, f"{other_host}?sslmode=verify-full&{ca}") as client:
        await assert_refused(client)
    async with client_at(settings, f"{other_host}?sslmode=verify-ca&{ca}") as client:
        await assert_serves(client)


@pytest.mark.parametrize(
    "query", ["sslmode=require", "", "sslmode=prefer", "sslmode=allow", "ssl=require"]
)
async def test_modes_that_do_not_verify_connect_without_a_ca(
    settings: Settings, tls_postgres: PostgresServer, query: str
) -> None:
    # No CA anywhere: these modes encrypt (the server takes nothing else) but check no
    # certificate. No sslmode at all is asyncpg's `prefer`.
    async with client_at(settings, url_of(tls_postgres, query)) as client:
        await assert_serves(client)


async def test_sslmode_disable_against_a_tls_only_server_is_refused(
    settings: Settings, tls_postgres: PostgresServer
) -> None:
    async with client_at(settings, url_of(tls_postgres, "sslmode=disable")) as client:
        await assert_refused(client)


async def test_require_and_verify_full_refuse_a_server_without_tls(
    settings: Settings, authorities: Authorities
) -> None:
    # A plaintext server (TLS off): the default, `prefer` and `allow` connect in the clear.
    with running_postgres_server() as plaintext:
        for query in ("sslmode=require", f"sslmode=verify-full&sslrootcert={authorities.ca_file}"):
            async with client_at(settings, f"{plaintext.url}?{query}") as client:
                await assert_refused(client)
        for query in ("", "?sslmode=prefer", "?sslmode=allow"):
            async with client_at(settings, f"{plaintext.url}{query}") as client:
                ready = await client.get("/health/ready")
                assert ready.json()["components"]["database"] == "ok", query
