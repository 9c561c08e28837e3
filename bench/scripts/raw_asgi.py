"""The ceiling of one uvicorn worker: an ASGI app answering every request with one stored response.

RAW_RESPONSE names a JSON file {"status": 200, "headers": [[name, value], ...], "body": "..."}
(latin-1 text) that the bench writes from a real response-cache HIT of the generated service
(`harness/sections/http.py`), so this app sends the same bytes and headers (uvicorn adds `date`
and `server` to both). No middleware, no routing, no cache: what is left is uvicorn's own cost.
"""

import json
import os
from pathlib import Path
from typing import Any

_STORED = json.loads(Path(os.environ["RAW_RESPONSE"]).read_text())
START = {
    "type": "http.response.start",
    "status": int(_STORED["status"]),
    "headers": [(name.encode("latin-1"), value.encode("latin-1")) for name, value in _STORED["headers"]],
}
BODY = {"type": "http.response.body", "body": _STORED["body"].encode("latin-1")}


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answer the stored response; take part in the lifespan protocol."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    await send(START)
    await send(BODY)
