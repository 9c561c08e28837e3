"""After a failover, no invalidation the old primary acknowledged alone is undone.

The group's replica is frozen (SIGSTOP) and cut from the primary (`CLIENT KILL TYPE replica`),
so the primary takes the invalidation and never sends it anywhere; then the primary is killed
(SIGKILL) and the replica, woken, is promoted without it. Its data hold the old version and
the entry stamped with it: only the server epoch tells the entry is stale.
"""

from typing import cast

import pytest
from redis.asyncio import Redis

from app.infrastructure.cache import RedisCache, cache_from_url
from app.infrastructure.replication import ReplicaAcks
from app.observability.metrics import Metrics
from tests.infrastructure.conftest import cache_settings
from tests.redis_sentinel import running_sentinel_group

pytestmark = pytest.mark.slow


def _cache(url: str) -> RedisCache:
    # A timeout and a lease no busy machine outlasts: the test is about what a failover loses.
    settings = cache_settings(cache_socket_timeout=5.0, cache_lease_seconds=10.0)
    cache = cache_from_url(url, settings=settings, metrics=Metrics())
    assert isinstance(cache, RedisCache)
    return cache


async def test_an_invalidation_a_failover_lost_brings_back_no_entry() -> None:
    with running_sentinel_group() as group:
        old_primary = group.direct_url(group.primary_port)
        new_primary = group.direct_url(group.replica_port)
        writer = _cache(old_primary)
        miss = await writer.lookup("items", "1")
        assert await writer.fill(miss, b"before the write", 60)
        await ReplicaAcks(1, 5000).confirm(writer.client, "test:probe")  # the replica has it
        admin = Redis.from_url(old_primary)
        with group.paused_replica():
            await admin.client_kill_filter(_type="replica")
            await writer.invalidate(namespaces=["items"])  # acknowledged by the primary alone
            assert not writer.outbox  # Redis took it
            group.processes[group.primary_port].kill()
        await admin.aclose()
        await writer.close()
        recovery = group.kill_primary()
        print(f"failover: the replica answered as primary {recovery:.1f} s after the kill")  # noqa: T201

        raw = Redis.from_url(new_primary)
        stored = cast(bytes | None, await raw.get("{test:items}:1"))
        await raw.aclose()
        assert stored is not None
        assert stored.endswith(b"|before the write")  # the entry survived, the bump did not
        reader = _cache(new_primary)
        found = await reader.lookup("items", "1")
        await reader.close()
    assert found.available
    assert found.value is None
