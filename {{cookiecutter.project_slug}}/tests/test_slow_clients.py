"""Slow and oversized clients against a real uvicorn started with the README's production command.

The command is read from the README ("Serving: slow clients"), so the test holds what the
README, the Dockerfile and compose give. 200 clients that send half a request and then
nothing do not keep a normal client out; a header past the h11 bound is refused, not
buffered (uvicorn's default parser, httptools, accepted 16 MiB); an idle keep-alive
connection is closed.
"""

import contextlib
import os
import shlex
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from app.config import Settings
from tests.servers import free_port, wait_for_port

pytestmark = pytest.mark.slow
PROJECT_ROOT = Path(__file__).resolve().parent.parent
SLOW_CLIENTS = 200
{%- if cookiecutter.auth == "oidc" %}
SERVED = 401  # the item list answers a request without a token
{%- else %}
SERVED = 200  # the item list
{%- endif %}


def production_command() -> list[str]:
    """The `uvicorn app.main:app --host 0.0.0.0 ...` line the README gives for production."""
    readme = (PROJECT_ROOT / "README.md").read_text()
    (line,) = {
        line.strip()
        for line in readme.splitlines()
        if line.strip().startswith("uvicorn app.main:app --host 0.0.0.0 --port 8000 ")
    }
    return shlex.split(line)


def option(command: list[str], name: str) -> str:
    """The value of `name` in `command`."""
    return command[command.index(name) + 1]


@pytest.fixture
def server(settings: Settings) -> Iterator[tuple[int, list[str]]]:
    """The production command on a free loopback port; yields the port and the command."""
    command = production_command()
    port = free_port()
    argv = [sys.executable, "-m", *command]
    argv[argv.index("0.0.0.0")] = "127.0.0.1"  # loopback only, in a test
    argv[argv.index("8000")] = str(port)
    env = {
        **os.environ,
        "DATABASE_URL": settings.database_url,
        "RATE_LIMIT_ENABLED": "false",
        "LOG_LEVEL": "WARNING",
        "AUTH_ISSUER": "http://127.0.0.1:9/",  # auth=oidc needs them to start (no token is sent)
        "AUTH_AUDIENCE": "slow-clients-test",
    }
    redis_url = settings.model_dump().get("redis_url")
    if redis_url:  # the background backend has none
        env["REDIS_URL"] = str(redis_url)
    process = subprocess.Popen(argv, cwd=PROJECT_ROOT, env=env)
    try:
        wait_for_port(port, timeout=60)
        yield port, command
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def half_a_request(port: int) -> socket.socket:
    """A connection that sent the start of a request's headers, and will send nothing more."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(b"GET /health/live HTTP/1.1\r\nHost: slow\r\nX-Slow: ")
    return sock


def test_the_command_bounds_headers_connections_and_keep_alive() -> None:
    command = production_command()

    assert option(command, "--http") == "h11"  # httptools ignores the header bound
    assert int(option(command, "--h11-max-incomplete-event-size")) <= 64 * 1024
    assert int(option(command, "--limit-concurrency")) > 0
    assert int(option(command, "--timeout-keep-alive")) <= 10
    assert "--no-server-header" in command  # no `server: uvicorn` to fingerprint
    assert "--no-proxy-headers" in command  # the app reads FORWARDED_ALLOW_IPS itself


def test_every_response_says_nosniff_and_no_server(server: tuple[int, list[str]]) -> None:
    port, _ = server
    base = f"http://127.0.0.1:{port}"
    with httpx.Client(timeout=30) as http:
        answers = [
            http.get(f"{base}/health/live"),
            http.get(f"{base}/api/v1/items"),
            http.get(f"{base}/nowhere"),
            http.get(f"{base}/api/v1/items/not-a-number"),
            http.get(f"{base}/api/v1/tasks%2Fdead-letters"),
            http.post(f"{base}/api/v1/items", content=b"x" * 2_000_000),
        ]

    assert answers[0].status_code == 200
    assert len({answer.status_code for answer in answers}) >= 4  # answers of every layer
    for answer in answers:
        assert answer.headers["x-content-type-options"] == "nosniff", answer.status_code
        assert "server" not in answer.headers, answer.status_code


def test_slow_clients_leave_a_normal_client_served(server: tuple[int, list[str]]) -> None:
    port, _ = server
    with contextlib.ExitStack() as stack:
        slow = [stack.enter_context(half_a_request(port)) for _ in range(SLOW_CLIENTS)]
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            live = http.get("/health/live")
            items = http.get("/api/v1/items")
        for sock in slow[:5]:  # still open, still waiting: they cost a descriptor each
            sock.setblocking(False)
            with pytest.raises(BlockingIOError):
                sock.recv(1)

    assert live.status_code == 200
    assert items.status_code == SERVED


def test_a_header_past_the_bound_is_refused_not_buffered(server: tuple[int, list[str]]) -> None:
    port, command = server
    bound = int(option(command, "--h11-max-incomplete-event-size"))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        answer = b""
        with contextlib.suppress(ConnectionError):
            sock.sendall(b"GET /health/live HTTP/1.1\r\nHost: big\r\nX-Big: " + b"a" * (64 * bound))
            sock.sendall(b"\r\n\r\n")
        with contextlib.suppress(ConnectionError):
            answer = sock.recv(100)

    assert not answer.startswith(b"HTTP/1.1 200")  # 400, or the connection closed on us
    with httpx.Client(timeout=10) as http:
        assert http.get(f"http://127.0.0.1:{port}/health/live").status_code == 200


def test_an_idle_keep_alive_connection_is_closed(server: tuple[int, list[str]]) -> None:
    port, command = server
    idle_limit = int(option(command, "--timeout-keep-alive"))
    with socket.create_connection(("127.0.0.1", port), timeout=idle_limit + 20) as sock:
        sock.sendall(b"GET /health/live HTTP/1.1\r\nHost: idle\r\n\r\n")
        received = b""
        while chunk := sock.recv(65536):  # until the server closes it (a timeout fails)
            received += chunk

    assert received.startswith(b"HTTP/1.1 200")
