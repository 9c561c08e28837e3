"""Several API processes on one host: `/metrics` from any of them reports the exact sum.

Two real uvicorn servers share a PROMETHEUS_MULTIPROC_DIR, a database and a real Redis (the
cache, so that one process serves from the cache what the other stored). A process that
exits stays counted; its live gauge (`http_requests_in_progress`) is dropped with it.
"""

import asyncio
import contextlib
import signal
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.multiprocess import MultiProcessCollector

from app.config import Settings
from tests.prometheus_text import Samples, requests, value
from tests.uvicorn_servers import Server, running_servers, scrape

pytestmark = pytest.mark.slow
ITEMS = "/api/v1/items"
ITEM = "/api/v1/items/{item_id}"


@pytest.fixture
def multiproc_dir(tmp_path: Path) -> Path:
    """The directory the servers share: new, so empty, as whoever starts them must ensure."""
    directory = tmp_path / "prometheus"
    directory.mkdir()
    return directory


@pytest.fixture
def servers(settings: Settings, redis_url: str, multiproc_dir: Path) -> Iterator[list[Server]]:
    """Two servers over one database, one Redis cache and one multiprocess dir."""
    shared = settings.model_copy(update={"cache_url": redis_url, "log_level": "WARNING"})
    with running_servers(shared, multiproc_dir) as started:
        yield started


def without_scrapes(samples: Samples) -> Samples:
    """Every sample but those of `/metrics` itself, which each scrape changes, and the
    invalidations the tiers take in, which arrive from Redis whenever they do."""
    return {
        key: found
        for key, found in samples.items()
        if ("route", "/metrics") not in key[1]
        and not key[0].startswith(("http_requests_in", "cache_local_invalidations"))
        and not key[0].endswith("_created")
    }


@pytest.mark.shared_response_cache
async def test_metrics_from_either_process_are_the_exact_sums(servers: list[Server]) -> None:
    first, second = servers
    outcomes: Counter[str] = Counter()
    async with httpx.AsyncClient(timeout=30) as http:
        created = await http.post(f"{first.url}{ITEMS}", json={"name": "lamp", "price": 3})
        item = f"{ITEMS}/{created.json()['id']}"
        for server, times in ((first, 3), (second, 4)):
            for _ in range(times):
                response = await http.get(f"{server.url}{item}")
                assert response.status_code == 200
                outcomes[response.headers["x-cache"]] += 1
        etag = response.headers["etag"]
        not_modified = await http.get(f"{second.url}{item}", headers={"If-None-Match": etag})
        outcomes[not_modified.headers["x-cache"]] += 1
        for _ in range(2):
            assert (await http.get(f"{second.url}{ITEMS}/999999")).status_code == 404
        too_large = "x" * 2_000_000
        assert (await http.post(f"{first.url}{ITEMS}", content=too_large)).status_code == 413
        for path in ("/nowhere", "/nowhere/else", "/api/v2"):
            assert (await http.get(f"{second.url}{path}")).status_code == 404
        seen_by_first, seen_by_second = await scrape(http, first), await scrape(http, second)

    assert not_modified.status_code == 304
    assert without_scrapes(seen_by_first) == without_scrapes(seen_by_second)
    for found in (seen_by_first, seen_by_second):
        assert requests(found, "POST", ITEMS, 201) == 1
        assert requests(found, "POST", ITEMS, 413) == 1
        assert requests(found, "GET", ITEM, 200) == 7
        assert requests(found, "GET", ITEM, 304) == 1
        assert requests(found, "GET", ITEM, 404) == 2
        assert requests(found, "GET", "unmatched", 404) == 3
        duration = "http_request_duration_seconds_count"
        assert value(found, duration, method="GET", route=ITEM, status="200") == 7
        hits = value(found, "response_cache_requests_total", result="hit")
        misses = value(found, "response_cache_requests_total", result="miss")
        assert (hits, misses) == (outcomes["HIT"], outcomes["MISS"] + 2)  # the 404s: misses
        assert hits >= 1  # the second process served what the first stored
        assert value(found, "http_requests_in_progress") == 1  # the scrape itself
    assert requests(seen_by_second, "GET", "/metrics", 200) == 1  # the first one's scrape


async def held_request(url: str, released: asyncio.Event) -> None:
    """A POST whose body never ends: its server counts it in progress until it dies."""

    async def body() -> AsyncIterator[bytes]:
        yield b'{"name": '
        await released.wait()

    async with httpx.AsyncClient(timeout=60) as http:
        with contextlib.suppress(httpx.HTTPError):
            await http.post(f"{url}{ITEMS}", content=body(), headers={"content-type": "x/json"})


async def wait_for_in_progress(http: httpx.AsyncClient, server: Server, count: int) -> None:
    """Scrape `server` until `http_requests_in_progress` is `count` (its own scrape included)."""
    async with asyncio.timeout(30):
        while True:
            if value(await scrape(http, server), "http_requests_in_progress") == count:
                return
            await asyncio.sleep(0.05)


def live_gauge_files(directory: Path, pid: int | str = "*") -> list[Path]:
    """The live-gauge files of process `pid` (of every process by default) in `directory`."""
    return list(directory.glob(f"gauge_live*_{pid}.db"))


def summed_files(directory: Path) -> Samples:
    """What `/metrics` would report from the files left in `directory`."""
    collector = MultiProcessCollector(None, path=str(directory))  # type: ignore[no-untyped-call]
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in collector.collect()  # type: ignore[no-untyped-call]
        for sample in family.samples
    }


async def test_an_exited_process_stays_counted_and_its_live_gauge_is_dropped(
    servers: list[Server], multiproc_dir: Path
) -> None:
    first, second = servers
    released = asyncio.Event()
    async with httpx.AsyncClient(timeout=30) as http:
        for server, times in ((first, 2), (second, 4)):
            for _ in range(times):
                assert (await http.get(f"{server.url}/nowhere")).status_code == 404
        holding = asyncio.create_task(held_request(second.url, released))
        await wait_for_in_progress(http, first, 2)  # the held POST and the scrape

        second.stop(signal.SIGKILL)
        after_kill = await scrape(http, first)
        released.set()
        await holding

    assert value(after_kill, "http_requests_in_progress") == 1  # only the scrape: ours
    assert requests(after_kill, "GET", "unmatched", 404) == 6  # the killed one's 4 included
    assert not live_gauge_files(multiproc_dir, second.process.pid)
    first.stop()
    assert not live_gauge_files(multiproc_dir)  # a clean stop drops its own
    assert requests(summed_files(multiproc_dir), "GET", "unmatched", 404) == 6
