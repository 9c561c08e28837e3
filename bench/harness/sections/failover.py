"""15. Failover under load, Sentinel and Cluster: the rendered project's own failover tests, timed.

Each test runs reads, writes and enqueues (REDIS_REPLICA_ACKS=1) while the primary, or a
master, is SIGKILLed with its replica frozen and cut off first (the race widened), and a worker
is SIGKILLed mid-task; it fails on any 5xx, on an accepted task that does not succeed, and (on
Sentinel) on a stale read, and prints the recovery time. Full runs only: about a minute each.
"""

import os
import re
import subprocess

from harness.context import Bench
from harness.results import Row, judge, missing

SECTION = "15. Failover under load (the rendered project's failover tests, REDIS_REPLICA_ACKS=1)"
TESTS = {
    "Sentinel: the primary SIGKILLed": ("tests/tasks/redis_queue/test_failover.py", "no 5xx, no stale read"),
    "Cluster: a master SIGKILLed": ("tests/tasks/redis_queue/test_cluster_failover.py", "no 5xx"),
}
PRINTED = re.compile(
    r"failover: promoted ([\d.]+) s after the kill, first 202 after\s+([\d.]+) s; (\d+) accepted, (\d+) refused"
)


def run(bench: Bench) -> list[Row]:
    """Run each failover test once; its printed recovery time, and whether its checks held."""
    if bench.quick:
        return [missing(SECTION, "failover recovery, Sentinel and Cluster", "full runs only (a minute per test)")]
    rows = []
    project = bench.project("redis_queue")
    for system, (path, checks) in TESTS.items():
        done = subprocess.run(
            [bench.python("redis_queue"), "-m", "pytest", "-s", "-q", "-p", "no:cacheprovider", path],
            cwd=project,
            env={**os.environ, "CI": "true"},
            capture_output=True,
            text=True,
            timeout=900,
        )
        found = PRINTED.search(done.stdout)
        if found is None:
            tail = (done.stdout + done.stderr)[-300:].replace("\n", " ")
            rows.append(Row(SECTION, system, note=f"no recovery time printed (exit {done.returncode}): `{tail}`"))
            continue
        promoted, recovery, accepted, refused = found.groups()
        held = done.returncode == 0
        detail = (
            f"promoted {promoted} s after the kill; {accepted} tasks accepted, {refused} refused (503 + Retry-After); "
            f"every accepted task succeeded, {checks}: {'held' if held else 'FAILED (see the test output)'}"
        )
        row = Row(SECTION, f"{system}, under load", float(recovery), "s kill → first 202", detail=detail)
        judge(row, float(recovery), "s kill → first 202", "0 accepted tasks lost, " + checks, held)
        rows.append(row)
    return rows
