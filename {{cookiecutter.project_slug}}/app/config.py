"""Service settings, read once from the environment and `.env`."""

from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    Field,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from app.database_urls import split_tls
from app.rates import parse_rate
from app.redis_urls import check_redis_url


def _valid_rate_limit(text: str) -> str:
    """Refuse at start a rate that is not one (say `600/minute`, `10/second`)."""
    parse_rate(text)  # raises ValueError naming the text
    return text


RateLimitText = Annotated[str, AfterValidator(_valid_rate_limit)]


class Settings(BaseSettings):
    """Every knob of the service; names match the environment variables (case-insensitive)."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    app_name: str = "{{ cookiecutter.project_name }}"
    api_docs_enabled: bool = False  # true: /docs, /redoc and /openapi.json are served
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["json", "console"] = "json"

    # Database
{%- if cookiecutter.database == "postgresql" %}
    database_url: str = "postgresql+asyncpg://postgres:postgres@localhost:5432/{{ cookiecutter.project_slug.replace('-', '_') }}"
{%- else %}
    database_url: str = "sqlite+aiosqlite:///./{{ cookiecutter.project_slug }}.db"
{%- endif %}
    database_pool_size: int = Field(default=5, ge=1)
    # Seconds; together they bound how long a request waits for a database that is down,
    # stopped or locked before it answers 503 (README: "Timeouts").
    database_connect_timeout: float = Field(default=2.0, gt=0)  # open a connection
    database_statement_timeout: float = Field(default=5.0, gt=0)  # one statement, or a lock wait
    database_pool_timeout: float = Field(default=2.0, gt=0)  # wait for a pooled connection
    # The CA that signed the server's certificate, for DATABASE_URL's sslmode=verify-full (or
    # verify-ca, require) when the URL names no sslrootcert (README "Before you expose it").
    database_ssl_root_cert: Path | None = None

    # HTTP
    request_max_body: int = Field(default=1024 * 1024, ge=1)  # bytes; larger bodies get 413
    health_check_timeout: float = Field(default=2.0, gt=0)  # /health/ready answers within this
    health_check_cache_seconds: float = Field(default=1.0, ge=0)  # one probe round serves them all
    # Several API processes on one host: a directory they share, emptied before they start, so
    # that /metrics sums them (README "Several processes"). Export it: prometheus-client reads
    # the environment variable itself, and the service refuses to start if only .env has it.
    prometheus_multiproc_dir: Path | None = None

    # Access (README "Before you expose it")
{%- if cookiecutter.auth == "oidc" %}
    auth_issuer: str | None = None  # the provider's issuer URL, exactly as its tokens say `iss`
{%- endif %}
{%- if cookiecutter.auth == "oidc" %}
    auth_audience: str | None = None  # the `aud` its tokens carry for this service
{%- endif %}
{%- if cookiecutter.auth == "oidc" %}
    auth_jwks_url: str | None = None  # None: `jwks_uri` of the issuer's discovery document
{%- endif %}
{%- if cookiecutter.auth == "oidc" %}
    auth_scopes_claim: str = "scope"  # space-separated or a list; `scp`, `realm_access.roles`
{%- endif %}
{%- if cookiecutter.auth == "oidc" %}
    auth_jwks_refetch_interval: float = Field(default=30.0, gt=0)  # seconds between refetches
{%- endif %}
{%- if cookiecutter.auth == "none" %}
    admin_token: SecretStr | None = None  # bearer secret of the operator routes; unset: 403
{%- endif %}
    # Operators' surface (README "Before you expose it")
    metrics_token: SecretStr | None = None  # bearer secret of /metrics on this port; unset: 403
    metrics_port: int | None = Field(default=None, ge=1, le=65535)  # /metrics with no token
    metrics_host: str = "127.0.0.1"  # where METRICS_PORT listens
    metrics_render_interval: float = Field(default=1.0, ge=0)  # seconds a body is reused
    # Proxies whose X-Forwarded-For / -Proto and X-Request-ID are believed: addresses or networks,
    # comma-separated, or "*" (uvicorn's notation; run uvicorn itself with --no-proxy-headers).
    forwarded_allow_ips: str = "127.0.0.1"

    # Cache
    cache_url: str = "memory://"
    cache_prefix: str = "{{ cookiecutter.project_slug }}"
    cache_default_ttl: int = Field(default=300, ge=1)
    response_cache_ttl: int = Field(default=60, ge=0)
    cache_socket_timeout: float = Field(default=0.25, gt=0)  # connect, and each operation
    cache_backoff_seconds: float = Field(default=5.0, ge=0)  # skip the cache after an error
    cache_lease_seconds: float = Field(default=5.0, gt=0)  # longest a loader holds a key
    cache_max_connections: int = Field(default=50, ge=1)
    cache_memory_max_entries: int = Field(default=10_000, ge=1)  # memory://, LRU beyond
    cache_memory_max_bytes: int = Field(default=64 * 1024 * 1024, ge=1)  # memory://, LRU beyond
    cache_max_value_bytes: int = Field(default=1024 * 1024, ge=1)  # longer values are not stored
    cache_local_max_entries: int = Field(default=10_000, ge=0)  # in-process tier; 0 turns it off
    cache_local_max_bytes: int = Field(default=32 * 1024 * 1024, ge=1)  # the tier's LRU bound
    # Request headers in the key, each reduced to the variants the service can produce.
    response_cache_vary: list[Literal["accept", "accept-encoding"]] = ["accept", "accept-encoding"]
    # A request's no-cache / max-age / min-fresh: false serves it from the cache like any other.
    response_cache_honour_request_no_cache: bool = False
    response_cache_max_body: int = Field(default=256 * 1024, ge=0)  # bytes; larger are streamed

    # Rate limits per client on /api/v1 (README "Rate limits"), in the `limits` notation.
    rate_limit_enabled: bool = True  # false: no limits at all (load tests, limits at the proxy)
    rate_limit_default: RateLimitText = "600/minute"
    rate_limit_tasks: RateLimitText = "60/minute"  # POST /api/v1/tasks
    rate_limit_url: str | None = None  # None: CACHE_URL when that is a Redis, else memory://
    rate_limit_fail_open: bool = True  # counters unreachable: serve (true) or 503 (false)

    # Tasks
    task_max_attempts: int = Field(default=3, ge=1)
    task_visibility_timeout: int = Field(default=30, ge=1)
    task_status_ttl: int = Field(default=24 * 3600, ge=60)  # finished statuses go after a day
    task_concurrency: int = Field(default=10, ge=1)
    task_shutdown_timeout: float = Field(default=10.0, ge=0)
    task_retry_backoff: float = Field(default=1.0, gt=0)
    task_time_limit: float = Field(default=300.0, gt=0)  # seconds one attempt may run
    task_max_backlog: int = Field(default=100_000, ge=1)  # tasks waiting; past it, 503
    task_max_in_flight_per_client: int = Field(default=100, ge=1)  # queued or running; then 429
{%- if cookiecutter.task_backend != "background" %}
    task_dead_letter_limit: int = Field(default=10_000, ge=1)  # per task name; then its oldest go
{%- endif %}
    task_heartbeat_interval: int = Field(default=60, ge=1)
    task_demo_tasks: bool = False  # true: clients may enqueue the demo tasks sleep and flaky
{%- if cookiecutter.task_backend != "background" %}
    redis_url: str = "redis://localhost:6379/0"
{%- endif %}
{%- if cookiecutter.task_backend != "background" %}
    redis_allow_eviction: bool = False  # true: run on an evicting REDIS_URL, with a warning
{%- endif %}
    redis_replica_acks: int = Field(default=0, ge=0)  # replicas that confirm a write (WAIT)
{%- if cookiecutter.task_backend != "background" %}
    redis_replica_ack_timeout: int = Field(default=100, ge=1, le=10_000)  # ms to wait for them
{%- endif %}
{%- if cookiecutter.task_backend == "celery" %}
    celery_broker_url: str | None = None  # any broker Celery supports; None: REDIS_URL
{%- endif %}
{%- if cookiecutter.task_backend == "celery" %}
    celery_broker_transport_options: dict[str, object] = {}  # JSON, over the service's own
{%- endif %}
    # The Sentinels' own password for redis+sentinel:// URLs, where it is not the URL's
    # (unset: the URL's; empty: none).
    redis_sentinel_password: str | None = None

    @field_validator(
        "cache_url",
{%- if cookiecutter.task_backend != "background" %}
        "redis_url",
{%- endif %}
{%- if cookiecutter.task_backend == "celery" %}
        "celery_broker_url",
{%- endif %}
    )
    @classmethod
    def _redis_url_can_work(cls, url: str | None, info: ValidationInfo) -> str | None:
        """Refuse, naming the setting, a Redis URL that cannot work (`app.redis_urls`).

        CACHE_URL may also be `memory://`; CELERY_BROKER_URL any broker Celery supports.
        """
        setting = str(info.field_name)
        if url is None or (setting == "cache_url" and url.startswith("memory://")):
            return url
        if setting == "celery_broker_url" and not url.startswith("redis"):
            return url  # another transport: Celery reads it
        return check_redis_url(setting.upper(), url)

    @model_validator(mode="after")
    def _database_tls_can_work(self) -> "Settings":
        """Refuse, naming DATABASE_URL, TLS parameters that asyncpg could not honour."""
        try:
            split_tls(self.database_url, self.database_ssl_root_cert)
        except ValueError as error:
            raise ValueError(f"DATABASE_URL: {error}") from None
        return self


@lru_cache
def get_settings() -> Settings:
    """Return the process-wide settings, built on first use (never at import time)."""
    return Settings()
