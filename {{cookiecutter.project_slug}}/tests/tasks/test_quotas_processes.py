"""TASK_MAX_IN_FLIGHT_PER_CLIENT over Redis: exact across API processes, nothing half written.

No worker runs here, so every admitted task stays in flight and holds its slot. (The
`background` backend counts in its process: tests/tasks/test_quotas.py.)
"""

import asyncio
from collections import Counter
from pathlib import Path

import httpx
import pytest

from app.config import Settings
from app.tasks.quotas import in_flight_key
from app.tasks.status import status_key
from tests.redis_cluster import admin_client
from tests.tasks.helpers import serve
from tests.uvicorn_servers import running_servers

pytestmark = pytest.mark.anonymous_callers
LIMIT = 5
ADD = {"name": "add", "payload": {"a": 1, "b": 2}}
CLIENT = "address:127.0.0.1"


async def slots_held(settings: Settings, address: str) -> int:
    """How many slots `address` holds in Redis."""
    redis = admin_client(settings.redis_url)
    try:
        return int(await redis.scard(in_flight_key(settings.cache_prefix, f"address:{address}")))
    finally:
        await redis.aclose()


async def task_keys(settings: Settings) -> list[str]:
    """The status keys in Redis (a test's own Redis: a SCAN is fine here)."""
    redis = admin_client(settings.redis_url)
    try:
        pattern = status_key(settings.cache_prefix, "*")
        return [key.decode() async for key in redis.scan_iter(match=pattern)]
    finally:
        await redis.aclose()


@pytest.mark.slow
async def test_two_processes_admit_at_most_the_bound_from_one_client(
    settings: Settings, tmp_path: Path
) -> None:
    bounded = settings.model_copy(
        update={"task_max_in_flight_per_client": LIMIT, "log_level": "WARNING"}
    )
    multiproc_dir = tmp_path / "prometheus"
    multiproc_dir.mkdir()
    with running_servers(bounded, multiproc_dir) as servers:
        async with httpx.AsyncClient(timeout=30) as http:
            answers = await asyncio.gather(
                *(http.post(f"{servers[n % 2].url}/api/v1/tasks", json=ADD) for n in range(40))
            )

    assert Counter(answer.status_code for answer in answers) == {202: LIMIT, 429: 40 - LIMIT}
    accepted = {answer.json()["id"] for answer in answers if answer.status_code == 202}
    keys = await task_keys(settings)
    assert {key.rpartition(":")[2] for key in keys} == accepted  # a 429 wrote no status
    redis = admin_client(settings.redis_url)
    try:
        held = await redis.smembers(in_flight_key(settings.cache_prefix, CLIENT))
    finally:
        await redis.aclose()
    assert {m.decode() if isinstance(m, bytes) else m for m in held} == accepted


async def test_a_slot_whose_task_vanished_is_given_back(settings: Settings) -> None:
    bounded = settings.model_copy(update={"task_max_in_flight_per_client": 1})
    async with serve(bounded) as client:
        first = await client.post("/api/v1/tasks", json=ADD)
        refused = await client.post("/api/v1/tasks", json=ADD)
        redis = admin_client(settings.redis_url)
        try:  # as if its status expired, or was deleted by hand, before it ended
            await redis.delete(status_key(settings.cache_prefix, first.json()["id"]))
        finally:
            await redis.aclose()
        second = await client.post("/api/v1/tasks", json=ADD)
        third = await client.post("/api/v1/tasks", json=ADD)

    assert (first.status_code, refused.status_code) == (202, 429)
    assert second.status_code == 202, second.text
    assert third.status_code == 429
