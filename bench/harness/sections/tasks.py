"""6. Tasks: throughput with one worker, enqueue latency over HTTP, and kill -9."""

import json
import re
import time
from datetime import datetime
from pathlib import Path

import httpx

from harness.context import METRICS_AUTH, SCRIPTS, Bench
from harness.render import TEMPLATE
from harness.results import Row, judge, measured, missing
from harness.sections import task_faults
from harness.stats import median
from harness.wrk import run_wrk

SECTION = "6. Tasks"
# backend -> the module under app.tasks that opens its queue
BACKENDS = {
    "redis_queue": "redis_queue.queue",
    "celery": "celery.queue",
    "background": "background.queue",
}
SLUG_DIR = TEMPLATE / "{{cookiecutter.project_slug}}"
KILL_SLEEP = 0.5  # seconds each task of the kill test sleeps
CONCURRENCY = 10
PACED_RATE = 4.0  # requests/s per client in the open-loop enqueue test: 200 req/s in all


def _available(backend: str) -> bool:
    files = {
        "redis_queue": ["app/tasks/redis_queue/queue.py", "app/tasks/worker.py"],
        "celery": ["app/tasks/celery/queue.py", "app/tasks/celery_app.py"],
        "background": ["app/tasks/background/queue.py"],
    }[backend]
    return all((SLUG_DIR / name).exists() for name in files)


def _start_worker(bench: Bench, backend: str, env: dict[str, str], name: str) -> None:
    project = bench.project(backend)
    if backend == "redis_queue":
        argv = [bench.python(backend), "-m", "app.tasks.worker", "--concurrency", str(CONCURRENCY)]
    else:
        argv = [
            str(project / ".venv" / "bin" / "celery"),
            "-A",
            "app.tasks.celery_app",
            "worker",
            "--concurrency",
            "1",
            "--loglevel",
            "WARNING",
        ]
    process = bench.procs.spawn(name, argv, cwd=project, env=env)
    bench.workers[name] = process


def run(bench: Bench) -> list[Row]:
    """Every backend that exists in the template, then arq; throughput ratios at the end."""
    rows: list[Row] = []
    throughput: dict[str, list[float]] = {}
    for backend, module in BACKENDS.items():
        if not _available(backend):
            rows.append(
                missing(
                    SECTION,
                    f"{backend}: throughput, enqueue latency, kill -9",
                    f"app.tasks.{module} is not in the template yet",
                )
            )
            continue
        env = bench.service_env(backend, f"bench-{backend}")
        bench.migrate(backend, env)
        if backend != "background":
            _start_worker(bench, backend, env, f"{backend}-worker")
        rows += _throughput(bench, backend, module, env, throughput)
        api = bench.serve(f"{backend}-api", bench.python(backend), "app.main:app", backend, env)
        finished_before = _finished(api)
        latency = run_wrk(
            f"{api}/api/v1/tasks", seconds=bench.sizes.wrk_seconds, connections=50, script=SCRIPTS / "post_task.lua"
        )
        rows.append(
            measured(
                SECTION,
                f"{backend}: enqueue, POST /api/v1/tasks, wrk 50 connections (saturated)",
                [latency.p99],
                "ms p99",
                detail=f"p50 {latency.p50:.2f} ms, {latency.rps:.0f} req/s, non-2xx {latency.non_2xx}",
            )
        )
        # The saturated run left a backlog (Celery drains ~250 tasks/s): the open-loop run
        # starts once it is done, or it would time the worker's catch-up, not an enqueue.
        _wait_until_finished(api, finished_before + latency.requests - latency.non_2xx)
        paced = json.loads(
            bench.run_script(
                bench.bench_python,
                "paced_load.py",
                backend,
                {},
                f"{api}/api/v1/tasks",
                "50",
                str(PACED_RATE),
                str(bench.sizes.wrk_seconds * 2),
            )
        )
        row = measured(
            SECTION,
            f"{backend}: enqueue, POST /api/v1/tasks, 50 clients × {PACED_RATE:g} req/s",
            [paced["p99"]],
            "ms p99",
            detail=f"p50 {paced['p50']:.2f} ms, {paced['sent']} requests, failed {paced['failed']}",
        )
        judge(row, paced["p99"], "ms p99", "≤ 5 ms", paced["p99"] <= 5 and paced["failed"] == 0)
        rows.append(row)
        rows.append(_kill(bench, backend, env, api))
        bench.procs.stop_all(keep=[bench.redis.process])
        if backend == "redis_queue":
            rows += task_faults.run(bench)
    rows.append(_arq(bench, throughput))
    _judge_throughput(rows, throughput)
    bench.chart_rows(
        "tasks",
        "No-op tasks/s end to end, one worker (median, min–max)",
        [r for r in rows if r.unit == "tasks/s"],
        "tasks/s",
    )
    return rows


FINISHED = re.compile(r'^tasks_finished_total\{name="add",status="succeeded"\} (\S+)$', re.M)
DRAIN_TIMEOUT = 120.0


def _finished(api: str) -> float:
    """`add` tasks succeeded so far, as the API's /metrics counts them (every worker's)."""
    scrape = httpx.get(f"{api}/metrics", headers=METRICS_AUTH, timeout=10)
    scrape.raise_for_status()
    found = FINISHED.search(scrape.text)
    return float(found.group(1)) if found else 0.0


def _wait_until_finished(api: str, count: float) -> None:
    """Wait until `count` `add` tasks have succeeded; raise after DRAIN_TIMEOUT seconds."""
    deadline = time.monotonic() + DRAIN_TIMEOUT
    while (done := _finished(api)) < count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{count - done:.0f} tasks still unfinished {DRAIN_TIMEOUT:.0f} s after wrk")
        time.sleep(0.2)


def _throughput(
    bench: Bench, backend: str, module: str, env: dict[str, str], throughput: dict[str, list[float]]
) -> list[Row]:
    """Run the driver; a service error under the burst is a failed row (and, for background, a
    second try with its statuses in memory), not a crash of the bench."""
    timeout = max(60.0, bench.sizes.tasks / 20)
    where = (
        "in the driver process (as in the API)"
        if backend == "background"
        else f"one worker, concurrency {CONCURRENCY if backend == 'redis_queue' else 1}"
    )
    rows: list[Row] = []
    attempts = [("", env)]
    if backend == "background":
        attempts.append((" (statuses in memory: CACHE_URL=memory://)", {**env, "CACHE_URL": "memory://"}))
    for label, attempt_env in attempts:
        system = f"{backend}: throughput, {bench.sizes.tasks} no-op tasks{label}"
        try:
            found = json.loads(
                bench.run_script(
                    bench.python(backend),
                    "task_driver.py",
                    backend,
                    attempt_env,
                    module,
                    str(bench.sizes.tasks),
                    str(bench.sizes.task_repeats),
                    str(timeout),
                    timeout=timeout * bench.sizes.task_repeats + 120,
                )
            )
        except RuntimeError as error:
            last = str(error).strip().splitlines()[-1]
            rows.append(
                Row(SECTION, system, note=f"failed under the burst: `{last[:160]}`", passed=False, target="no errors")
            )
            continue
        throughput[backend] = [bench.sizes.tasks / s for s in found["seconds"]]
        rows.append(
            measured(
                SECTION,
                system,
                throughput[backend],
                "tasks/s",
                detail=f"{where}; enqueue alone {median(found['enqueue_seconds']):.2f} s",
            )
        )
        break
    return rows


def _arq(bench: Bench, throughput: dict[str, list[float]]) -> Row:
    env = {"ARQ_REDIS_PORT": str(bench.redis.port), "PYTHONPATH": str(SCRIPTS)}
    arq = str(Path(bench.arq_python).parent / "arq")
    bench.procs.spawn("arq-worker", [arq, "arq_tasks.WorkerSettings"], cwd=SCRIPTS, env=env)
    timeout = max(60.0, bench.sizes.tasks / 20)
    done = bench.run_script(
        bench.arq_python,
        "arq_tasks.py",
        "redis_queue",
        env,
        str(bench.sizes.tasks),
        str(bench.sizes.task_repeats),
        str(timeout),
        timeout=timeout * bench.sizes.task_repeats + 120,
    )
    found = json.loads(done)
    throughput["arq"] = [bench.sizes.tasks / s for s in found["seconds"]]
    return measured(
        SECTION,
        f"arq (defaults): throughput, {bench.sizes.tasks} no-op tasks",
        throughput["arq"],
        "tasks/s",
        detail=f"one worker, max_jobs 10, enqueue alone {median(found['enqueue_seconds']):.2f} s",
    )


def _judge_throughput(rows: list[Row], throughput: dict[str, list[float]]) -> None:
    if "redis_queue" not in throughput:
        return
    ours = next(r for r in rows if r.system.startswith("redis_queue: throughput"))
    for other, factor in (("arq", 1.0), ("celery", 3.0)):
        if other not in throughput:
            continue
        ratio = median(throughput["redis_queue"]) / median(throughput[other])
        if ours.target:
            ours.detail += f"; {ratio:.2f}× {other} (target ≥ {factor:g}×)"
            ours.passed = bool(ours.passed) and ratio >= factor
            ours.target += f", ≥ {factor:g}× {other}"
        else:
            judge(ours, ratio, f"× {other}", f"≥ {factor:g}× {other}", ratio >= factor)


def _kill(bench: Bench, backend: str, env: dict[str, str], api: str) -> Row:
    """POST sleep tasks, kill -9 the process running them, start another, and count what ends well."""
    count = bench.sizes.kill_tasks
    with httpx.Client(base_url=api, timeout=10) as client:
        ids = [
            client.post("/api/v1/tasks", json={"name": "sleep", "payload": {"seconds": KILL_SLEEP}}).json()["id"]
            for _ in range(count)
        ]
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not any(
            client.get(f"/api/v1/tasks/{i}").json()["status"] == "running" for i in ids[:CONCURRENCY]
        ):
            time.sleep(0.05)
        victim = f"{backend}-api" if backend == "background" else f"{backend}-worker"
        process = bench.workers.get(victim) or bench.named(victim)
        bench.procs.stop(process, hard=True)
        killed_at = time.time()
        if backend == "background":
            api = bench.serve(f"{backend}-api-2", bench.python(backend), "app.main:app", backend, env)
            client.base_url = httpx.URL(api)
        else:
            _start_worker(bench, backend, env, f"{backend}-worker-2")
        wait = bench.sizes.visibility_timeout + count * KILL_SLEEP / CONCURRENCY + 15
        statuses: dict[str, dict[str, object]] = {}
        all_done_at = None
        while time.time() < killed_at + wait:
            statuses = {i: _status(client, i) for i in ids}
            if all(s.get("status") == "succeeded" for s in statuses.values()):
                all_done_at = time.time()
                break
            time.sleep(0.2)
    lost = sum(1 for s in statuses.values() if s.get("status") != "succeeded")
    rerun = [s for s in statuses.values() if int(s.get("attempts") or 0) > 1]
    held_done = max((_epoch(s["updated_at"]) for s in rerun if s.get("status") == "succeeded"), default=None)
    detail = f"{count} tasks of {KILL_SLEEP} s; lost {lost}, re-run after the kill {len(rerun)}"
    if all_done_at is not None:
        detail += f"; all done {all_done_at - killed_at:.1f} s after the kill"
    row = Row(
        SECTION,
        f"{backend}: kill -9 of the {'API process' if backend == 'background' else 'worker'} holding tasks",
        float(lost),
        "tasks lost",
        detail=detail,
    )
    if backend == "background":
        row.ratio, row.ratio_of, row.target = float(lost), "lost", "at most once: loss expected, documented"
        return row
    limit = bench.sizes.visibility_timeout + 2
    held_after = (held_done - killed_at) if held_done is not None else float("inf")
    visibility = bench.sizes.visibility_timeout
    row.detail += f"; held tasks done {held_after:.1f} s after the kill (TASK_VISIBILITY_TIMEOUT={visibility})"
    judge(row, held_after, "s kill → held tasks done", f"0 lost, ≤ {limit} s", lost == 0 and held_after <= limit)
    return row


def _status(client: httpx.Client, task_id: str) -> dict[str, object]:
    response = client.get(f"/api/v1/tasks/{task_id}")
    return response.json() if response.status_code == 200 else {"status": f"http {response.status_code}"}


def _epoch(stamp: object) -> float:
    return datetime.fromisoformat(str(stamp).replace("Z", "+00:00")).timestamp()
