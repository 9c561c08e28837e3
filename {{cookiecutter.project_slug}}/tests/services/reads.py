"""Reading a resource the way a client does, with what answered it (the X-Cache header)."""

from typing import Any

from httpx import AsyncClient

NO_RESPONSE_CACHE = {"cache-control": "no-store"}  # bypass the middleware: test the service cache


async def read(http: AsyncClient, path: str, **headers: str) -> tuple[int, Any, str]:
    """The status, the JSON body and the `X-Cache` answer (empty on an uncached route)."""
    response = await http.get(path, headers=headers)
    return response.status_code, response.json(), response.headers.get("x-cache", "")
