"""Task names, queues and Celery configuration: what the API sends and the workers consume.

The API enqueues by name through ``TaskQueue`` so it never imports the worker modules
(and with them torch).
"""

from __future__ import annotations

from typing import Any

from celery import Celery

from shared.settings import Settings

QUEUES = ("embed", "query", "generate", "default")

PLAN_EMBED = "assetrag.embed.plan"
EMBED_BATCH = "assetrag.embed.batch"
RUN_SEARCH = "assetrag.search.run"
RUN_GENERATE = "assetrag.generate.run"

ROUTES = {
    PLAN_EMBED: "default",
    EMBED_BATCH: "embed",
    RUN_SEARCH: "query",
    RUN_GENERATE: "generate",
}


def celery_config(settings: Settings) -> dict[str, Any]:
    # Late acks + reject-on-worker-lost + prefetch 1: a worker killed mid-batch gives the
    # batch back instead of losing it; batches are idempotent (content-hash ids), so a
    # redelivery is harmless.
    return {
        "broker_url": settings.redis_url,
        "broker_connection_retry_on_startup": True,
        "broker_transport_options": {
            "visibility_timeout": settings.visibility_timeout_s,
            # kombu sweeps for abandoned (unacked, timed-out) messages only every
            # interval x throttle seconds (100 s by default); sweep every interval instead.
            "unacked_restore_interval": max(1, min(10, settings.visibility_timeout_s // 4)),
            "unacked_restore_throttle": 1,
        },
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "task_ignore_result": True,
        "task_default_queue": "default",
        "task_routes": {name: {"queue": queue} for name, queue in ROUTES.items()},
        "task_serializer": "json",
        "accept_content": ["json"],
        "worker_cancel_long_running_tasks_on_connection_loss": True,
        "worker_hijack_root_logger": False,
    }


def make_celery(settings: Settings) -> Celery:
    app = Celery("assetrag")
    app.conf.update(celery_config(settings))
    return app


class TaskQueue:
    """Sends tasks by name; one instance per process, created at start-up."""

    def __init__(self, celery: Celery) -> None:
        self.celery = celery

    def send(self, name: str, *args: Any) -> None:
        self.celery.send_task(name, args=list(args), queue=ROUTES[name])

    def close(self) -> None:
        self.celery.close()
