"""End-to-end throughput of no-op tasks through a rendered service's own task queue.

argv: the queue module under app.tasks (background.queue | celery.queue |
redis_queue.queue), tasks, repeats, timeout seconds.
Runs in the rendered service's environment and directory. Enqueues every task with the
service's `open_task_queue` (the API's code path, minus HTTP), then waits until the
`tasks_finished{name="add",status="succeeded"}` count (kept up to date by `sync_metrics`) has
grown by that many. `background` runs the tasks in this process, as it does in the API.
Prints JSON {"seconds": [...], "enqueue_seconds": [...]}.
"""

import asyncio
import importlib
import json
import sys
import time

from app.config import Settings
from app.observability.metrics import Metrics
from app.infrastructure.cache import open_cache
from app.infrastructure.database import create_engine, create_session_factory

BATCH = 100


def succeeded(metrics: Metrics) -> float:
    """Workers' count from Redis (celery, redis_queue), or this process's own (background)."""
    if metrics.tasks_finished_totals is not None:
        return metrics.tasks_finished_totals.get(("add", "succeeded"), 0)
    return metrics.tasks_finished.labels(name="add", status="succeeded")._value.get()


async def main() -> None:
    module_name, tasks, repeats, timeout = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
    module = importlib.import_module(f"app.tasks.{module_name}")
    settings = Settings()
    metrics = Metrics()
    engine = create_engine(settings)
    found: dict[str, list[float]] = {"seconds": [], "enqueue_seconds": []}
    async with open_cache(settings, metrics) as cache:
        # Only the background backend runs tasks in this process: it needs the app's clients.
        in_process = {"cache": cache, "sessions": create_session_factory(engine), "metrics": metrics}
        async with module.open_task_queue(settings, **(in_process if module_name.startswith("background") else {})) as queue:
            await queue.sync_metrics(metrics)
            for _ in range(repeats):
                target = succeeded(metrics) + tasks
                started = time.perf_counter()
                for first in range(0, tasks, BATCH):
                    await asyncio.gather(
                        *(queue.enqueue("add", {"a": i, "b": 1}) for i in range(first, min(tasks, first + BATCH)))
                    )
                found["enqueue_seconds"].append(time.perf_counter() - started)
                deadline = started + timeout
                while succeeded(metrics) < target:
                    if time.perf_counter() > deadline:
                        raise TimeoutError(f"{succeeded(metrics) - target + tasks:.0f} of {tasks} done in {timeout}s")
                    await asyncio.sleep(0.005)
                    await queue.sync_metrics(metrics)
                found["seconds"].append(time.perf_counter() - started)
    await engine.dispose()
    print(json.dumps(found))


asyncio.run(main())
