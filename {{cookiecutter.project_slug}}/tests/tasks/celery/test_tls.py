"""Celery over `rediss://` with the CA in the URL: kombu's broker connections and the result
backend verify the server as the service's own clients do (README "TLS to ... Redis").
"""

import pytest

from app.config import Settings
from tests.tasks.celery.fixtures import CeleryProcesses
from tests.tasks.helpers import enqueue, serve, wait_final
from tests.tls_servers import Authorities, running_tls_redis
from tests.tls_servers import authorities as authorities
from tests.tls_servers import tls_port as tls_port

pytestmark = pytest.mark.slow
ADD = {"a": 1, "b": 2}


async def test_a_worker_runs_a_task_with_broker_and_statuses_over_verified_tls(
    settings: Settings, tls_port: int, authorities: Authorities
) -> None:
    url = f"rediss://127.0.0.1:{tls_port}/0?ssl_ca_certs={authorities.ca_file}"
    settings = settings.model_copy(update={"redis_url": url, "celery_broker_url": None})
    processes = CeleryProcesses(settings)
    try:
        await processes.worker(concurrency=1)
        async with serve(settings) as client:
            ready = await client.get("/health/ready")
            body = await wait_final(client, await enqueue(client, "add", {"a": 2, "b": 3}), 30)
    finally:
        processes.kill_all()

    assert ready.json()["components"]["broker"] == "ok"
    assert (body["status"], body["result"]) == ("succeeded", 5)


async def test_a_broker_it_cannot_verify_is_not_ready_and_refuses_enqueues(
    settings: Settings, authorities: Authorities
) -> None:
    # The status store stays on the plaintext Redis: only kombu's connection is at stake. A
    # server of its own: kombu's connection pools, shared in a process, key on host and port
    # but not on TLS options, and would hand out a connection another test verified.
    with running_tls_redis(authorities) as port:
        url = f"rediss://127.0.0.1:{port}/0?ssl_ca_certs={authorities.other_ca_file}"
        async with serve(settings.model_copy(update={"celery_broker_url": url})) as client:
            ready = await client.get("/health/ready")
            task = await client.post("/api/v1/tasks", json={"name": "add", "payload": ADD})

    assert ready.json()["components"]["broker"] == "unavailable"
    assert task.status_code == 503, task.text
