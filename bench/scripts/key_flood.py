"""A key-space flood from one client: many spellings of the same few reads, and many real pages.

argv: base URL, requests, concurrency, item id. Loopback only. Four kinds of request, in turn:
junk query parameters (`/api/v1/items/{id}?junk17=1`, and on a 100-item page), `Accept`
variants (`text/x-junk-17`, `application/json;q=0.17`), id spellings (`/items/0{id}`,
`/items/+{id}`), and distinct valid pages (`?offset=&limit=` pairs: each is a real entry, only
the byte bound stops them). Prints JSON {"statuses": {code: n}, "x_cache": {value: n},
"distinct_page_bytes": bytes of the distinct valid pages answered, "seconds": s}.
"""

import asyncio
import json
import sys
import time
from collections import Counter

import httpx

PAGE = "/api/v1/items"


def request(i: int, item_id: int) -> tuple[str, dict[str, str]]:
    """The i-th request of the flood: a path and its headers."""
    kind, n = i % 4, i // 4
    if kind == 0:  # junk query parameters, on one item and on a full page
        return (f"{PAGE}/{item_id}?junk{n}=1" if n % 2 else f"{PAGE}?limit=100&junk{n}=1"), {}
    if kind == 1:  # Accept variants
        accept = f"text/x-junk-{n}" if n % 2 else f"application/json;q=0.{n % 1000:03d}"
        return f"{PAGE}/{item_id}", {"accept": accept}
    if kind == 2:  # id spellings
        return (f"{PAGE}/{'0' * (1 + n % 5)}{item_id}" if n % 2 else f"{PAGE}/+{item_id}"), {}
    return f"{PAGE}?offset={n % 100}&limit={100 - n // 100 % 50}", {}  # distinct valid pages


async def main() -> None:
    base, total, concurrency, item_id = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    if not base.startswith("http://127.0.0.1:"):
        raise SystemExit("loopback only")
    statuses: Counter[int] = Counter()
    x_cache: Counter[str] = Counter()
    pages: dict[str, int] = {}
    queue = iter(range(total))

    async def client(http: httpx.AsyncClient) -> None:
        for i in queue:
            path, headers = request(i, item_id)
            answer = await http.get(path, headers=headers)
            statuses[answer.status_code] += 1
            x_cache[answer.headers.get("x-cache", "none")] += 1
            if i % 4 == 3 and answer.status_code == 200:
                pages[path] = len(answer.content)

    started = time.perf_counter()
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        await asyncio.gather(*(client(http) for _ in range(concurrency)))
    print(
        json.dumps(
            {
                "statuses": dict(statuses),
                "x_cache": dict(x_cache),
                "distinct_page_bytes": sum(pages.values()),
                "seconds": time.perf_counter() - started,
            }
        )
    )


asyncio.run(main())
