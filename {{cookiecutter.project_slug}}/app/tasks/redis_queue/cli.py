"""The redis_queue command line (`python -m app.tasks.worker [--concurrency N]`): run tasks.

The worker itself is `app.tasks.redis_queue.worker.Worker`. It stops on SIGTERM or SIGINT
(draining within TASK_SHUTDOWN_TIMEOUT) with status 0, or with status 1 when one of its
loops died, so that a supervisor restarts it.
`python -m app.tasks.worker dead-letters [--requeue ID]` inspects the dead letters.
"""

import argparse
import asyncio
import contextlib
import logging
import signal

import orjson
from redis.exceptions import ResponseError

from app.config import Settings, get_settings
from app.gc_freeze import freeze_startup_objects
from app.infrastructure.cache import cache_from_url
from app.infrastructure.database import create_engine, create_session_factory
from app.observability.logging import configure_logging
from app.observability.metrics import Metrics
{%- if cookiecutter.use_opentelemetry == "yes" %}
from app.observability.tracing import start_tracing
{%- endif %}
from app.tasks.queue import BacklogFullError, DeadLetterNotFoundError, NotRequeueableError
from app.tasks.redis_queue.queue import GROUP, RedisTaskQueue, connect
from app.tasks.redis_queue.worker import Worker
from app.tasks.redis_queue.worker_steps import TRANSIENT
from app.tasks.registry import InvalidPayloadError, UnknownTaskError
from app.tasks.services import build_task_services

logger = logging.getLogger("app.tasks.worker")

WORKER_TIMEOUT = 5.0  # seconds per Redis command; more than a blocking read waits
REQUEUE_REFUSED = (
    BacklogFullError,
    DeadLetterNotFoundError,
    NotRequeueableError,
    UnknownTaskError,
    InvalidPayloadError,
)


async def serve(settings: Settings, concurrency: int) -> int:
    """Run a worker until SIGTERM or SIGINT; the exit status: 1 when one of its loops died."""
    redis = connect(settings, timeout=WORKER_TIMEOUT)
    engine = create_engine(settings)
{%- if cookiecutter.use_opentelemetry == "yes" %}
    tracing = start_tracing(engine, redis=False)  # its loop polls Redis: no trace per poll
{%- endif %}
    sessions = create_session_factory(engine)
    cache = cache_from_url(settings.cache_url, settings=settings, metrics=Metrics())
    worker = Worker(redis, settings, build_task_services(sessions, cache), concurrency)
    freeze_startup_objects()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, worker.stopping.set)
    try:
        healthy = await worker.run()
        if healthy:
            with contextlib.suppress(*TRANSIENT):
                await worker.leave()
    finally:
        await cache.close()
        await engine.dispose()
{%- if cookiecutter.use_opentelemetry == "yes" %}
        tracing.close()
{%- endif %}
        await redis.aclose()
        logger.info("worker %s stopped", worker.name)
    return 0 if healthy else 1


async def dead_letters(settings: Settings, requeue: str | None) -> None:
    """Print queue counts and the newest dead letters, or requeue one by its id."""
    redis = connect(settings, timeout=WORKER_TIMEOUT)
    queue = RedisTaskQueue(redis, settings)
    keys = queue.keys
    try:
        if requeue is not None:
            try:
                status = await queue.requeue(requeue)
            except REQUEUE_REFUSED as exc:
                raise SystemExit(f"not requeued: {exc}") from exc
            print(f"requeued task {status.id}")  # noqa: T201
            return
        pending = 0
        with contextlib.suppress(ResponseError):
            pending = (await redis.xpending(keys.stream, GROUP))["pending"]
        print(  # noqa: T201
            f"queued={await redis.xlen(keys.stream)} pending={pending} "
            f"delayed={await redis.zcard(keys.delayed)} dead={await queue.dead.count()}"
        )
        for letter in await queue.dead_letters(100):
            print(letter.id, letter.name, orjson.dumps(letter.payload).decode(), letter.error)  # noqa: T201
    finally:
        await redis.aclose()


def main(argv: list[str] | None = None) -> None:
    """Parse the command line and run the worker or the dead-letter tool."""
    parser = argparse.ArgumentParser(prog="python -m app.tasks.worker")
    parser.add_argument("--concurrency", type=int, default=None)
    commands = parser.add_subparsers(dest="command")
    dead = commands.add_parser("dead-letters", help="show counts and dead letters")
    dead.add_argument("--requeue", metavar="ID", help="requeue one dead letter, by task id")
    args = parser.parse_args(argv)
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_format)
    if args.command == "dead-letters":
        asyncio.run(dead_letters(settings, args.requeue))
    else:
        raise SystemExit(
            asyncio.run(serve(settings, args.concurrency or settings.task_concurrency))
        )


if __name__ == "__main__":
    main()
