"""An open-loop load: C clients, each sending one POST every 1/rate s, for a bounded time.

argv: url, clients, requests per second per client, seconds. Loopback only. Prints JSON
{"p50": ms, "p99": ms, "sent": n, "failed": n}. Unlike wrk (closed loop: each connection sends
again as soon as it is answered), the offered load here does not rise with the server's speed,
so latency shows the cost of a request rather than the length of the queue.
"""

import asyncio
import json
import sys
import time

import httpx

BODY = {"name": "add", "payload": {"a": 1, "b": 2}}


async def client(
    http: httpx.AsyncClient,
    url: str,
    interval: float,
    offset: float,
    until: float,
    latencies: list[float],
    failures: list[int],
) -> None:
    next_at = time.perf_counter() + offset  # clients are staggered: a steady rate, not bursts of C
    await asyncio.sleep(offset)
    while next_at < until:
        started = time.perf_counter()
        try:
            response = await http.post(url, json=BODY)
            if response.status_code != 202:
                failures.append(response.status_code)
        except httpx.HTTPError:
            failures.append(0)
        latencies.append((time.perf_counter() - started) * 1000)
        next_at += interval
        await asyncio.sleep(max(0.0, next_at - time.perf_counter()))


async def main() -> None:
    url, clients, rate, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
    if not url.startswith("http://127.0.0.1:"):
        raise SystemExit("loopback only")
    latencies: list[float] = []
    failures: list[int] = []
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(limits=limits, timeout=10) as http:
        await http.post(url, json=BODY)
        until = time.perf_counter() + seconds
        await asyncio.gather(
            *(client(http, url, 1 / rate, k / rate / clients, until, latencies, failures) for k in range(clients))
        )
    ordered = sorted(latencies)
    print(
        json.dumps(
            {
                "p50": ordered[len(ordered) // 2],
                "p99": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))],
                "sent": len(ordered),
                "failed": len(failures),
            }
        )
    )


asyncio.run(main())
