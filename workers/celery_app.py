"""The Celery app the worker command loads (`celery -A workers.celery_app`)."""

from __future__ import annotations

import logging
import threading
from typing import Any

import redis
from celery import Celery, signals

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


@signals.worker_ready.connect
def _start_heartbeat(sender: Any = None, **_: Any) -> None:
    """Announces which queues this worker consumes, for /readyz, until it shuts down."""
    queues = sorted(sender.app.amqp.queues.consume_from.keys())
    heartbeat = WorkerHeartbeat(redis.Redis.from_url(get_settings().redis_url))

    def beat() -> None:
        while not _stop.wait(HEARTBEAT_PERIOD_S):
            try:
                heartbeat.beat(sender.hostname, queues)
            except redis.RedisError:
                log.warning("heartbeat to Redis failed; retrying")

    heartbeat.beat(sender.hostname, queues)
    threading.Thread(target=beat, name="assetrag-heartbeat", daemon=True).start()


@signals.worker_shutdown.connect
def _stop_heartbeat(sender: Any = None, **_: Any) -> None:
    _stop.set()
