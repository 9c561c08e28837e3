"""A real Redis Cluster of three masters (and, on request, a replica each) on loopback ports.

Each node is a `redis-server --cluster-enabled yes` in a temp directory of its own, saving
nothing; `redis-cli --cluster create` assigns the slots, and the cluster is ready once every
node reports `cluster_state:ok`. Nodes are stopped by their pid, one at a time if a test wants
an outage (SIGSTOP, SIGKILL).

`uv run python -m tests.redis_cluster` runs one until SIGTERM or Ctrl-C and prints its URL:
`TEST_REDIS_URL=<that URL> uv run pytest` runs the suite on it.
"""

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from redis.crc import key_slot

from app.infrastructure.redis_client import AsyncRedis, redis_client
from tests.servers import free_port, require_binary, wait_for_port

NODE_TIMEOUT_MS = 2000  # how long a master may be silent before its replica takes over


@dataclass
class ClusterNode:
    """One `redis-server` of the cluster, in its own directory."""

    port: int
    directory: Path
    bus_port: int = field(default_factory=free_port)  # not port + 10000: that may pass 65535
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start the node and wait until it accepts connections."""
        self.process = subprocess.Popen(
            [
                require_binary("redis-server"),
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--cluster-enabled", "yes",
                "--cluster-config-file", "nodes.conf",
                "--cluster-port", str(self.bus_port),
                "--cluster-node-timeout", str(NODE_TIMEOUT_MS),
                "--save", "",
                "--appendonly", "no",
                "--repl-diskless-sync-delay", "0",
                "--dir", str(self.directory),
                "--loglevel", "warning",
            ],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        wait_for_port(self.port)

    @property
    def pid(self) -> int:
        """The process id of the running node."""
        assert self.process is not None, f"the node at {self.port} does not run"
        return self.process.pid

    def pause(self) -> None:
        """Freeze the node (SIGSTOP) until it is killed, stopped or thawed (SIGCONT)."""
        os.kill(self.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        """Wake a frozen node (SIGCONT)."""
        os.kill(self.pid, signal.SIGCONT)

    def stop(self) -> None:
        """Stop the node if it runs (a frozen one is thawed first, so that it can exit)."""
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.process.pid, signal.SIGCONT)
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None


@dataclass
class RedisCluster:
    """Three masters (ports in `masters`), each with `replicas` replicas."""

    replicas: int = 0
    nodes: list[ClusterNode] = field(default_factory=list)

    @property
    def url(self) -> str:
        """The service's URL for it, every master a seed node."""
        seeds = ",".join(f"127.0.0.1:{node.port}" for node in self.nodes[:3])
        return f"redis+cluster://{seeds}"

    @property
    def masters(self) -> list[int]:
        """The ports of the nodes that hold slots now."""
        return [node.port for node in self.nodes if self.role(node.port) == "master"]

    def cli(self, port: int, *args: str) -> str:
        """Run `redis-cli -p port args...` and return what it printed."""
        return subprocess.run(
            [require_binary("redis-cli"), "-p", str(port), *args],
            check=True,
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout

    def role(self, port: int) -> str:
        """`master` or `slave`, as the node at `port` says."""
        return self.cli(port, "ROLE").split("\n", 1)[0].strip()

    def start(self, root: Path) -> None:
        """Start the nodes, create the cluster, and wait until every node sees it whole."""
        for n in range(3 * (1 + self.replicas)):
            directory = root / f"node-{n}"
            directory.mkdir()
            node = ClusterNode(free_port(), directory)
            self.nodes.append(node)
            node.start()
        addresses = [f"127.0.0.1:{node.port}" for node in self.nodes]
        subprocess.run(
            [require_binary("redis-cli"), "--cluster", "create", *addresses,
             "--cluster-replicas", str(self.replicas), "--cluster-yes"],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
        self.wait_until_ok()
        deadline = time.monotonic() + 60.0
        while len(self.masters) != 3:  # replicas are told whom to follow by gossip
            if time.monotonic() > deadline:
                raise TimeoutError("the replicas never followed their masters")
            time.sleep(0.05)
        for port in self.masters:
            self.wait_until_replicated(port)

    def replicas_of(self, port: int) -> list[int]:
        """The ports of the replicas the master at `port` streams to (synced or not)."""
        info = self.cli(port, "INFO", "replication")
        lines = [line for line in info.splitlines() if line.startswith("slave")]
        return [int(line.split("port=")[1].split(",")[0]) for line in lines if "port=" in line]

    def wait_until_replicated(self, port: int, timeout: float = 60.0) -> None:
        """Block until every one of the `replicas` replicas of the master at `port` is online."""
        deadline = time.monotonic() + timeout
        while self.cli(port, "INFO", "replication").count("state=online") < self.replicas:
            if time.monotonic() > deadline:
                raise TimeoutError(f"the replicas of {port} are not in sync after {timeout}s")
            time.sleep(0.05)

    def kill_master(self, port: int) -> None:
        """SIGKILL the master at `port` and reap it."""
        killed = self.node(port)
        assert killed.process is not None
        killed.process.kill()
        killed.process.wait()
        killed.process = None

    def wait_promoted(self, replica: int, timeout: float = 60.0) -> None:
        """Thaw `replica` (if frozen) and block until it serves its old master's slots."""
        with contextlib.suppress(ProcessLookupError):
            self.node(replica).thaw()
        deadline = time.monotonic() + timeout
        while self.role(replica) != "master" or "cluster_state:ok" not in self.cli(
            replica, "CLUSTER", "INFO"
        ):
            if time.monotonic() > deadline:
                raise TimeoutError(f"the replica {replica} was not promoted after {timeout}s")
            time.sleep(0.05)

    def rejoin(self, port: int) -> None:
        """Start the killed node at `port` again (empty): it rejoins as a replica of the
        master that took its slots; return once that master streams to it."""
        self.node(port).start()
        deadline = time.monotonic() + 60.0
        while self.role(port) != "slave":
            if time.monotonic() > deadline:
                raise TimeoutError(f"{port} did not rejoin as a replica")
            time.sleep(0.05)
        master = int(self.cli(port, "ROLE").split("\n")[2].strip())
        self.wait_until_replicated(master)

    def wait_until_ok(self, timeout: float = 60.0, *, ports: list[int] | None = None) -> None:
        """Block until each node (of `ports`, or all) reports `cluster_state:ok`."""
        deadline = time.monotonic() + timeout
        for port in ports if ports is not None else [node.port for node in self.nodes]:
            while "cluster_state:ok" not in self.cli(port, "CLUSTER", "INFO"):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"the cluster is not ok after {timeout}s")
                time.sleep(0.1)

    def first_slot(self, port: int) -> int:
        """The first hash slot the master at `port` serves."""
        for line in self.cli(port, "CLUSTER", "NODES").splitlines():
            fields = line.split()
            if "myself" in fields[2]:
                return int(fields[8].split("-")[0])
        raise LookupError(f"no node at {port} in its own CLUSTER NODES")

    def owner(self, key: str) -> int:
        """The port of the master that serves `key`'s hash slot now."""
        return self.slot_owners()[key_slot(key.encode())]

    def slot_owners(self) -> dict[int, int]:
        """Each hash slot's master (its port), as the first node sees the cluster now."""
        owners = {}
        for line in self.cli(self.nodes[0].port, "CLUSTER", "NODES").splitlines():
            fields = line.split()
            if "master" not in fields[2] or "fail" in fields[2]:
                continue
            port = int(fields[1].split(":")[1].split("@")[0])
            for served in fields[8:]:
                low, _, high = served.partition("-")
                if low.isdigit():
                    owners.update(dict.fromkeys(range(int(low), int(high or low) + 1), port))
        return owners

    def flush(self) -> None:
        """Empty every master (replicas follow)."""
        for port in self.masters:
            self.cli(port, "FLUSHALL")

    def node(self, port: int) -> ClusterNode:
        """The node listening on `port`."""
        return next(node for node in self.nodes if node.port == port)

    def stop(self) -> None:
        """Stop every node."""
        for node in self.nodes:
            node.stop()


@contextlib.contextmanager
def running_cluster(replicas: int = 0) -> Iterator[RedisCluster]:
    """A fresh cluster for the duration of the block, in a temp directory removed after."""
    require_binary("redis-cli")
    with tempfile.TemporaryDirectory(prefix="redis-cluster-") as root:
        cluster = RedisCluster(replicas)
        try:
            cluster.start(Path(root))
            yield cluster
        finally:
            cluster.stop()


def admin_client(url: str) -> AsyncRedis:
    """A client of the suite's Redis at `url`, one node or cluster, for a test to look inside."""
    return redis_client(url, max_connections=4, timeout=10.0)


if __name__ == "__main__":
    with running_cluster() as served:
        # Blocked only now: the nodes, started above, must not inherit the mask (SIGTERM
        # would not stop them, and they would outlive this process).
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
        sys.stdout.write(f"{served.url}\n")
        sys.stdout.flush()
        signal.sigwait({signal.SIGTERM, signal.SIGINT})
