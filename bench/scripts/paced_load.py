"""An open-loop load: C clients, each sending one POST every 1/rate s, for a bounded time.

argv: url, clients, requests per second per client, seconds, and optionally GET (default: a
POST of a no-op task, answered 202; GET expects 200). Loopback only. Prints JSON
{"p50": ms, "p99": ms, "sent": n, "failed": n}. Unlike wrk (closed loop: each connection sends
again as soon as it is answered), the offered load here does not rise with the server's speed,
so latency shows the cost of a request rather than the length of the queue.

Each client holds one keep-alive HTTP/1.1 connection and writes a request prepared once, with
asyncio streams. An HTTP library would spend more CPU per request than the server does (httpx:
about 1.5 ms here), on the same two cores as the server, and count it as server latency.
"""

import asyncio
import json
import sys
import time
from urllib.parse import urlsplit

BODY = json.dumps({"name": "add", "payload": {"a": 1, "b": 2}}).encode()
EXPECTED_STATUS = {"POST": 202, "GET": 200}


def request_bytes(host: str, path: str, method: str = "POST") -> bytes:
    """The whole request (a POST with its body, or a GET), as the client writes it."""
    if method == "GET":
        return f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {len(BODY)}\r\n\r\n"
    )
    return head.encode() + BODY


async def exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> int:
    """Send one request and read its whole response; return the status code."""
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = None
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    if length is None:
        raise SystemExit("the server answered without Content-Length; this client reads only that")
    await reader.readexactly(length)
    return status


async def client(
    host: str,
    port: int,
    request: bytes,
    expected: int,
    interval: float,
    offset: float,
    until: float,
    latencies: list[float],
    failures: list[int],
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    next_at = time.perf_counter() + offset  # clients are staggered: a steady rate, not bursts of C
    await asyncio.sleep(offset)
    try:
        while next_at < until:
            started = time.perf_counter()
            try:
                status = await asyncio.wait_for(exchange(reader, writer, request), timeout=10)
                if status != expected:
                    failures.append(status)
            except (OSError, TimeoutError, asyncio.IncompleteReadError):
                failures.append(0)
                writer.close()
                reader, writer = await asyncio.open_connection(host, port)
            latencies.append((time.perf_counter() - started) * 1000)
            next_at += interval
            await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
    finally:
        writer.close()


async def main() -> None:
    url, clients, rate, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
    method = sys.argv[5] if len(sys.argv) > 5 else "POST"
    if not url.startswith("http://127.0.0.1:"):
        raise SystemExit("loopback only")
    parts = urlsplit(url)
    assert parts.hostname is not None and parts.port is not None
    request = request_bytes(parts.netloc, parts.path, method)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    await exchange(reader, writer, request)  # the server's first request is not timed
    writer.close()
    latencies: list[float] = []
    failures: list[int] = []
    until = time.perf_counter() + seconds
    await asyncio.gather(
        *(
            client(
                parts.hostname,
                parts.port,
                request,
                EXPECTED_STATUS[method],
                1 / rate,
                k / rate / clients,
                until,
                latencies,
                failures,
            )
            for k in range(clients)
        )
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
