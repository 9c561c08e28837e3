"""The application factory and the lifespan that opens and closes every client."""

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from functools import cache

from fastapi import FastAPI
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from app.api import docs, health, items, metrics, tasks
from app.api.errors import install_error_handlers
from app.api.metrics_listener import serve_metrics
from app.config import Settings, get_settings
from app.gc_freeze import freeze_startup_objects
from app.infrastructure.cache import open_cache
from app.infrastructure.database import create_engine, create_session_factory
{%- if cookiecutter.auth == "oidc" %}
from app.infrastructure.oidc import oidc_verifier
{%- endif %}
from app.infrastructure.rate_limits import open_rate_limiter
{%- if cookiecutter.auth == "oidc" %}
from app.middleware.authentication import AuthenticationMiddleware
{%- endif %}
from app.middleware.body_limit import RequestBodyLimitMiddleware
from app.middleware.cache import ResponseCacheMiddleware
from app.middleware.metrics import HttpMetricsMiddleware
from app.middleware.query_repeats import QueryRepeatsMiddleware
from app.middleware.rate_limit import RateLimitMiddleware, RoutePolicy
from app.middleware.raw_path import RawPathMiddleware
from app.middleware.request_id import RequestIdMiddleware
from app.middleware.route_templates import RouteTemplates
from app.middleware.shared_routes import SharedRoutes
{%- if cookiecutter.use_opentelemetry == "yes" %}
from app.middleware.tracing import trace_server_spans
{%- endif %}
from app.observability.logging import configure_logging
from app.observability.metrics import open_metrics
from app.observability.metrics_page import MetricsPage
{%- if cookiecutter.use_opentelemetry == "yes" %}
from app.observability.tracing import request_telemetry, start_tracing
{%- endif %}
from app.problems import document_problems_as_problem_json, problem_responses
from app.services.readiness import Readiness
from app.state import AppState, OpenedState
from app.tasks.{{ cookiecutter.task_backend }}.queue import open_task_queue


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Open the database, cache and task queue for the app's lifetime; close them in reverse."""
    settings: Settings = app.state.settings
    async with AsyncExitStack() as stack:
{%- if cookiecutter.auth == "oidc" %}
        await stack.enter_async_context(app.state.verifier.connected())
{%- endif %}
        metrics = stack.enter_context(open_metrics(settings))
        engine = create_engine(settings)
        stack.push_async_callback(engine.dispose)
{%- if cookiecutter.use_opentelemetry == "yes" %}
        stack.callback(start_tracing(engine).close)
{%- endif %}
        cache = await stack.enter_async_context(open_cache(settings, metrics))
        sessions = create_session_factory(engine)
        task_queue = await stack.enter_async_context(
{%- if cookiecutter.task_backend == "background" %}
            open_task_queue(settings, cache=cache, sessions=sessions, metrics=metrics)
{%- else %}
            open_task_queue(settings)  # the workers run the tasks: the API only sends them
{%- endif %}
        )
        rate_limiter = await stack.enter_async_context(open_rate_limiter(settings))
        interval = settings.metrics_render_interval
        metrics_page = MetricsPage(metrics, task_queue.sync_metrics, interval=interval)
        await stack.enter_async_context(serve_metrics(settings, metrics_page))
        app.state.resources = AppState(
            settings=settings,
            engine=engine,
            sessions=sessions,
            cache=cache,
            metrics=metrics,
            metrics_page=metrics_page,
            task_queue=task_queue,
            rate_limiter=rate_limiter,
            readiness=Readiness(settings),
        )
        app.state.opened.open(app.state.resources)  # what the middleware read (`OpenedState`)
        yield


def _limit_rates(
    app: FastAPI, settings: Settings, templates: RouteTemplates, opened: OpenedState
) -> None:
    """Count each /api/v1 request against its route's policy (RateLimitMiddleware)."""
    # Per-route policies, by (method, route template); every other /api/v1 route: default.
    policies = {("POST", "/api/v1/tasks"): RoutePolicy("tasks", settings.rate_limit_tasks)}
    app.add_middleware(
        RateLimitMiddleware,
        settings=settings,
        templates=templates,
        policies=policies,
        opened=opened,
    )


def _include_routes(app: FastAPI, settings: Settings) -> None:
    """The routers; /api/v1 documents the 429 (and 503) the rate limiter may answer."""
    app.include_router(health.router)
    app.include_router(metrics.router)
    if settings.api_docs_enabled:
        app.include_router(docs.router)
    limited = problem_responses(429) if settings.rate_limit_enabled else {}
    if settings.rate_limit_enabled and not settings.rate_limit_fail_open:
        limited |= problem_responses(503)
    app.include_router(items.router, prefix="/api/v1", responses=limited)
    app.include_router(tasks.router, prefix="/api/v1", responses=limited)


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build an app; tests pass their own settings, production reads the environment."""
    settings = settings or get_settings()
    configure_logging(settings.log_level, settings.log_format)
    documented = settings.api_docs_enabled
    # No redirect to the path without its trailing slash: `/api/v1/tasks/%2F` is not a task
    # list, and an API answers what it documents (404), not a 307 clients must follow.
    app = FastAPI(
        title=settings.app_name,
        lifespan=lifespan,
        redirect_slashes=False,
{%- if cookiecutter.use_opentelemetry == "yes" %}
        telemetry=request_telemetry(),
{%- endif %}
        openapi_url="/openapi.json" if documented else None,
        docs_url=None,  # app.api.docs: pinned, integrity-checked assets
        redoc_url=None,
    )
    app.state.settings = settings
    opened = app.state.opened = OpenedState()  # the lifespan's clients, for the middleware
    shared_routes = SharedRoutes()  # the @public_cacheable routes, read below
    app.add_middleware(
        ResponseCacheMiddleware, settings=settings, routes=shared_routes, opened=opened
    )
    app.add_middleware(RequestBodyLimitMiddleware, max_bytes=settings.request_max_body)
    app.add_middleware(QueryRepeatsMiddleware, routes=app.router.routes)  # before the cache
    # Route templates, found once per path for every middleware that names a request's route.
    templates = RouteTemplates(app.router)
    if settings.rate_limit_enabled:  # outside the cache: a cache hit counts too
        _limit_rates(app, settings, templates, opened)
    # Counts what the cache and the body limit answer too, with the status the client got.
    app.add_middleware(HttpMetricsMiddleware, templates=templates, opened=opened)
{%- if cookiecutter.use_opentelemetry == "yes" %}
    trace_server_spans(app, templates)
{%- endif %}
{%- if cookiecutter.auth == "oidc" %}
    app.state.verifier = oidc_verifier(settings)  # its lifespan: `lifespan` above
{%- endif %}
{%- if cookiecutter.auth == "oidc" %}
    app.add_middleware(AuthenticationMiddleware, verifier=app.state.verifier)  # before routing
{%- endif %}
    # Before anything reads the path: what is routed is what a proxy in front of it saw.
    app.add_middleware(RawPathMiddleware)
    # The client's address (and scheme) from a proxy of FORWARDED_ALLOW_IPS, by uvicorn's own
    # middleware run here, inside the request id's check of the peer it replaces.
    trusted = settings.forwarded_allow_ips
    app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=trusted)
    # Outermost: cached responses get an id too, and it answers whatever else failed (500).
    app.add_middleware(RequestIdMiddleware, trusted_proxies=trusted)
    install_error_handlers(app)
    _include_routes(app, settings)
    document_problems_as_problem_json(app)
    shared_routes.load(app.router.routes)  # a public route that checks access: NotShareableError
    return app


@cache
def _default_app() -> FastAPI:
    app = create_app()
    freeze_startup_objects()  # a server's process: everything imported by now lives on
    return app


def __getattr__(name: str) -> FastAPI:
    """Serve `app.main:app` (what uvicorn imports) without building it at import time.

    Importing this module has no side effects: tests import `create_app` and build their
    own apps; the default app reads the environment only when a server asks for it, and
    then freezes the process's startup objects (`app.gc_freeze`).
    """
    if name == "app":
        return _default_app()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
