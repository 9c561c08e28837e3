"""A script that writes items through the service, as a cron job or a worker would.

`python -m tests.services.history_writer SECONDS ID [ID ...]`, with the service's settings
in the environment: for SECONDS it renames the items, one at a time, and then prints one
JSON line per write (`[item id, name, start, end]` on the machine's monotonic clock).
"""

import asyncio
import json
import random
import sys
import time

from app.config import Settings
from app.infrastructure.cache import open_cache
from app.infrastructure.database import create_engine, create_session_factory
from app.observability.metrics import Metrics
from app.schemas.item import ItemUpdate
from app.services.items import ItemService


async def write(seconds: float, ids: list[int]) -> list[tuple[int, str, float, float]]:
    """Rename the items for `seconds`; when each write started and ended."""
    settings = Settings()
    engine = create_engine(settings)
    writes = []
    try:
        async with open_cache(settings, Metrics()) as cache:
            service = ItemService(create_session_factory(engine), cache)
            until, count = time.monotonic() + seconds, 0
            while time.monotonic() < until:
                item_id, count = random.choice(ids), count + 1
                name = f"script write {count}"
                start = time.monotonic()
                await service.update(item_id, ItemUpdate(name=name))
                writes.append((item_id, name, start, time.monotonic()))
                await asyncio.sleep(random.uniform(0, 0.01))
    finally:
        await engine.dispose()
    return writes


if __name__ == "__main__":
    done = asyncio.run(write(float(sys.argv[1]), [int(arg) for arg in sys.argv[2:]]))
    sys.stdout.write("".join(json.dumps(one) + "\n" for one in done))
