"""Real Redis and PostgreSQL servers, started by the test suite on free loopback ports.

Set `TEST_REDIS_URL` / `TEST_DATABASE_URL` to use servers you already run (CI service
containers do). Without them, the binaries are looked up on PATH and in Debian's
`/usr/lib/postgresql/*/bin`. A missing binary skips the tests that need it locally, and
fails them under CI (`CI=true`): a green run must never hide an untested server.
"""

import contextlib
import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

SERVER_PACKAGES = "redis-server postgresql{% if cookiecutter.task_backend == "celery" %} rabbitmq-server{% endif %}"


def require_binary(name: str, *search: str) -> str:
    """Return the path of `name`; skip (locally) or fail (under CI) when it is missing."""
    found = shutil.which(name) or next(
        (path for pattern in search for path in sorted(glob.glob(pattern), reverse=True)), None
    )
    if found:
        return found
    reason = f"{name} not found: install it (Debian: apt-get install {SERVER_PACKAGES})"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason}; under CI a missing server is a failure, not a skip")
    pytest.skip(reason)


def free_port() -> int:
    """Ask the kernel for a port that is free on loopback right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout: float = 10.0) -> None:
    """Block until something accepts connections on `127.0.0.1:port`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


@dataclass
class RedisServer:
    """A throwaway `redis-server` that can be stopped and started again.

    It saves nothing by itself. With `data_dir`, a snapshot taken with `SAVE` is loaded again
    when the server starts, as a production Redis restarts from its RDB or AOF file.
    """

    port: int = field(default_factory=free_port)
    data_dir: Path | None = None
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The URL of database 0 on this server."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start the server on its port and wait until it accepts connections."""
        binary = require_binary("redis-server")
        self.process = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--loglevel",
                "warning",
                *(["--dir", str(self.data_dir)] if self.data_dir else []),
            ],
            stdout=subprocess.DEVNULL,
        )
        wait_for_port(self.port)

    def stop(self) -> None:
        """Stop the server (as an outage would) and wait for it to exit."""
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None


@contextlib.contextmanager
def running_redis(data_dir: Path | None = None) -> Iterator[RedisServer]:
    """Run a fresh redis-server for the duration of the block (see `RedisServer.data_dir`)."""
    server = RedisServer(data_dir=data_dir)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _as_postgres_user(argv: list[str]) -> list[str]:
    """`initdb` refuses to run as root: run the server as the `postgres` user when we are root."""
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *argv]
    return argv


@dataclass
class PostgresServer:
    """A throwaway PostgreSQL cluster that a test may stop, freeze and kill (fault tests).

    The cluster lives in a new directory under the system temp dir (pytest's own temp dirs
    are private to the current user, and the server may run as `postgres`).
    """

    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="test-postgres-")))
    port: int = field(default_factory=free_port)
    listen_addresses: str = "127.0.0.1"

    @property
    def url(self) -> str:
        """The asyncpg URL of the `postgres` database."""
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/postgres"

    def _pg(self, tool: str) -> str:
        return require_binary(tool, f"/usr/lib/postgresql/*/bin/{tool}")

    def init(self) -> None:
        """Create the cluster (trust authentication, user `postgres`)."""
        if os.geteuid() == 0:
            shutil.chown(self.workdir, user="postgres")
        subprocess.run(
            _as_postgres_user(
                [
                    self._pg("initdb"),
                    "-D",
                    str(self.workdir / "data"),
                    "-A",
                    "trust",
                    "-U",
                    "postgres",
                ]
            ),
            check=True,
            stdout=subprocess.DEVNULL,
        )

    def start(self) -> None:
        """Start the server on its port and wait until it accepts connections."""
        listen = f"-c listen_addresses={self.listen_addresses}"
        options = f"-p {self.port} -k {self.workdir} {listen} -F"
        data, log = str(self.workdir / "data"), str(self.workdir / "log")
        subprocess.run(
            _as_postgres_user(
                [self._pg("pg_ctl"), "-D", data, "-o", options, "-l", log, "-w", "start"]
            ),
            check=True,
            stdout=subprocess.DEVNULL,
        )

    def stop(self) -> None:
        """Stop the server at once, if it runs."""
        subprocess.run(
            _as_postgres_user(
                [
                    self._pg("pg_ctl"),
                    "-D",
                    str(self.workdir / "data"),
                    "-m",
                    "immediate",
                    "-w",
                    "stop",
                ]
            ),
            check=False,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def pids(self) -> list[int]:
        """The postmaster and every process it started (backends, writers)."""
        postmaster = int((self.workdir / "data" / "postmaster.pid").read_text().split()[0])
        children = subprocess.run(
            ["ps", "-o", "pid=", "--ppid", str(postmaster)], capture_output=True, text=True
        ).stdout.split()
        return [postmaster, *map(int, children)]

    def signal(self, signum: signal.Signals) -> None:
        """Send `signum` to the postmaster and every backend (one that just exited is skipped)."""
        for pid in self.pids():
            with contextlib.suppress(ProcessLookupError):  # a backend whose client left
                os.kill(pid, signum)

    def kill(self) -> None:
        """SIGKILL the postmaster and every backend at once, as a crash of the machine would.

        Where nothing reaps it, the killed postmaster lingers as a zombie whose pid, still in
        its lock files, would stop the next start: they go too, as after a reboot.
        """
        self.signal(signal.SIGKILL)
        socket_lock = self.workdir / f".s.PGSQL.{self.port}.lock"
        for lock in (self.workdir / "data" / "postmaster.pid", socket_lock):
            lock.unlink(missing_ok=True)

    def remove(self) -> None:
        """Delete the cluster's files."""
        shutil.rmtree(self.workdir, ignore_errors=True)


@contextlib.contextmanager
def running_postgres_server() -> Iterator[PostgresServer]:
    """Run a fresh PostgreSQL cluster for the duration of the block."""
    server = PostgresServer()
    try:
        server.init()
        server.start()
        yield server
    finally:
        server.stop()
        server.remove()


@contextlib.contextmanager
def running_postgres() -> Iterator[str]:
    """Run a fresh PostgreSQL cluster; yield the asyncpg URL of its `postgres` database."""
    with running_postgres_server() as server:
        yield server.url
