"""arq on the same Redis: a worker with one no-op function (defaults otherwise), and a driver.

Worker: `arq arq_tasks.WorkerSettings` (env ARQ_REDIS_PORT). Driver: `python arq_tasks.py tasks
repeats timeout` prints JSON {"seconds": [...], "enqueue_seconds": [...]}. The no-op counts itself
with one INCR (our workers write a status per task, so this is the comparable small cost).
"""

import asyncio
import json
import os
import sys
import time
from typing import Any, ClassVar

from arq import create_pool
from arq.connections import RedisSettings

DONE = "bench-arq:done"
BATCH = 100


async def noop(ctx: dict[str, Any], a: int, b: int) -> int:
    await ctx["redis"].incr(DONE)
    return a + b


def redis_settings() -> RedisSettings:
    return RedisSettings(host="127.0.0.1", port=int(os.environ["ARQ_REDIS_PORT"]))


class WorkerSettings:
    functions: ClassVar = [noop]
    redis_settings = redis_settings()


async def main() -> None:
    tasks, repeats, timeout = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
    pool = await create_pool(redis_settings())
    found: dict[str, list[float]] = {"seconds": [], "enqueue_seconds": []}
    for _ in range(repeats):
        target = int(await pool.get(DONE) or 0) + tasks
        started = time.perf_counter()
        for first in range(0, tasks, BATCH):
            await asyncio.gather(*(pool.enqueue_job("noop", i, 1) for i in range(first, min(tasks, first + BATCH))))
        found["enqueue_seconds"].append(time.perf_counter() - started)
        while int(await pool.get(DONE) or 0) < target:
            if time.perf_counter() > started + timeout:
                raise TimeoutError(f"arq did not finish {tasks} tasks in {timeout}s")
            await asyncio.sleep(0.005)
        found["seconds"].append(time.perf_counter() - started)
    await pool.aclose()
    print(json.dumps(found))


if __name__ == "__main__":
    asyncio.run(main())
