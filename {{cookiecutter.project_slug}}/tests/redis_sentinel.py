"""A real Sentinel group, started by the tests on free loopback ports.

A primary, one replica (`--replicaof`) and three `redis-server FILE.conf --sentinel`, each
Sentinel with its own writable config file (Sentinel rewrites it as the group changes). Its
URL, `redis+sentinel://h1:p1,h2:p2,h3:p3/<service>/0`, names the group as every Redis setting
of the service takes it. `kill_primary` SIGKILLs the primary and returns once the Sentinels
have promoted the replica; `pause_replica` freezes the replica (SIGSTOP) so that the primary
acknowledges writes no replica has.

`uv run python -m tests.redis_sentinel` runs one until SIGTERM or Ctrl-C and prints its URL:
`TEST_REDIS_URL=<that URL> uv run pytest` runs the suite on it.
"""

import contextlib
import functools
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from redis import Redis
from redis.asyncio import Redis as AsyncRedis
from redis.exceptions import RedisError

from tests.servers import free_port, require_binary, wait_for_port

SERVICE = "mymaster"
QUORUM = 2
DOWN_AFTER_MS = 1000  # a primary that does not answer this long is down
# The program's group, for a whole suite: its tests pause Redis (`CLIENT PAUSE`) for a few
# seconds to stand for a silent server, which must not turn into a failover there.
SUITE_DOWN_AFTER_MS = 30_000
FAILOVER_TIMEOUT_MS = 5000
STARTUP_BOUND = 60.0  # seconds: every wait here is event-driven, this is only its generous bound


def _wait_until(condition: Callable[[], bool], what: str, within: float = STARTUP_BOUND) -> None:
    """Poll `condition` (Redis errors count as not yet) until it holds; raise after `within` s."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        with contextlib.suppress(RedisError, RuntimeError, IndexError, TypeError):
            if condition():
                return
        time.sleep(0.05)
    raise TimeoutError(f"{what} after {within}s")


def _command(port: int, *args: str) -> Any:
    """One command to the server on `port`, on a connection closed after it."""
    with Redis(host="127.0.0.1", port=port, socket_timeout=1, socket_connect_timeout=1) as redis:
        return redis.execute_command(*args)


def _field(reply: Any, name: str) -> str:
    """One field of a Sentinel reply (a flat list of names and values, or a dict on RESP3)."""
    pairs = reply if isinstance(reply, dict) else dict(zip(reply[::2], reply[1::2], strict=True))
    value = pairs.get(name.encode(), pairs.get(name, b""))
    return value.decode() if isinstance(value, bytes) else str(value)


@dataclass
class SentinelGroup:
    """A primary, a replica and three Sentinels; stopped (by pid) with `stop`."""

    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="test-sentinel-")))
    primary_port: int = field(default_factory=free_port)
    replica_port: int = field(default_factory=free_port)
    sentinel_ports: list[int] = field(default_factory=lambda: [free_port() for _ in range(3)])
    processes: dict[int, subprocess.Popen[bytes]] = field(default_factory=dict)
    down_after_ms: int = DOWN_AFTER_MS

    @property
    def url(self) -> str:
        """The Sentinel URL of database 0 of the group's primary, as the settings take it."""
        hosts = ",".join(f"127.0.0.1:{port}" for port in self.sentinel_ports)
        return f"redis+sentinel://{hosts}/{SERVICE}/0"

    def direct_url(self, port: int) -> str:
        """A one-node URL of one server of the group (to read or write it past Sentinel)."""
        return f"redis://127.0.0.1:{port}/0"

    def _spawn(self, port: int, argv: list[str]) -> None:
        self.processes[port] = subprocess.Popen(argv, stdout=subprocess.DEVNULL)
        wait_for_port(port, timeout=STARTUP_BOUND)

    def _redis(self, port: int, *extra: str) -> None:
        binary = require_binary("redis-server")
        common = ["--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        options = ["--repl-diskless-sync-delay", "0", "--loglevel", "warning", "--dir"]
        self._spawn(port, [binary, *common, *options, str(self.workdir), *extra])

    def _sentinel(self, port: int) -> None:
        conf = self.workdir / f"sentinel-{port}.conf"
        conf.write_text(
            f"port {port}\nbind 127.0.0.1\ndir {self.workdir}\nloglevel warning\n"
            f"sentinel monitor {SERVICE} 127.0.0.1 {self.primary_port} {QUORUM}\n"
            f"sentinel down-after-milliseconds {SERVICE} {self.down_after_ms}\n"
            f"sentinel failover-timeout {SERVICE} {FAILOVER_TIMEOUT_MS}\n"
        )
        self._spawn(port, [require_binary("redis-server"), str(conf), "--sentinel"])

    def start(self) -> None:
        """Start every server and wait until each Sentinel knows the primary, the replica and
        its two peers, and the replica is in sync."""
        self._redis(self.primary_port)
        self._redis(self.replica_port, "--replicaof", "127.0.0.1", str(self.primary_port))
        for port in self.sentinel_ports:
            self._sentinel(port)
        _wait_until(lambda: self._replica_online(self.primary_port), "the replica never synced")
        for port in self.sentinel_ports:
            ready = functools.partial(self._sentinel_ready, port)
            try:
                _wait_until(ready, f"sentinel {port} does not know the group")
            except TimeoutError as error:
                raise TimeoutError(f"{error}: {self._sentinel_view(port)}") from None

    def _replica_online(self, primary: int) -> bool:
        info = _command(primary, "INFO", "replication")
        return any(
            isinstance(value, dict) and value.get("state") == "online"
            for key, value in info.items()
            if str(key).startswith("slave")
        )

    def _sentinel_ready(self, port: int) -> bool:
        primary = _command(port, "SENTINEL", "MASTER", SERVICE)
        replicas = _command(port, "SENTINEL", "REPLICAS", SERVICE)
        peers = _command(port, "SENTINEL", "SENTINELS", SERVICE)
        return (
            _field(primary, "flags") == "master"
            and [_field(replica, "flags") for replica in replicas] == ["slave"]
            and len(peers) == len(self.sentinel_ports) - 1
        )

    def _sentinel_view(self, port: int) -> str:
        """What one Sentinel sees of the group, for the message of a start that timed out."""
        try:
            primary = _command(port, "SENTINEL", "MASTER", SERVICE)
            replicas = _command(port, "SENTINEL", "REPLICAS", SERVICE)
            peers = _command(port, "SENTINEL", "SENTINELS", SERVICE)
        except RedisError as error:
            return f"unreadable ({error})"
        flags = [_field(replica, "flags") for replica in replicas]
        return (
            f"primary {_field(primary, 'port')} {_field(primary, 'flags')}, "
            f"replicas {flags}, {len(peers)} peers"
        )

    def primary_named(self) -> int:
        """The port every Sentinel names as the primary now (they must agree)."""
        named = {
            int(_command(port, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", SERVICE)[1])
            for port in self.sentinel_ports
        }
        if len(named) != 1:
            raise RuntimeError(f"the Sentinels disagree on the primary: {sorted(named)}")
        return named.pop()

    def kill_primary(self, within: float = STARTUP_BOUND) -> float:
        """SIGKILL the primary; return the seconds until every Sentinel names the promoted
        replica and it answers as a primary."""
        old, new = self.primary_port, self.replica_port
        killed = time.monotonic()
        self.processes[old].send_signal(signal.SIGKILL)
        self.processes.pop(old).wait()

        def promoted() -> bool:
            role = _command(new, "ROLE")[0]
            return role == b"master" and self.primary_named() == new

        _wait_until(promoted, "the replica was never promoted", within)
        self.primary_port, self.replica_port = new, old
        return time.monotonic() - killed

    def restart_replica(self) -> None:
        """Start the killed primary again, as a replica of the new one, and wait until it syncs."""
        self._redis(self.replica_port, "--replicaof", "127.0.0.1", str(self.primary_port))
        _wait_until(lambda: self._replica_online(self.primary_port), "the replica never synced")

    def signal_replica(self, signum: signal.Signals) -> None:
        """Send `signum` to the replica (SIGSTOP freezes it, SIGCONT wakes it)."""
        self.processes[self.replica_port].send_signal(signum)

    @contextlib.contextmanager
    def paused_replica(self) -> Iterator[None]:
        """The replica frozen with SIGSTOP for the block: the primary's writes reach no replica."""
        self.signal_replica(signal.SIGSTOP)
        try:
            yield
        finally:
            self.signal_replica(signal.SIGCONT)

    def stop(self) -> None:
        """Stop every server of the group by its pid and delete its files."""
        for process in self.processes.values():
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGCONT)
                process.kill()
        for process in self.processes.values():
            process.wait(timeout=10)
        self.processes.clear()
        shutil.rmtree(self.workdir, ignore_errors=True)


def _started_once(down_after_ms: int) -> SentinelGroup:
    """A started group, or none left running."""
    group = SentinelGroup(down_after_ms=down_after_ms)
    try:
        group.start()
    except BaseException:
        group.stop()
        raise
    return group


def _started(down_after_ms: int) -> SentinelGroup:
    """A started group. On a loaded machine the Sentinels' discovery can stall past the bound
    (or a 1 s `down-after` fire a failover mid-start): a fresh group is then tried once more."""
    try:
        return _started_once(down_after_ms)
    except TimeoutError as error:
        sys.stderr.write(f"the Sentinel group did not start, starting a fresh one: {error}\n")
    return _started_once(down_after_ms)


@contextlib.contextmanager
def running_sentinel_group(down_after_ms: int = DOWN_AFTER_MS) -> Iterator[SentinelGroup]:
    """Run a fresh Sentinel group for the duration of the block."""
    group = _started(down_after_ms)
    try:
        yield group
    finally:
        group.stop()


if __name__ == "__main__":
    with running_sentinel_group(SUITE_DOWN_AFTER_MS) as served:
        # Blocked only now: the servers, started above, must not inherit the mask (SIGTERM
        # would not stop them, and they would outlive this process).
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
        sys.stdout.write(f"{served.url}\n")
        sys.stdout.flush()
        signal.sigwait({signal.SIGTERM, signal.SIGINT})


@pytest.fixture(scope="module")
def group() -> Iterator[SentinelGroup]:
    """A primary, its replica and three Sentinels for the importing module's tests, which
    never fail it over: a slow machine's stall must not look like a dead primary to them."""
    with running_sentinel_group(SUITE_DOWN_AFTER_MS) as sentinel_group:
        yield sentinel_group


@pytest.fixture(name="group")
def failing_group() -> Iterator[SentinelGroup]:
    """A group of the importing test's own, as `group`, with the 1 s `down-after`: the test
    kills its primary, and no other test shares what is left of it."""
    with running_sentinel_group() as sentinel_group:
        yield sentinel_group


async def emptied_primary(group: SentinelGroup) -> str:
    """The group's primary, addressed directly and emptied: what a test starts from."""
    primary = group.direct_url(group.primary_port)
    async with AsyncRedis.from_url(primary) as redis:
        await redis.flushdb()
    return primary
