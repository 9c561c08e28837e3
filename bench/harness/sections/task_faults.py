"""6. Tasks, continued: the redis_queue backend under faults, with real processes.

A backlog past TASK_MAX_BACKLOG with no worker running, unreadable entries written straight
into the stream, a task that hangs, and a task that kills its worker (restarted each time, as
a supervisor would). Each row counts what was lost and how the queue came out of it.
"""

import asyncio
import time
from typing import Any

import httpx

from harness.context import ADMIN_TOKEN, Bench
from harness.results import Row, judge

SECTION = "6. Tasks"
BACKEND = "redis_queue"
PREFIX = "bench-faults"
BACKLOG = 300  # TASK_MAX_BACKLOG of the faults API
TIME_LIMIT = 1.0  # TASK_TIME_LIMIT of the faults worker, seconds
BACKOFF = 0.2  # TASK_RETRY_BACKOFF, seconds
WORKER = "import faulty_tasks; from app.tasks.worker import main; main()"


def run(bench: Bench) -> list[Row]:
    """Every fault case on one API and its workers, under a prefix of their own."""
    env = bench.service_env(
        BACKEND,
        PREFIX,
        TASK_MAX_BACKLOG=str(BACKLOG),
        TASK_TIME_LIMIT=str(TIME_LIMIT),
        TASK_RETRY_BACKOFF=str(BACKOFF),
    )
    bench.migrate(BACKEND, env)
    api = bench.serve("faults-api", bench.python(BACKEND), "faulty_tasks:app", BACKEND, env)
    try:
        with httpx.Client(base_url=api, timeout=30) as client:
            backlog, worker = _backlog(bench, env, client)
            return [backlog, _unreadable(bench, client, worker), _hung(client), _crash_loop(bench, env, client, worker)]
    finally:
        bench.procs.stop_all(keep=[bench.redis.process])


def _worker(bench: Bench, env: dict[str, str], name: str) -> Any:
    """Start a worker that knows the faulty task; return its process."""
    argv = [bench.python(BACKEND), "-c", WORKER, "--concurrency", "10"]
    return bench.procs.spawn(name, argv, cwd=bench.project(BACKEND), env=env)


async def _post_all(api: str, count: int, batch: int = 40) -> list[httpx.Response]:
    """POST `count` add tasks, `batch` at a time (fewer than the API's Redis connections)."""
    responses: list[httpx.Response] = []
    async with httpx.AsyncClient(base_url=api, timeout=30) as client:
        for first in range(0, count, batch):
            numbers = range(first, min(first + batch, count))
            posts = (client.post("/api/v1/tasks", json={"name": "add", "payload": {"a": n, "b": 1}}) for n in numbers)
            responses += await asyncio.gather(*posts)
    return responses


def _statuses(client: httpx.Client, ids: list[str]) -> list[dict[str, Any]]:
    return [client.get(f"/api/v1/tasks/{task_id}").json() for task_id in ids]


def _wait_succeeded(client: httpx.Client, ids: list[str], within: float) -> float | None:
    """Seconds until every task succeeded, or None."""
    started = time.monotonic()
    pending = list(ids)
    while time.monotonic() - started < within:
        pending = [s["id"] for s in _statuses(client, pending) if s.get("status") != "succeeded"]
        if not pending:
            return time.monotonic() - started
        time.sleep(0.2)
    return None


def _wait_final(client: httpx.Client, task_id: str, within: float) -> dict[str, Any]:
    deadline = time.monotonic() + within
    while True:
        status: dict[str, Any] = client.get(f"/api/v1/tasks/{task_id}").json()
        if status.get("status") in ("succeeded", "failed") or time.monotonic() > deadline:
            return status
        time.sleep(0.1)


def _backlog(bench: Bench, env: dict[str, str], client: httpx.Client) -> tuple[Row, Any]:
    """POST past the bound with no worker, then start one: the row, and that worker."""
    posts = BACKLOG + BACKLOG // 2
    responses = asyncio.run(_post_all(str(client.base_url), posts))
    accepted = [r.json()["id"] for r in responses if r.status_code == 202]
    refused = [r for r in responses if r.status_code == 503 and "retry-after" in r.headers]
    worker = _worker(bench, env, "faults-worker")
    done_in = _wait_succeeded(client, accepted, within=120)
    lost = len(accepted) if done_in is None else 0
    row = Row(
        SECTION,
        f"{BACKEND}: {posts} POSTs with no worker, TASK_MAX_BACKLOG={BACKLOG}",
        float(lost),
        "tasks lost",
        detail=f"accepted {len(accepted)}, refused 503 + Retry-After {len(refused)}"
        + (f"; all accepted done {done_in:.1f} s after a worker started" if done_in is not None else ""),
    )
    ok = lost == 0 and len(accepted) == BACKLOG and len(refused) == posts - BACKLOG
    return judge(row, float(lost), "lost", "0 lost; 503 past the bound", ok), worker


def _unreadable(bench: Bench, client: httpx.Client, worker: Any) -> Row:
    """Write unreadable entries straight into the stream, then enqueue tasks behind them."""
    stream = "{" + PREFIX + ":tasks}"  # the queue's stream: the task domain's hash tag
    bad = [
        *(("id", f"bad-json-{n}", "name", "add", "payload", "{nope") for n in range(10)),
        *(("name", "add", "payload", "{}") for _ in range(5)),
        *(("id", f"bad-list-{n}", "name", "add", "payload", "[1]") for n in range(5)),
    ]
    for fields in bad:
        bench.redis.cli("XADD", stream, "*", *fields)
    started = time.monotonic()
    posts = [client.post("/api/v1/tasks", json={"name": "add", "payload": {"a": n, "b": 1}}) for n in range(100)]
    ids = [response.json()["id"] for response in posts]
    done_in = _wait_succeeded(client, ids, within=60)
    operator = {"authorization": f"Bearer {ADMIN_TOKEN}"}
    listed = client.get("/api/v1/tasks/dead-letters", params={"limit": 1000}, headers=operator)
    letters = listed.json()
    buried = sum(1 for letter in letters if "unreadable" in letter["error"])
    lost = 100 if done_in is None else 0
    row = Row(
        SECTION,
        f"{BACKEND}: {len(bad)} unreadable entries in the stream, then 100 tasks",
        float(lost),
        "tasks lost",
        detail=f"{buried} of {len(bad)} dead-lettered"
        + (f"; the 100 tasks done {time.monotonic() - started:.1f} s after the entries" if done_in is not None else "")
        + f"; worker alive: {worker.poll() is None}",
    )
    ok = lost == 0 and buried == len(bad) and worker.poll() is None
    return judge(row, float(lost), "lost", f"0 lost, {len(bad)} dead-lettered, worker alive", ok)


def _hung(client: httpx.Client) -> Row:
    """A task that sleeps far past TASK_TIME_LIMIT: the time until it is failed and dead-lettered."""
    started = time.monotonic()
    task_id = client.post("/api/v1/tasks", json={"name": "sleep", "payload": {"seconds": 60}}).json()["id"]
    status = _wait_final(client, task_id, within=60)
    took = time.monotonic() - started
    limit = 3 * TIME_LIMIT + 3 * BACKOFF * 1.2 + 2
    row = Row(
        SECTION,
        f"{BACKEND}: a task that hangs (sleep 60 s), TASK_TIME_LIMIT={TIME_LIMIT:g}",
        took,
        "s until dead-lettered",
        detail=f"{status.get('status')}, attempts {status.get('attempts')}, dead_lettered "
        f"{status.get('dead_lettered')}: {status.get('error')}",
    )
    ok = status.get("status") == "failed" and status.get("dead_lettered") is True and took <= limit
    return judge(row, took, "s", f"failed after 3 attempts, ≤ {limit:.1f} s", ok)


def _crash_loop(bench: Bench, env: dict[str, str], client: httpx.Client, worker: Any) -> Row:
    """A task that kills its worker; the worker is restarted each time: crashes until it stops."""
    started = time.monotonic()
    task_id = client.post("/api/v1/tasks", json={"name": "exit_process", "payload": {}}).json()["id"]
    crashes = 0
    status: dict[str, Any] = {}
    while time.monotonic() - started < 120:
        status = client.get(f"/api/v1/tasks/{task_id}").json()
        if status.get("status") == "failed":
            break
        if worker.poll() is not None:
            crashes += 1
            worker = _worker(bench, env, f"faults-worker-{crashes}")  # as a supervisor restarts it
        time.sleep(0.1)
    took = time.monotonic() - started
    row = Row(
        SECTION,
        f"{BACKEND}: a task that kills its worker (os._exit), restarted each time",
        float(crashes),
        "worker crashes",
        detail=f"{status.get('status')} after {took:.1f} s, attempts {status.get('attempts')}, dead_lettered "
        f"{status.get('dead_lettered')}; the last worker alive: {worker.poll() is None}",
    )
    ok = crashes == 3 and status.get("dead_lettered") is True and worker.poll() is None
    return judge(row, float(crashes), "crashes", "3 (TASK_MAX_ATTEMPTS), then dead-lettered unrun", ok)
