"""The history checker across processes, the in-process tier on (README "What a reader sees
after a write").

Two uvicorn processes and a script process share one Redis and one database. Writers rename
items through both servers and through the script; readers read through both servers, one
item or a page. The check fails if a read that started more than GRACE after a write
completed, in any process, returns what that write replaced. Meanwhile the tiers' channels
are cut now and then (`CLIENT KILL TYPE pubsub`): a tier must then serve nothing it cannot
prove current.
"""

import asyncio
import json
import os
import random
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from app.config import Settings
from tests.redis_cluster import admin_client
from tests.services.history import History, Read, Write
from tests.uvicorn_servers import PROJECT_ROOT, Server, running_servers, settings_env

pytestmark = pytest.mark.slow

GRACE = 0.005  # seconds after a write completes by which every process sees it
SECONDS = 4.0
ITEMS = 3


@pytest.fixture
def shared(settings: Settings, redis_url: str) -> Settings:
    """Settings of every process: one Redis for the cache, the tier on, no rate limits."""
    return settings.model_copy(
        update={
            "cache_url": redis_url,
            "rate_limit_enabled": False,
            "log_level": "WARNING",
            "cache_socket_timeout": 2.0,  # a busy machine's round trips are no outage
        }
    )


@pytest.fixture
def servers(shared: Settings, tmp_path: Path) -> Iterator[list[Server]]:
    multiproc_dir = tmp_path / "prometheus"
    multiproc_dir.mkdir()
    with running_servers(shared, multiproc_dir) as started:
        yield started


async def write_through(url: str, number: int, ids: list[int], history: History) -> None:
    rng = random.Random(number)
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        until, count = time.monotonic() + SECONDS, 0
        while time.monotonic() < until:
            item_id, count = rng.choice(ids), count + 1
            name = f"writer {number} write {count}"
            start = time.monotonic()
            response = await http.patch(f"/api/v1/items/{item_id}", json={"name": name})
            end = time.monotonic()
            assert response.status_code == 200, response.text
            history.writes.append(Write(item_id, name, start, end))
            await asyncio.sleep(rng.uniform(0, 0.02))


async def read_through(url: str, number: int, ids: list[int], history: History) -> None:
    rng = random.Random(1000 + number)
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        until = time.monotonic() + SECONDS
        while time.monotonic() < until:
            one = rng.random() < 0.8
            path = f"/api/v1/items/{rng.choice(ids)}" if one else "/api/v1/items?limit=100"
            start = time.monotonic()
            response = await http.get(path)
            end = time.monotonic()
            assert response.status_code == 200, response.text
            body = response.json()
            items = [body] if one else body["items"]
            seen = {item["id"]: item["name"] for item in items}
            history.reads.append(Read(path, seen, start, end))


async def cut_channels(redis_url: str) -> int:
    """Kill the tiers' channels every half second; how many connections were killed."""
    redis = admin_client(redis_url)
    killed = 0
    try:
        until = time.monotonic() + SECONDS
        while time.monotonic() < until:
            await asyncio.sleep(0.5)
            killed += int(await redis.client_kill_filter(_type="pubsub"))
    finally:
        await redis.aclose()
    return killed


def script_writes(shared: Settings, ids: list[int]) -> subprocess.Popen[str]:
    """Start the script writer (`tests.services.history_writer`) in its own process."""
    command = [sys.executable, "-m", "tests.services.history_writer", str(SECONDS)]
    return subprocess.Popen(
        [*command, *map(str, ids)],
        cwd=PROJECT_ROOT,
        env={**os.environ, **settings_env(shared)},
        stdout=subprocess.PIPE,
        text=True,
    )


async def test_no_process_reads_what_a_write_in_another_replaced(
    servers: list[Server], shared: Settings, redis_url: str
) -> None:
    history, ids = History(), []
    async with httpx.AsyncClient(timeout=30) as http:
        for number in range(ITEMS):
            name = f"item {number} created"
            start = time.monotonic()
            response = await http.post(
                f"{servers[0].url}/api/v1/items", json={"name": name, "price": 1}
            )
            ids.append(response.json()["id"])
            history.writes.append(Write(ids[-1], name, start, time.monotonic()))

    script = script_writes(shared, ids)
    urls = [server.url for server in servers]
    cutting = asyncio.create_task(cut_channels(redis_url))
    await asyncio.gather(
        *(write_through(urls[n % 2], n, ids, history) for n in range(2)),
        *(read_through(urls[n % 2], n, ids, history) for n in range(8)),
    )
    killed = await cutting
    output, _ = await asyncio.to_thread(script.communicate, timeout=120)
    assert script.returncode == 0
    for line in output.splitlines():
        item_id, name, start, end = json.loads(line)
        history.writes.append(Write(item_id, name, start, end))

    problems = history.stale_reads(grace=GRACE)
    assert killed > 0  # the channels were cut during the run
    assert len(history.writes) > 2 * ITEMS
    assert len(history.reads) > 100
    assert problems == [], f"{len(problems)} stale reads; first ones:\n" + "\n".join(problems[:5])
