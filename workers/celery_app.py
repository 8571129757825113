"""The Celery app the worker command loads (`celery -A workers.celery_app`)."""

from __future__ import annotations

import logging
import threading
from typing import Any

import redis
from celery import Celery, signals
from celery.bootsteps import RUN

from shared.health import HEARTBEAT_PERIOD_S, WorkerHeartbeat
from shared.settings import get_settings
from shared.tasks import make_celery

log = logging.getLogger("assetrag.worker")


def create_app() -> Celery:
    app = make_celery(get_settings())
    app.conf.imports = ("workers.embed", "workers.search", "workers.generate")
    return app


app = create_app()
_stop = threading.Event()


def consuming(consumer: Any) -> bool:
    """Whether the consumer is running on a live broker connection with its queues bound.

    A process that merely answers is not enough: after a Redis reconnect a worker can stay
    up without consuming, and then it must drop out of /readyz.
    """
    connection = getattr(consumer, "connection", None)
    task_consumer = getattr(consumer, "task_consumer", None)
    return bool(
        consumer.blueprint.state == RUN
        and connection is not None
        and connection.connected
        and task_consumer is not None
        and task_consumer.queues
    )


@signals.worker_ready.connect
def _start_heartbeat(sender: Any = None, **_: Any) -> None:
    """Announces which queues this worker consumes, for /readyz, until it shuts down."""
    queues = sorted(sender.app.amqp.queues.consume_from.keys())
    heartbeat = WorkerHeartbeat(redis.Redis.from_url(get_settings().redis_url))

    def beat() -> None:
        while not _stop.wait(HEARTBEAT_PERIOD_S):
            if not consuming(sender):
                log.warning("not consuming from %s; withholding the heartbeat", queues)
                continue
            try:
                heartbeat.beat(sender.hostname, queues)
            except redis.RedisError:
                log.warning("heartbeat to Redis failed; retrying")

    heartbeat.beat(sender.hostname, queues)
    threading.Thread(target=beat, name="assetrag-heartbeat", daemon=True).start()
    if "default" in queues:
        threading.Thread(target=_sweep_blobs, name="assetrag-blob-sweep", daemon=True).start()


def _sweep_blobs() -> None:
    """Bookkeeping on the default queue's workers: delete blobs whose record expired."""
    from workers.context import worker_context

    while not _stop.wait(get_settings().blob_sweep_s):
        try:
            while worker_context().expiry.sweep():
                pass
        except (redis.RedisError, OSError):
            log.warning("blob sweep failed; retrying")


@signals.worker_shutdown.connect
def _stop_heartbeat(sender: Any = None, **_: Any) -> None:
    _stop.set()
