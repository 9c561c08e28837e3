"""Celery task messages, written to Redis by the service itself instead of by kombu.

The API enqueues a task with one MULTI on its asyncio Redis client. The `queued` status
and the message are stored together or not at all, and the event loop never waits on a
socket. Celery's `send_task` can do neither: kombu publishes over blocking sockets, so
from a thread that shares the GIL with the event loop, after a status written on its own.
In the template's benchmark (2 cores, 200 enqueues/s, a worker running), the API spent
3.2 ms of CPU per enqueue with `send_task` and 2.0 ms without, and the p99 of
`POST /api/v1/tasks` fell from 6-9 ms to 4 ms.

The message is the one `send_task` would send. Celery builds its headers and body
(`AMQP.as_task_v2`, message protocol 2), and `task_message` wraps them the way kombu's
Redis transport stores a message: JSON in a list named after the queue.
`tests/tasks/test_celery_message.py` sends the same task through kombu and compares what a
consumer reads from both. If a Celery or kombu upgrade changes the format, that test fails
before production does.

What `send_task` does that this does not:
- It sends the `before_task_publish` and `after_task_publish` signals. To trace enqueues,
  instrument `CeleryTaskQueue.enqueue` instead.
- It routes. Here every task goes to `task_default_queue`.
"""

import base64
import json
import uuid
from dataclasses import dataclass
from typing import Any

from celery import Celery

RUN_TASK = "tasks.run"
ARGS_REPR_LENGTH = 1024  # characters of a message's arguments kept for Flower (Celery's default)
PERSISTENT = 2  # kombu's delivery_mode for messages kept by the broker


@dataclass(frozen=True, slots=True)
class TaskMessage:
    """An encoded task message, and the Redis list (the queue) that workers take it from."""

    queue: str
    data: str


def task_message(app: Celery, task_id: str, name: str, payload: dict[str, Any]) -> TaskMessage:
    """Registry task `name` as Celery message `task_id` of task `tasks.run`, ready to LPUSH.

    The arguments' repr, which Flower and the logs show, is built with the built-in `repr`:
    Celery's own `saferepr` took about 15 % of the cost of every message.
    """
    args = (name, payload)
    message = app.amqp.as_task_v2(
        task_id,
        RUN_TASK,
        args=args,
        kwargs={},
        shadow=name,
        argsrepr=repr(args)[:ARGS_REPR_LENGTH],
        kwargsrepr="{}",
        # None, as send_task sends it, lets the task's own setting decide (the stubs say bool).
        ignore_result=None,  # type: ignore[arg-type]
    )
    queue: str = app.conf.task_default_queue
    body = json.dumps(message.body).encode()
    envelope = {
        "body": base64.b64encode(body).decode("ascii"),
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": message.headers,
        "properties": {
            **message.properties,
            "delivery_mode": PERSISTENT,
            "delivery_info": {"exchange": "", "routing_key": queue},
            "priority": 0,
            "body_encoding": "base64",
            "delivery_tag": str(uuid.uuid4()),  # the worker's key for it until acknowledged
        },
    }
    return TaskMessage(queue, json.dumps(envelope))
