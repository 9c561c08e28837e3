"""A throwaway RabbitMQ node for the Celery tests, on free loopback ports.

Set `TEST_RABBITMQ_URL` to use a broker you already run. Otherwise Debian's
`rabbitmq-server` starts a node of its own: its own Erlang port mapper (`epmd`) on a free
port, its data and logs in a new temporary directory, all stopped at the end. As root the
node runs as the `rabbitmq` user, which owns that directory.
"""

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.servers import free_port, require_binary, wait_for_port

RABBITMQ_BIN = "/usr/lib/rabbitmq/bin/"  # Debian's real scripts (/usr/sbin's wrap them with su)
BOOT_TIMEOUT = 120.0  # seconds; a node boots in about 15 s on a busy machine


def _rabbitmq_binary(name: str) -> str:
    """Debian's script for `name`, else the one on PATH; skip or fail (CI) when missing."""
    if os.access(RABBITMQ_BIN + name, os.X_OK):
        return RABBITMQ_BIN + name
    return require_binary(name)


def _as_rabbitmq_user(argv: list[str], env: dict[str, str]) -> list[str]:
    """Run `argv` as `rabbitmq` when we are root, with `env` (runuser would reset HOME)."""
    pinned = [f"{key}={value}" for key, value in env.items()]
    if os.geteuid() == 0:
        return ["runuser", "-u", "rabbitmq", "--", "env", *pinned, *argv]
    return ["env", *pinned, *argv]


@dataclass(frozen=True)
class RabbitMQServer:
    """A running node: its AMQP URL, and `rabbitmqctl` aimed at it."""

    url: str
    ctl_argv: list[str]

    def ctl(self, *args: str) -> None:
        """Run `rabbitmqctl <args>` against this node (raise if it fails)."""
        subprocess.run([*self.ctl_argv, *args], check=True, cwd="/", stdout=subprocess.DEVNULL)


@contextlib.contextmanager
def running_rabbitmq() -> Iterator[RabbitMQServer]:
    """Run a fresh RabbitMQ node (the default vhost, user `guest`)."""
    server, ctl = _rabbitmq_binary("rabbitmq-server"), _rabbitmq_binary("rabbitmqctl")
    epmd = require_binary("epmd", "/usr/lib/erlang/erts-*/bin/epmd")
    workdir = Path(tempfile.mkdtemp(prefix="test-rabbitmq-"))
    if os.geteuid() == 0:
        shutil.chown(workdir, user="rabbitmq")
    port, epmd_port = free_port(), free_port()
    node = f"test{port}@localhost"
    env = {
        "HOME": str(workdir),  # the Erlang cookie the node and rabbitmqctl share
        "ERL_EPMD_PORT": str(epmd_port),
        "RABBITMQ_NODENAME": node,
        "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
        "RABBITMQ_NODE_PORT": str(port),
        "RABBITMQ_DIST_PORT": str(free_port()),
        "RABBITMQ_MNESIA_BASE": str(workdir / "mnesia"),
        "RABBITMQ_LOG_BASE": str(workdir / "log"),
        "RABBITMQ_CONFIG_FILE": str(workdir / "rabbitmq"),  # none: the defaults
        "RABBITMQ_ENABLED_PLUGINS_FILE": str(workdir / "enabled_plugins"),
    }
    process = subprocess.Popen(
        _as_rabbitmq_user([server], env),
        cwd=workdir,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # the script and the Erlang VM: one group to kill if need be
    )
    try:
        started = time.monotonic()
        wait_for_port(port, timeout=BOOT_TIMEOUT)
        remaining = max(10, BOOT_TIMEOUT - (time.monotonic() - started))
        subprocess.run(
            _as_rabbitmq_user([ctl, "-n", node, "await_startup", "-t", f"{remaining:.0f}"], env),
            check=True,
            cwd=workdir,
            stdout=subprocess.DEVNULL,
        )
        url = f"amqp://guest:guest@127.0.0.1:{port}//"
        yield RabbitMQServer(url, _as_rabbitmq_user([ctl, "-n", node], env))
    finally:
        subprocess.run(
            _as_rabbitmq_user([ctl, "-n", node, "stop"], env),
            check=False,
            cwd=workdir,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        subprocess.run(
            [epmd, "-port", str(epmd_port), "-kill"],
            check=False,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        shutil.rmtree(workdir, ignore_errors=True)
