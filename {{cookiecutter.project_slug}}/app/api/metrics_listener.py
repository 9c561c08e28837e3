"""The token-free `/metrics` listener on METRICS_HOST:METRICS_PORT, run by each API process.

It is a second uvicorn server in the API process's event loop, started and stopped by the
lifespan, serving one route: `GET /metrics`, the same body as the main port's (one render
per METRICS_RENDER_INTERVAL for both). Anything else is 404 (405 for another method).

Several API processes on one host (`uvicorn --workers N`): with PROMETHEUS_MULTIPROC_DIR set,
each binds the port with SO_REUSEPORT, the kernel hands each scrape to one of them, and any
of them answers for all (Linux lets only processes of the same user share a port). Without
it each process counts alone, so the second process to bind refuses to start and says why.
"""

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator

import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app.config import Settings
from app.observability.metrics_page import MetricsPage


def metrics_app(page: MetricsPage) -> Starlette:
    """An ASGI app that serves `page` at `GET /metrics` and nothing else."""

    async def metrics(request: Request) -> Response:
        headers = {"X-Content-Type-Options": "nosniff"}
        return Response(await page.body(), media_type=CONTENT_TYPE_LATEST, headers=headers)

    return Starlette(routes=[Route("/metrics", metrics, methods=["GET"])])


def bind(host: str, port: int, *, shared: bool) -> socket.socket:
    """A listening socket on host:port, or a RuntimeError naming the setting and the fix."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if shared:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        hint = "" if shared else "; API processes that share it need PROMETHEUS_MULTIPROC_DIR"
        message = f"METRICS_PORT: cannot listen on {host}:{port}: {error}{hint}"
        raise RuntimeError(message) from error
    sock.listen(128)
    sock.setblocking(False)
    return sock


@contextlib.asynccontextmanager
async def serve_metrics(settings: Settings, page: MetricsPage) -> AsyncIterator[None]:
    """Serve `page` on METRICS_HOST:METRICS_PORT while the block runs (nothing if unset)."""
    if settings.metrics_port is None:
        yield
        return
    shared = settings.prometheus_multiproc_dir is not None
    sock = bind(settings.metrics_host, settings.metrics_port, shared=shared)
    config = uvicorn.Config(
        metrics_app(page),
        lifespan="off",
        log_config=None,  # the service's logging stays as `configure_logging` set it
        access_log=False,
        proxy_headers=False,
        server_header=False,
        http="h11",
        h11_max_incomplete_event_size=16384,
        timeout_keep_alive=5,
        timeout_graceful_shutdown=5,
    )
    config.load()
    server = uvicorn.Server(config)  # its parts, not `serve`: the API's server owns the signals
    server.lifespan = config.lifespan_class(config)
    await server.startup(sockets=[sock])
    ticking = asyncio.create_task(server.main_loop())  # the Date header; stops on should_exit
    try:
        yield
    finally:
        server.should_exit = True
        await ticking
        await server.shutdown(sockets=[sock])
