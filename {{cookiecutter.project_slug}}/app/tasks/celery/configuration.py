"""Celery's configuration from the service's settings: at least once, JSON only.

The broker (never a cluster: kombu cannot use one), the result backend in Celery's own
spelling, kombu's transport options and TLS as the service's clients verify it.
`create_celery_app` (`app.tasks.celery.task_app`) applies it.
"""

import ssl
from typing import Any
from urllib.parse import quote

from app.config import Settings
from app.redis_urls import parse_redis_url
from app.tasks.celery.publish import RUN_TASK
from app.tasks.celery.schedules import OnSchedule
from app.tasks.schedule import periodic_jobs

HARD_LIMIT_GRACE = 10.0  # seconds past TASK_TIME_LIMIT before a stuck pool process is killed


def broker_url_of(settings: Settings) -> str:
    """Celery's broker: CELERY_BROKER_URL, or REDIS_URL when it is not set; never a cluster.

    kombu's Redis transport has no Redis Cluster support: refused at start, saying what to use.
    """
    url = settings.celery_broker_url or settings.redis_url
    if url.lower().startswith(("redis+cluster://", "rediss+cluster://")):
        setting = "CELERY_BROKER_URL" if settings.celery_broker_url else "REDIS_URL (the broker)"
        raise ValueError(
            f"{setting}: kombu, Celery's Redis transport, cannot use Redis Cluster; set "
            "CELERY_BROKER_URL to RabbitMQ (amqp://), a one-node Redis or Sentinel (statuses, "
            "dead letters and the cache may stay on the cluster)"
        )
    return url


def result_backend_of(settings: Settings) -> str | None:
    """REDIS_URL as Celery's result backend (users' own tasks, chords): a one-node URL as it
    is, a Sentinel group in Celery's own spelling (with `result_backend_options`); none on a
    cluster, which Celery cannot use, or a TLS Sentinel, which it would not verify."""
    url = parse_redis_url(settings.redis_url)
    if url.topology == "node":
        return settings.redis_url
    if url.topology == "cluster" or url.tls:
        return None
    auth = f"{quote(url.username or '')}:{quote(url.password)}@" if url.password else ""
    return ";".join(f"sentinel://{auth}{host}:{port}/{url.db}" for host, port in url.nodes)


def result_backend_options(settings: Settings) -> dict[str, object]:
    """The Sentinel backend's service name, and the Sentinels' password as REDIS_URL's
    clients use it (REDIS_SENTINEL_PASSWORD, else the URL's)."""
    url = parse_redis_url(settings.redis_url)
    if url.topology != "sentinel":
        return {}
    password = settings.redis_sentinel_password
    password = url.password if password is None else password
    return {"master_name": url.service_name} | (
        {"sentinel_kwargs": {"password": password}} if password else {}
    )


def broker_transport_options(settings: Settings) -> dict[str, object]:
    """kombu's transport options (each transport ignores the others'), then the user's own.

    RabbitMQ confirms every publish (`confirm_publish`): a 202 means the broker holds the
    message, and the backlog count sees it. A Sentinel URL needs the name of the master
    (`master_name`): its absence fails start-up.
    """
    visibility = settings.task_visibility_timeout
    options: dict[str, object] = {
        "visibility_timeout": visibility,
        # Look for messages of vanished workers often enough to honour the timeout
        # (kombu's defaults look every 100 s).
        "unacked_restore_interval": max(1, visibility // 4),
        "unacked_restore_throttle": 1,
        "unacked_mutex_expire": visibility,
        "socket_connect_timeout": 2.0,
        "socket_timeout": 10.0,
        "confirm_publish": True,  # py-amqp: wait for RabbitMQ's ack of each publish
        **settings.celery_broker_transport_options,
    }
    if broker_url_of(settings).startswith("sentinel") and "master_name" not in options:
        raise ValueError(
            "CELERY_BROKER_URL is a Sentinel URL: name the master in"
            ' CELERY_BROKER_TRANSPORT_OPTIONS, e.g. {"master_name": "mymaster"}'
        )
    return options


def verified_tls(url: str) -> dict[str, Any] | None:
    """What Celery needs to verify a `rediss://` URL's server (it refuses one without it)."""
    if not url.lower().startswith("rediss://"):
        return None
    ca_certs = parse_redis_url(url).ca_certs
    return {"ssl_cert_reqs": ssl.CERT_REQUIRED} | ({"ssl_ca_certs": ca_certs} if ca_certs else {})


def celery_config(settings: Settings) -> dict[str, Any]:
    """Celery's configuration from the service's settings: at least once, JSON only."""
    return {
        "broker_url": broker_url_of(settings),
        "broker_connection_retry_on_startup": True,
        # Read by kombu's Redis transport (others ignore them).
        "broker_transport_options": broker_transport_options(settings),
        # A publish to a broker that is down fails in well under a second.
        "task_publish_retry_policy": {
            "max_retries": 2,
            "interval_start": 0,
            "interval_step": 0.1,
            "interval_max": 0.2,
        },
        "broker_connection_timeout": 2.0,
        "task_serializer": "json",
        "accept_content": ["json"],
        "result_backend": result_backend_of(settings),
        "result_backend_transport_options": result_backend_options(settings),
        # rediss://: Celery and kombu check the server's certificate as the service's clients do.
        "broker_use_ssl": verified_tls(broker_url_of(settings)),
        "redis_backend_use_ssl": verified_tls(settings.redis_url),
        "result_expires": settings.task_status_ttl,
        "result_serializer": "json",
        "result_accept_content": ["json"],
        "task_ignore_result": True,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "task_acks_on_timeout": False,
        "task_time_limit": settings.task_time_limit + HARD_LIMIT_GRACE,
        "worker_prefetch_multiplier": 1,
        "worker_concurrency": settings.task_concurrency,
        "worker_soft_shutdown_timeout": settings.task_shutdown_timeout,
        "worker_cancel_long_running_tasks_on_connection_loss": True,
        "enable_utc": True,
        "timezone": "UTC",
        "beat_scheduler": "app.tasks.celery.beat:OncePerTickScheduler",
        "beat_schedule": {
            job.name: {
                "task": RUN_TASK,
                "schedule": OnSchedule(job.schedule),
                "args": (job.task, job.payload),
            }
            for job in periodic_jobs(settings)
        },
    }
