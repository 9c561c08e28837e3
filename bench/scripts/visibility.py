"""Write-to-visibility across processes: PATCH an item through server A, poll it through server B.

argv: url of A, url of B, item path, writes, readers, ms between writes. Loopback only. Prints
JSON {"latencies_ms": [...], "unseen": n, "stale_after_5ms": n, "reads": n, "failed": n}.

For write i (name "v<run>-<i>"), the latency is the time from the moment A's 200 to the PATCH was read
to the end of the first read through B that shows write i or a later one: negative when B
showed it before A's answer arrived. `stale_after_5ms` counts reads through B sent more than
5 ms after a write completed that still showed an older name. Readers hold one keep-alive
connection each and send a request prepared once (asyncio streams: an HTTP library would spend
more CPU per request than the servers do, on the same cores).
"""

import asyncio
import bisect
import json
import re
import sys
import time
from urllib.parse import urlsplit

RUN = f"v{time.time_ns()}-"  # names this run writes: an earlier run's writes never count
NAME = re.compile(b'"name":"' + RUN.encode() + rb'(\d+)"')


async def exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> tuple[int, bytes]:
    """Send one request and read its whole response (Content-Length only); status and body."""
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return status, await reader.readexactly(length)


def patch_bytes(netloc: str, path: str, version: int) -> bytes:
    body = json.dumps({"name": f"{RUN}{version}"}).encode()
    head = f"PATCH {path} HTTP/1.1\r\nHost: {netloc}\r\nContent-Type: application/json\r\n"
    head += f"Content-Length: {len(body)}\r\n\r\n"
    return head.encode() + body


async def writer_loop(url: str, path: str, writes: int, gap: float, done: list[float], failed: list[int]) -> None:
    parts = urlsplit(url)
    assert parts.hostname is not None and parts.port is not None
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    try:
        for version in range(1, writes + 1):
            status, _ = await asyncio.wait_for(exchange(reader, writer, patch_bytes(parts.netloc, path, version)), 10)
            done.append(time.perf_counter())
            if status != 200:
                failed.append(status)
            await asyncio.sleep(gap)
    finally:
        writer.close()


Read = tuple[float, float, int]  # sent, ended, the write it showed (0: none yet)


async def reader_loop(url: str, path: str, stop: asyncio.Event, reads: list[Read], failed: list[int]) -> None:
    parts = urlsplit(url)
    assert parts.hostname is not None and parts.port is not None
    request = f"GET {path} HTTP/1.1\r\nHost: {parts.netloc}\r\n\r\n".encode()
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    try:
        while not stop.is_set():
            sent = time.perf_counter()
            status, body = await asyncio.wait_for(exchange(reader, writer, request), 10)
            if status != 200:
                failed.append(status)
                continue
            found = NAME.search(body)
            reads.append((sent, time.perf_counter(), int(found.group(1)) if found else 0))
    finally:
        writer.close()


def first_shown(reads: list[Read], writes: int) -> list[float]:
    """For each write 1..n, when the first read that showed it (or a later one) ended."""
    shown_at: list[float] = []
    for _sent, ended, seen in sorted(reads, key=lambda read: read[1]):
        while len(shown_at) < min(seen, writes):
            shown_at.append(ended)
    return shown_at


async def main() -> None:
    url_a, url_b, path = sys.argv[1], sys.argv[2], sys.argv[3]
    writes, readers, gap_ms = int(sys.argv[4]), int(sys.argv[5]), float(sys.argv[6])
    if not (url_a.startswith("http://127.0.0.1:") and url_b.startswith("http://127.0.0.1:")):
        raise SystemExit("loopback only")
    done: list[float] = []
    reads: list[Read] = []
    failed: list[int] = []
    stop = asyncio.Event()
    polling = [asyncio.create_task(reader_loop(url_b, path, stop, reads, failed)) for _ in range(readers)]
    await asyncio.sleep(0.2)  # the readers are polling before the first write
    await writer_loop(url_a, path, writes, gap_ms / 1000, done, failed)
    await asyncio.sleep(0.5)  # time for the last write to show
    stop.set()
    await asyncio.gather(*polling)
    shown_at = first_shown(reads, len(done))
    latencies = [(shown - completed) * 1000 for shown, completed in zip(shown_at, done, strict=False)]
    # A read is stale if it was sent more than 5 ms after a write it does not show completed.
    stale = sum(seen < bisect.bisect_left(done, sent - 0.005) for sent, _ended, seen in reads)
    unseen = len(done) - len(latencies)  # writes no read showed before the end
    found = {"unseen": unseen, "stale_after_5ms": stale, "reads": len(reads), "failed": len(failed)}
    print(json.dumps({"latencies_ms": latencies, **found}))


asyncio.run(main())
