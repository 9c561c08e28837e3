"""METRICS_PORT: a second listener in each API process serves `/metrics` without a token.

Real `uvicorn app.main:app` processes: one server with METRICS_TOKEN unset (the main port's
`/metrics` is 403, the listener's answers, on METRICS_HOST only); `--workers 2` sharing
PROMETHEUS_MULTIPROC_DIR (both workers listen on the port, and either answers for both); two
processes on one port without it (the second refuses to start, saying why).
"""

import os
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from app.config import Settings
from tests.prometheus_text import parse, requests
from tests.servers import wait_for_port
from tests.uvicorn_servers import Server, settings_env

pytestmark = pytest.mark.slow
LIVE = "/health/live"


def free_ports(count: int) -> list[int]:
    """`count` distinct ports free on loopback now (the APIs' and METRICS_PORT)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def listening_sockets(port: int) -> int:
    """How many sockets listen on 127.0.0.1:`port` (Linux's /proc/net/tcp)."""
    local = f"0100007F:{port:04X}"
    rows = [line.split() for line in Path("/proc/net/tcp").read_text().splitlines()[1:]]
    return sum(1 for row in rows if row[1] == local and row[3] == "0A")


@contextmanager
def server(settings: Settings, *options: str, port: int) -> Iterator[Server]:
    """One `uvicorn app.main:app` with `settings` on `port`, stopped at the end."""
    started = Server({**os.environ, **settings_env(settings)}, *options, port=port)
    try:
        wait_for_port(started.port, timeout=60)
        yield started
    finally:
        started.stop()


def test_the_listener_serves_metrics_without_a_token_and_only_there(settings: Settings) -> None:
    main, port = free_ports(2)
    update = {"metrics_token": None, "metrics_port": port, "log_level": "WARNING"}
    with (
        server(settings.model_copy(update=update), port=main) as api,
        httpx.Client(timeout=30) as http,
    ):
        assert http.get(f"{api.url}{LIVE}").status_code == 200
        on_main = http.get(f"{api.url}/metrics")
        scraped = http.get(f"http://127.0.0.1:{port}/metrics")
        elsewhere = [http.get(f"http://127.0.0.1:{port}{path}") for path in (LIVE, "/docs")]
        posted = http.post(f"http://127.0.0.1:{port}/metrics")
        with pytest.raises(httpx.ConnectError):  # bound to METRICS_HOST, 127.0.0.1 only
            http.get(f"http://127.0.0.2:{port}/metrics")

    assert on_main.status_code == 403
    assert scraped.status_code == 200
    assert scraped.headers["content-type"].startswith("text/plain")
    assert "server" not in scraped.headers
    assert requests(parse(scraped.text), "GET", LIVE, 200) == 1
    assert [answer.status_code for answer in elsewhere] == [404, 404]
    assert posted.status_code == 405


def test_every_worker_listens_and_any_answers_for_all(settings: Settings, tmp_path: Path) -> None:
    (main, port), directory = free_ports(2), tmp_path / "prometheus"
    directory.mkdir()
    update = {"metrics_port": port, "prometheus_multiproc_dir": directory, "log_level": "WARNING"}
    env_settings = settings.model_copy(update=update)
    with server(env_settings, "--workers", "2", port=main) as api:
        deadline = time.monotonic() + 60  # the workers start one after the other
        while listening_sockets(port) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        for _ in range(20):  # new connections: the kernel spreads them over both workers
            with httpx.Client(timeout=30) as fresh:
                assert fresh.get(f"{api.url}{LIVE}").status_code == 200
        scrapes = []
        for _ in range(10):
            with httpx.Client(timeout=30) as fresh:
                scrapes.append(parse(fresh.get(f"http://127.0.0.1:{port}/metrics").text))
        counted = listening_sockets(port)

    assert counted == 2
    assert [requests(found, "GET", LIVE, 200) for found in scrapes] == [20] * 10


def test_a_second_process_without_a_multiprocess_dir_refuses_the_port(settings: Settings) -> None:
    main, port, other = free_ports(3)
    update = {"metrics_port": port, "log_level": "WARNING"}
    shared = settings.model_copy(update=update)
    with server(shared, port=main):
        env = {**os.environ, **settings_env(shared)}
        second = Server(env, port=other, stderr=subprocess.PIPE, text=True)
        _, errors = second.process.communicate(timeout=60)

    assert second.process.returncode != 0
    assert f"METRICS_PORT: cannot listen on 127.0.0.1:{port}" in errors
    assert "PROMETHEUS_MULTIPROC_DIR" in errors
