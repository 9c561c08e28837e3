"""Redis Cluster and Sentinel for the sections that compare topologies.

The servers are started the way the rendered project's tests start them
(`scripts/redis_topology.py` runs its `tests.redis_cluster` / `tests.redis_sentinel`), in a
process group of the bench's, so `stop_all` ends them with the section.
"""

import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from harness.context import SCRIPTS, Bench

START_BOUND = 120.0  # seconds; a cluster is ready in a few, a Sentinel group in a few more


@dataclass
class Topology:
    """A started topology program; `url()` once it has printed it."""

    kind: str
    process: "subprocess.Popen[bytes]"
    log: Path
    offset: int  # where this run's output starts: the log is appended to across runs

    def url(self) -> str:
        """The service URL the program printed (waits for it; raises if the program died)."""
        deadline = time.monotonic() + START_BOUND
        while time.monotonic() < deadline:
            text = self.log.read_bytes()[self.offset :].decode(errors="replace")
            for line in text.splitlines():
                if line.startswith("redis+"):
                    return line.strip()
            if self.process.poll() is not None:
                raise RuntimeError(f"the {self.kind} program exited:\n{text[-3000:]}")
            time.sleep(0.1)
        raise TimeoutError(f"no {self.kind} URL after {START_BOUND:.0f} s")


def start(bench: Bench, kind: str) -> Topology:
    """Start a `cluster` (3 masters) or a `sentinel` group (primary, replica, 3 Sentinels)."""
    name = f"redis-{kind}"
    log = bench.procs.log_dir / f"{name}.log"
    offset = log.stat().st_size if log.exists() else 0
    project = bench.project("redis_queue")
    argv = [bench.python("redis_queue"), str(SCRIPTS / "redis_topology.py"), kind]
    process = bench.procs.spawn(name, argv, cwd=project, env={"PYTHONPATH": str(project)})
    return Topology(kind, process, log, offset)
