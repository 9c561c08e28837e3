"""Real `uvicorn app.main:app` processes sharing a PROMETHEUS_MULTIPROC_DIR (`/metrics` tests)."""

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr

from app.config import Settings
from tests.prometheus_text import Samples, parse
from tests.servers import free_port, wait_for_port

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class Server:
    """`uvicorn app.main:app` in a process of its own, on a free port."""

    def __init__(
        self, env: dict[str, str], *options: str, port: int | None = None, **popen: Any
    ) -> None:
        self.port = port or free_port()
        command = [sys.executable, "-m", "uvicorn", "app.main:app", "--port", str(self.port)]
        self.process = subprocess.Popen(
            [*command, "--host", "127.0.0.1", "--log-level", "warning", *options],
            cwd=PROJECT_ROOT,
            env=env,
            **popen,
        )
        self.url = f"http://127.0.0.1:{self.port}"

    def stop(self, signum: int = signal.SIGTERM) -> None:
        """Send `signum` and wait for the process to end (SIGKILL after 30 s)."""
        if self.process.poll() is None:
            self.process.send_signal(signum)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment variables that make a server read `settings` (secrets in clear)."""
    values = settings.model_dump(mode="json", exclude_none=True)
    for name in values:
        secret = getattr(settings, name)
        if isinstance(secret, SecretStr):
            values[name] = secret.get_secret_value()
    return {
        key.upper(): value if isinstance(value, str) else json.dumps(value)
        for key, value in values.items()
    }


@contextmanager
def running_servers(
    settings: Settings, multiproc_dir: Path, count: int = 2
) -> Iterator[list[Server]]:
    """`count` servers with `settings`, sharing `multiproc_dir` (which must be empty)."""
    env = settings_env(settings)
    env["PROMETHEUS_MULTIPROC_DIR"] = str(multiproc_dir)
    started = [Server({**os.environ, **env}) for _ in range(count)]
    try:
        for server in started:  # uvicorn listens once the lifespan has started
            wait_for_port(server.port, timeout=60)
        yield started
    finally:
        for server in started:
            server.stop()


async def scrape(http: httpx.AsyncClient, server: Server) -> Samples:
    """`server`'s `/metrics`, parsed."""
    response = await http.get(f"{server.url}/metrics")
    assert response.status_code == 200
    return parse(response.text)
