"""The generated Sentinel tests, on a group the generated tests start themselves.

A redis_queue project runs its replica-acknowledgement and failover tests against a primary,
a replica and three `redis-server --sentinel` of its own, and prints its recovery time. The
whole generated suites run them too (test_generated_projects); this one is the short way to
see a failover, about a minute on 2 cores.
"""

import re

import pytest

from tests.conftest import Render
from tests.test_generated_projects import SYNC, UNDER_CI, run, skipped_count

pytestmark = pytest.mark.slow

SENTINEL_TESTS = [
    "tests/tasks/redis_queue/test_replica_acks.py",
    "tests/tasks/redis_queue/test_failover.py",
    "tests/infrastructure/cache/test_failover.py",
]


def test_redis_queue_loses_nothing_and_revives_nothing_across_a_sentinel_failover(
    render: Render,
) -> None:
    root = render(task_backend="redis_queue", database="sqlite", use_docker="no")
    run(SYNC, root)
    suite = ["uv", "run", "pytest", "-q", "-s", "-rfEs", "-p", "no:cacheprovider"]
    output = run([*suite, *SENTINEL_TESTS], root)
    assert re.search(r"\b5 passed", output), output[-4000:]
    if UNDER_CI:
        assert skipped_count(output.strip()) == 0, output[-4000:]
    assert re.search(r"failover: promoted [\d.]+ s after the kill, first 202 after", output)
