"""Processes the bench starts: each in its own process group, all stopped on the way out."""

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path


def free_port() -> int:
    """A port that is free on loopback right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def free_ports(count: int) -> list[int]:
    """`count` distinct ports that are free on loopback right now (held open together, so
    that no two are the same)."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]


def wait_for_port(port: int, timeout: float = 30.0, process: subprocess.Popen[bytes] | None = None) -> None:
    """Block until something accepts connections on 127.0.0.1:port (or the process died)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{process.args!r} exited with {process.returncode} before listening")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def stop_process(process: subprocess.Popen[bytes], *, grace: float = 5.0, hard: bool = False) -> None:
    """Stop a process group we started: SIGTERM (or SIGKILL when `hard`), then SIGKILL after `grace`."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL if hard else signal.SIGTERM)
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


@dataclass
class Processes:
    """Every process started through it; `stop_all` ends them in reverse order."""

    log_dir: Path
    started: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def spawn(
        self,
        name: str,
        argv: Sequence[str],
        *,
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.Popen[bytes]:
        """Start `argv` in a new session (its own process group), output to `<log_dir>/<name>.log`."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = (self.log_dir / f"{name}.log").open("ab")
        full_env = {**os.environ, **(env or {})}
        process = subprocess.Popen(
            list(argv),
            cwd=cwd,
            env=full_env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()
        self.started.append(process)
        return process

    def stop(self, process: subprocess.Popen[bytes], *, hard: bool = False) -> None:
        """Stop one process group and forget it."""
        stop_process(process, hard=hard)
        if process in self.started:
            self.started.remove(process)

    def stop_all(self, keep: Sequence[subprocess.Popen[bytes] | None] = ()) -> None:
        """Stop everything still running but `keep`, newest first."""
        for process in reversed([p for p in self.started if p not in keep]):
            self.stop(process)


@contextlib.contextmanager
def processes(log_dir: Path) -> Iterator[Processes]:
    """A `Processes` whose members are all stopped when the block ends, even on error."""
    procs = Processes(log_dir)
    try:
        yield procs
    finally:
        procs.stop_all()


@dataclass
class RedisServer:
    """A throwaway redis-server on loopback, no persistence, restartable on the same port."""

    procs: Processes
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """redis:// URL of database 0."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start (or restart) the server and wait until it accepts connections."""
        self.process = self.procs.spawn(
            f"redis-{self.port}",
            [
                "redis-server",
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
                "--enable-debug-command",
                "local",
            ],
        )
        wait_for_port(self.port, process=self.process)

    def stop(self) -> None:
        """Stop the server, as an outage would."""
        if self.process is not None:
            self.procs.stop(self.process)
            self.process = None

    def cli(self, *args: str) -> str:
        """Run redis-cli against this server and return its output."""
        done = subprocess.run(
            ["redis-cli", "-p", str(self.port), *args], capture_output=True, text=True, timeout=120, check=True
        )
        return done.stdout.strip()
