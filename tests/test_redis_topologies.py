"""The generated suites on a real Redis Cluster or Sentinel group (TEST_REDIS_URL=...).

The cluster is the generated project's own (`python -m tests.redis_cluster`: three masters
on free loopback ports), and so is the Sentinel group (`python -m tests.redis_sentinel`: a
primary, a replica, three Sentinels). The subset is every test of the cache (contract,
batching, breaker, outbox, the services' history checker, the response cache) and the
middleware (the rate limits), on the redis_queue project, since that code is the same in every
backend; and on each backend, the tests of statuses and finished counts, the task API end to end
with real workers (redis_queue, Celery with RabbitMQ as its broker on a cluster; in-process for
background), and readiness: what reads or writes Redis through the app's own clients. The rest
of each suite tests one-node faults (a restarted or killed `redis-server`) and stays on one node.
"""

import subprocess
from pathlib import Path

import pytest

from tests.conftest import Render
from tests.test_generated_projects import SYNC, clean_env, failure, run, skipped_count

pytestmark = pytest.mark.slow

# The cache, the services and the middleware are the same code in every backend: they run on
# one backend per topology (redis_queue), the tasks and readiness on each.
SHARED = ["tests/infrastructure", "tests/services", "tests/middleware"]
PER_BACKEND = [
    "tests/api/test_health_topologies.py",
    "tests/tasks/test_status.py",
    "tests/tasks/test_finished_counts.py",
    "tests/tasks/test_api.py",
    "tests/tasks/test_dead_letters.py",
    "tests/tasks/test_dead_letter_store.py",
]
# They count one server's clients or kill one server's connections: one-node tests.
ONE_NODE_ONLY = [
    "tests/infrastructure/cache/test_contract.py::test_open_cache_yields_a_working_cache_and_closes_it",
    "tests/infrastructure/cache/test_redis.py::test_a_pooled_connection_killed_by_the_server_is_retried_on_a_fresh_one",
]


# The program that serves each topology, and the scheme of the URL it prints first.
TOPOLOGIES = {
    "cluster": ("tests.redis_cluster", "redis+cluster://"),
    "sentinel": ("tests.redis_sentinel", "redis+sentinel://"),
}


def suite_on(project: Path, topology: str, paths: list[str]) -> str:
    """Run `paths` with TEST_REDIS_URL at a cluster or Sentinel group the project starts;
    its output."""
    program, scheme = TOPOLOGIES[topology]
    servers = subprocess.Popen(
        ["uv", "run", "python", "-m", program],
        cwd=project,
        env=clean_env(),
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert servers.stdout is not None
        url = servers.stdout.readline().strip()
        assert url.startswith(scheme), f"the project's {topology} did not start"
        result = subprocess.run(
            [
                *["uv", "run", "pytest", "-q", "-rfEs", "-p", "no:cacheprovider"],
                *(path for path in paths if (project / path).exists()),
                *(f"--deselect={test}" for test in ONE_NODE_ONLY),
            ],
            cwd=project,
            env={**clean_env(), "TEST_REDIS_URL": url},
            capture_output=True,
            text=True,
            timeout=1200,
            check=False,
        )
    finally:
        servers.terminate()
        servers.wait(timeout=30)
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"the suite failed on a {topology}:\n{failure(result)}"
    return output


@pytest.mark.parametrize(
    ("backend", "topology"),
    [
        ("redis_queue", "cluster"),
        ("background", "cluster"),
        ("celery", "cluster"),  # the broker on RabbitMQ, a node the generated suite starts
        ("redis_queue", "sentinel"),
    ],
)
def test_the_generated_suite_passes_on_a_redis_topology(
    render: Render, backend: str, topology: str
) -> None:
    project = render(task_backend=backend, database="sqlite")
    run(SYNC, project)
    paths = [*SHARED, *PER_BACKEND] if backend == "redis_queue" else PER_BACKEND
    output = suite_on(project, topology, paths)
    skipped = skipped_count(output.strip())
    assert skipped == 0, f"{skipped} tests were skipped (missing servers?):\n{output[-4000:]}"
