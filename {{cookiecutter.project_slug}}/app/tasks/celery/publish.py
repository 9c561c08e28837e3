"""Sending registry tasks through Celery's own API, from the API (async) and from beat.

Every message goes through `send_task`, so whatever the Celery configuration says applies:
the broker (`CELERY_BROKER_URL`), `task_routes`, priorities, queue options, the broker's
`global_keyprefix`, and the `before_task_publish` / `after_task_publish` signals.
Results are ignored (`ignore_result=True`): the service's status store keeps statuses, and
no result-backend subscription is made per message.

kombu publishes over blocking sockets. The API therefore publishes from threads of its own,
each through one producer taken from the app's pool and held for the life of the process:
the event loop only waits on a future, and no connection or channel is opened per message.

kombu's Redis transport does not `WAIT` for replicas: with REDIS_REPLICA_ACKS a message
counts as sent only once `BrokerReplicas` has seen that many replicas take it.
"""

import asyncio
import contextvars
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, cast

from amqp.exceptions import MessageNacked
from celery import Celery
from kombu import Connection, Producer, Queue
from kombu.exceptions import OperationalError
from redis import Redis
from redis.exceptions import RedisError

from app.config import Settings
from app.tasks.origin import outgoing

RUN_TASK = "tasks.run"
ARGS_REPR_LENGTH = 1024  # characters of a message's arguments kept for Flower (Celery's default)
PUBLISH_THREADS = 4  # messages in flight at once (Celery's broker_pool_limit is 10)


def send_registered_task(
    app: Celery, task_id: str, name: str, payload: dict[str, Any], producer: Producer | None
) -> None:
    """Send registry task `name` as message `task_id` of the Celery task `tasks.run`.

    The message carries `name` as its `shadow` (what logs and Flower show). Its arguments'
    repr is built with the built-in `repr`, bounded as Celery bounds its own.
    """
    args = (name, payload)
    app.send_task(
        RUN_TASK,
        args=args,
        task_id=task_id,
        shadow=name,
        producer=producer,
        ignore_result=True,
        argsrepr=repr(args)[:ARGS_REPR_LENGTH],
        kwargsrepr="{}",
        headers=outgoing(),  # the request id (and trace) it was sent from: `app.tasks.origin`
    )


class BrokerReplicas:
    """REDIS_REPLICA_ACKS for a Redis broker: a message counts once `count` replicas have it.

    After the message, a probe is written on the transport's own pool and WAITed for on the
    same connection: the replication stream is in order, so replicas that have the probe have
    the message the primary took before it. The server's identity (`run_id` and
    `master_replid`, new at each start and each promotion) is read before the message and
    again with the WAIT: if it changed, a failover came in between and nothing is confirmed.
    """

    def __init__(self, count: int, timeout_ms: int, probe_key: str) -> None:
        self.count = count
        self.timeout_ms = timeout_ms
        self.probe_key = probe_key

    @staticmethod
    def identity(client: Redis) -> tuple[str, str]:
        """The primary's `run_id` and `master_replid`; OperationalError when unreachable."""
        try:
            info = client.info("server", "replication")
        except RedisError as exc:
            raise OperationalError(f"task broker unavailable: {exc}") from exc
        return str(info["run_id"]), str(info["master_replid"])

    def confirm(self, client: Redis, before: tuple[str, str]) -> None:
        """Raise OperationalError unless `count` replicas of the server that was the primary
        `before` the message have everything it took since."""
        try:
            with client.pipeline(transaction=False) as pipe:
                pipe.incr(self.probe_key)
                pipe.wait(self.count, self.timeout_ms)
                pipe.info("server", "replication")
                _, confirmed, info = pipe.execute()
        except RedisError as exc:
            raise OperationalError(f"the broker's replicas could not be asked: {exc}") from exc
        if (str(info["run_id"]), str(info["master_replid"])) != before:
            raise OperationalError("the broker failed over while the message was confirmed")
        if int(confirmed) < self.count:
            raise OperationalError(
                f"{confirmed} of {self.count} broker replicas confirmed the message"
                f" within {self.timeout_ms} ms"
            )


def broker_replicas(settings: Settings) -> BrokerReplicas | None:
    """REDIS_REPLICA_ACKS for the broker's messages (on a Redis broker); None when 0."""
    if not settings.redis_replica_acks:
        return None
    probe = f"{settings.cache_prefix}:broker-replication-probe"
    return BrokerReplicas(settings.redis_replica_acks, settings.redis_replica_ack_timeout, probe)


def send_confirmed(
    app: Celery,
    replicas: BrokerReplicas | None,
    task_id: str,
    name: str,
    payload: dict[str, Any],
    producer: Producer,
) -> None:
    """Send registry task `name` on `producer`; raise OperationalError when the broker is
    unreachable, refuses the message (a RabbitMQ nack) or, on a Redis broker with `replicas`,
    when they do not confirm it."""
    connection = cast(Connection, producer.connection)  # a pooled or beat's producer has one
    if replicas is None or connection.transport.driver_type != "redis":
        _publish(app, task_id, name, payload, producer)
        return
    channel: Any = connection.default_channel  # kombu's Redis channel
    with channel.conn_or_acquire() as redis:  # a client on the pool it publishes through
        before = replicas.identity(redis)
        _publish(app, task_id, name, payload, producer)
        replicas.confirm(redis, before)


def _publish(
    app: Celery, task_id: str, name: str, payload: dict[str, Any], producer: Producer
) -> None:
    try:
        send_registered_task(app, task_id, name, payload, producer)
    except MessageNacked as exc:  # RabbitMQ confirmed it did not take the message
        raise OperationalError("the broker refused the message (nack)") from exc


class Publisher:
    """Send messages from a few threads of their own, each with one producer held for good.

    A thread waits for the broker's answer to each message, so one thread alone would send at
    most one message per round trip; PUBLISH_THREADS threads keep that many in flight. Each
    producer (and its broker connection) comes from the app's pool, stays with its thread for
    the life of the process, and is given back by `close`.
    """

    def __init__(
        self, app: Celery, replicas: BrokerReplicas | None, threads: int = PUBLISH_THREADS
    ) -> None:
        self._app = app
        self._replicas = replicas  # confirms each message on a Redis broker; None: no wait
        self._threads = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="celery-publish")
        self._local = threading.local()
        self._producers: list[Producer] = []
        self._lock = threading.Lock()

    async def send(self, task_id: str, name: str, payload: dict[str, Any]) -> None:
        """Publish one task; raise what kombu raised (an OperationalError when unreachable or
        when RabbitMQ refuses the message: a full queue that rejects publishes, say)."""
        loop = asyncio.get_running_loop()
        context = contextvars.copy_context()  # the request's: its id and its trace
        await loop.run_in_executor(self._threads, context.run, self._send, task_id, name, payload)

    def _send(self, task_id: str, name: str, payload: dict[str, Any]) -> None:
        send_confirmed(self._app, self._replicas, task_id, name, payload, self._producer())

    async def waiting(self, name: str, payload: dict[str, Any]) -> int:
        """Messages ready in the queue Celery routes task `name` to (not yet given to a worker).

        One broker round trip (`queue_declare`, which creates the queue if it is missing, with
        the options Celery publishes it with); raises OperationalError when unreachable.
        """
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._threads, self._waiting, name, payload)

    def _waiting(self, name: str, payload: dict[str, Any]) -> int:
        route = self._app.amqp.router.route({}, RUN_TASK, (name, payload), {})
        default = self._app.amqp.queues[self._app.conf.task_default_queue]
        queue: Queue = route.get("queue") or default  # a route may name only an exchange
        producer = self._producer()
        connection = cast(Connection, producer.connection)  # a pooled producer has one

        def declare() -> Any:  # the producer's channel, opened again after a lost connection
            return queue.queue_declare(channel=connection.default_channel)

        policy = self._app.conf.task_publish_retry_policy
        try:
            declared = connection.ensure(producer, declare, **policy)()
        except (*connection.connection_errors, *connection.channel_errors) as exc:
            raise OperationalError(str(exc)) from exc
        return int(declared.message_count)

    def _producer(self) -> Producer:
        """This thread's producer, taken from the app's pool the first time."""
        producer: Producer | None = getattr(self._local, "producer", None)
        if producer is None:
            producer = self._local.producer = self._app.producer_pool.acquire(block=True)
            with self._lock:
                self._producers.append(producer)
        return producer

    async def ping(self) -> None:
        """Raise when the broker cannot be reached (on a connection of its own)."""
        await asyncio.to_thread(self._ping)

    def _ping(self) -> None:
        with self._app.connection_for_write() as connection:
            connection.ensure_connection(max_retries=1)

    async def close(self) -> None:
        """Wait for the sends under way, then close each producer's connection and give it back."""
        await asyncio.to_thread(self._threads.shutdown)
        for producer in self._producers:
            if producer.connection is not None:  # kombu's pools are shared by all apps alike
                producer.connection.close()
            producer.release()
        self._producers.clear()
