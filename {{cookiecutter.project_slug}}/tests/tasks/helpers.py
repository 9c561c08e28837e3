"""Helpers shared by the task tests of every backend: an app to call, polling, worker processes."""

import asyncio
import json
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient

from app.config import Settings
from app.main import create_app


@asynccontextmanager
async def serve(settings: Settings) -> AsyncIterator[AsyncClient]:
    """A client of an app built from `settings`, with its lifespan running."""
    app: FastAPI = create_app(settings)
    async with (
        app.router.lifespan_context(app),
        AsyncClient(transport=ASGITransport(app=app), base_url="http://testserver") as http,
    ):
        yield http


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment that gives a worker (or beat) process exactly these settings."""
    env = {
        key.upper(): value if isinstance(value, str) else json.dumps(value)
        for key, value in settings.model_dump(mode="json").items()
        if value is not None
    }
    return {**os.environ, **env}


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


async def wait_status(
    client: AsyncClient, task_ids: list[str], status: str, within: float = 30.0
) -> list[dict[str, Any]]:
    """Poll until every task of `task_ids` has `status`; return their status bodies."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        bodies = [(await client.get(f"/api/v1/tasks/{task_id}")).json() for task_id in task_ids]
        if all(body["status"] == status for body in bodies):
            return bodies
        await asyncio.sleep(0.05)
    raise TimeoutError(f"tasks not all {status} after {within}s: {bodies}")
