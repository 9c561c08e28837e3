"""Hold a Redis Cluster or a Sentinel group, as the rendered project's tests start them.

argv: `cluster` (3 masters, `tests.redis_cluster`) or `sentinel` (a primary, a replica and
three Sentinels, `tests.redis_sentinel`). Runs in a rendered project's environment and
directory, prints the service's URL for it on one line, and stops every server it started on
SIGTERM or SIGINT.
"""

import contextlib
import signal
import sys
from collections.abc import Iterator

from tests.redis_cluster import running_cluster
from tests.redis_sentinel import running_sentinel_group


@contextlib.contextmanager
def running(kind: str) -> Iterator[str]:
    """The topology `kind` for the block; its URL."""
    if kind == "cluster":
        with running_cluster() as cluster:
            yield cluster.url
    elif kind == "sentinel":
        with running_sentinel_group() as group:
            yield group.url
    else:
        raise SystemExit(f"unknown topology {kind!r}: cluster or sentinel")


def main() -> None:
    with running(sys.argv[1]) as url:
        # Blocked only now: the servers, started above, must not inherit the mask.
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
        sys.stdout.write(f"{url}\n")
        sys.stdout.flush()
        signal.sigwait({signal.SIGTERM, signal.SIGINT})


main()
