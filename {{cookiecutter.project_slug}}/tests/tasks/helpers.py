"""Polling helpers shared by the task tests of every backend."""

import asyncio
import json
import time
from typing import Any

from httpx import AsyncClient


async def enqueue(client: AsyncClient, name: str, payload: dict[str, Any]) -> str:
    """POST a task and return its id (asserting the 202)."""
    response = await client.post("/api/v1/tasks", json={"name": name, "payload": payload})
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["status"] == "queued"
    return str(body["id"])


async def wait_final(client: AsyncClient, task_id: str, within: float = 15.0) -> dict[str, Any]:
    """Poll until the task is succeeded or failed; return its status body."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        response = await client.get(f"/api/v1/tasks/{task_id}")
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        if body["status"] in ("succeeded", "failed"):
            return body
        await asyncio.sleep(0.05)
    raise TimeoutError(f"task {task_id} not finished after {within}s: {body}")


def json_lines(text: str) -> list[dict[str, Any]]:
    """The lines of a process's output that are JSON objects (its log lines, in JSON format)."""
    entries = []
    for line in text.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict):
            entries.append(entry)
    return entries
