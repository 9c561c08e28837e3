"""`tasks_duration_seconds`: exact whichever API process answers and whichever worker ran the task.

Two real uvicorn servers (one multiprocess dir, one Redis) take the tasks; two worker
processes run them (for `background`, the two API processes do). Every task's duration is
known from its own status (`updated_at - created_at`), so each bucket is checked exactly.
"""

import math
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.config import Settings
from app.observability.metrics import TASK_BUCKETS
from tests.prometheus_text import Samples, value
from tests.tasks.helpers import enqueue, wait_final
from tests.uvicorn_servers import running_servers, scrape

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("task_runners")]

TASKS = 6  # of each kind, enqueued through the two API processes in turn
SLEEP = 0.2


def seconds(body: dict[str, Any]) -> float:
    """How long the task took, by its own status: from its 202 to its final status."""
    accepted, ended = (datetime.fromisoformat(body[key]) for key in ("created_at", "updated_at"))
    return (ended - accepted).total_seconds()


def buckets(samples: Samples, name: str, status: str) -> list[tuple[float, float]]:
    """(le, count) of one series' buckets, by le."""
    found = [
        (float(dict(labels)["le"]), count)
        for (sample, labels), count in samples.items()
        if sample == "tasks_duration_seconds_bucket"
        and ("name", name) in labels
        and ("status", status) in labels
    ]
    return sorted(found)


def assert_histogram(samples: Samples, name: str, status: str, durations: list[float]) -> None:
    """The series of `name`/`status` is a well-formed histogram of exactly `durations`."""
    labels = {"name": name, "status": status}
    count = value(samples, "tasks_duration_seconds_count", **labels)
    assert count == len(durations) == value(samples, "tasks_finished_total", **labels)
    found = buckets(samples, name, status)
    assert [le for le, _ in found] == [*TASK_BUCKETS, math.inf]
    assert found[-1][1] == count
    assert [tasks for _, tasks in found] == sorted(tasks for _, tasks in found)  # cumulative
    for le, tasks in found:
        assert tasks == sum(1 for duration in durations if duration <= le), le
    total = value(samples, "tasks_duration_seconds_sum", **labels)
    assert total == pytest.approx(sum(durations), abs=1e-5)


async def test_durations_are_exact_whichever_api_process_answers(
    settings: Settings, redis_url: str, tmp_path: Path
) -> None:
    shared = settings.model_copy(update={"cache_url": redis_url, "log_level": "WARNING"})
    directory = tmp_path / "prometheus"
    directory.mkdir()
    with running_servers(shared, directory) as servers:
        clients = [httpx.AsyncClient(base_url=server.url, timeout=30) for server in servers]
        try:
            ids = []
            for n in range(TASKS):
                http = clients[n % 2]
                ids.append(await enqueue(http, "sleep", {"seconds": SLEEP}))
                ids.append(await enqueue(http, "flaky", {"fail_times": 10}))  # fails for good
            bodies = [await wait_final(clients[0], task_id, within=120) for task_id in ids]
            scrapes = [await scrape(clients[0], server) for server in servers]
        finally:
            for http in clients:
                await http.aclose()

    durations: dict[tuple[str, str], list[float]] = {}
    for body in bodies:
        durations.setdefault((body["name"], body["status"]), []).append(seconds(body))
    assert Counter({series: len(found) for series, found in durations.items()}) == Counter(
        {("sleep", "succeeded"): TASKS, ("flaky", "failed"): TASKS}
    )
    assert sum(durations["sleep", "succeeded"]) >= SLEEP * TASKS
    for samples in scrapes:
        for (name, status), found in durations.items():
            assert_histogram(samples, name, status, found)
