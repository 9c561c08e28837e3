"""The messages the service writes itself read, to kombu's consumer, as `send_task`'s do."""

from collections.abc import Iterator
from typing import Any

import pytest
from kombu.message import Message
from redis import Redis

from app.config import Settings
from app.tasks.celery_app import TaskApp, create_celery_app
from app.tasks.celery_message import ARGS_REPR_LENGTH, RUN_TASK, task_message

# Set per publish (the delivery tag), or only by send_task: the reply queue of Celery's RPC
# result backend (unused: statuses live in the status store) and copies of two headers.
PUBLISHER_ONLY = {"delivery_tag", "reply_to", "argsrepr", "kwargsrepr"}


@pytest.fixture
def celery(settings: Settings) -> Iterator[TaskApp]:
    """The service's Celery app on the test's Redis (kombu sends and reads through it)."""
    app = create_celery_app(settings)
    yield app
    app.close()


def push(settings: Settings, app: TaskApp, task_id: str, name: str, payload: Any) -> None:
    """LPUSH the message as the API does (there, inside its MULTI)."""
    message = task_message(app, task_id, name, payload)
    with Redis.from_url(settings.redis_url) as redis:
        redis.lpush(message.queue, message.data)


def take(app: TaskApp) -> Message:
    """The next message of the default queue, as a worker's consumer reads it."""
    with app.connection_for_read() as connection:
        queue = connection.SimpleQueue(app.conf.task_default_queue, no_ack=True)
        try:
            return queue.get(timeout=5)
        finally:
            queue.close()


def without(properties: dict[str, Any], keys: set[str]) -> dict[str, Any]:
    """`properties` without `keys`."""
    return {key: value for key, value in properties.items() if key not in keys}


def test_a_message_reads_as_the_one_send_task_sends(settings: Settings, celery: TaskApp) -> None:
    payload = {"a": 1, "b": 2}
    args = ("add", payload)
    celery.send_task(
        RUN_TASK,
        args=args,
        task_id="t1",
        shadow="add",
        argsrepr=repr(args),
        kwargsrepr="{}",
    )
    expected = take(celery)
    push(settings, celery, "t1", "add", payload)
    ours = take(celery)
    assert ours.decode() == expected.decode()
    assert ours.decode()[:2] == [list(args), {}]
    assert ours.headers == expected.headers
    assert ours.headers["shadow"] == "add"
    assert (ours.content_type, ours.content_encoding) == ("application/json", "utf-8")
    assert ours.delivery_info == expected.delivery_info
    assert without(ours.properties, PUBLISHER_ONLY) == without(expected.properties, PUBLISHER_ONLY)


def test_each_message_has_its_own_delivery_tag(settings: Settings, celery: TaskApp) -> None:
    push(settings, celery, "t1", "add", {"a": 1, "b": 2})
    push(settings, celery, "t2", "add", {"a": 1, "b": 2})
    first, second = take(celery), take(celery)
    # A worker keeps unacknowledged messages by tag: a shared tag would lose one of them.
    assert first.delivery_tag != second.delivery_tag


def test_the_arguments_repr_is_bounded(settings: Settings, celery: TaskApp) -> None:
    push(settings, celery, "t1", "add", {"a": "x" * 5000, "b": ""})
    message = take(celery)
    assert len(message.headers["argsrepr"]) == ARGS_REPR_LENGTH
    assert message.decode()[0][1]["a"] == "x" * 5000
