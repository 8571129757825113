"""Task names, queues and Celery configuration: what the API sends and the workers consume.

The API enqueues by name through ``TaskQueue`` so it never imports the worker modules
(and with them torch).
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from typing import Any, NamedTuple

import redis
from celery import Celery

from shared.redis_client import broker_transport_options
from shared.settings import Settings

QUEUES = ("embed", "query", "generate", "default")
# A header of our own on every task message: when it was made (Unix seconds). Celery's
# protocol-2 messages carry no enqueue time (only eta/expires when set), and a queue's
# oldest waiting task is what an autoscaler watching latency needs.
SENT_AT = "assetrag_sent_at"

PLAN_EMBED = "assetrag.embed.plan"
EMBED_BATCH = "assetrag.embed.batch"
RUN_SEARCH = "assetrag.search.run"
RUN_GENERATE = "assetrag.generate.run"
GENERATE_ITEMS = "assetrag.generate.items"
COLLECT_BATCH = "assetrag.generate.collect"
RESOLVE_REFERENCES = "assetrag.generate.resolve"
SAVE_GENERATED = "assetrag.generate.save"
FINISH_GENERATE = "assetrag.generate.finish"
SCORE_BRAND = "assetrag.generate.score"
PLAN_BRAND_CHECK = "assetrag.brand.plan"
BRAND_CHECK_BATCH = "assetrag.brand.batch"
FINISH_BRAND_CHECK = "assetrag.brand.finish"
PLAN_DUPLICATES = "assetrag.duplicates.plan"
DUPLICATES_BATCH = "assetrag.duplicates.batch"
CLUSTER_DUPLICATES = "assetrag.duplicates.cluster"
PLAN_REINDEX = "assetrag.reindex.plan"
REINDEX_BATCH = "assetrag.reindex.batch"
SWAP_REINDEX = "assetrag.reindex.swap"

ROUTES = {
    PLAN_EMBED: "default",
    EMBED_BATCH: "embed",
    RUN_SEARCH: "query",
    RUN_GENERATE: "generate",
    GENERATE_ITEMS: "generate",
    # reads a finished Gemini batch and keeps its images (saving them is SAVE_GENERATED's)
    COLLECT_BATCH: "generate",
    # a generation's reference searches: text encoding, where the model runs
    RESOLVE_REFERENCES: "query",
    # generated images saved into a collection: encoded where the image model runs
    SAVE_GENERATED: "embed",
    # assembles a bulk generate job's result from Redis
    FINISH_GENERATE: "default",
    # a kit's outputs scored (CLIP image encoding): where the query model runs
    SCORE_BRAND: "query",
    # the library audit against a kit: planned on default, scored where CLIP runs
    PLAN_BRAND_CHECK: "default",
    BRAND_CHECK_BATCH: "query",
    FINISH_BRAND_CHECK: "default",
    # Milvus work only, no model: on the workers that plan and sweep.
    PLAN_DUPLICATES: "default",
    DUPLICATES_BATCH: "default",
    CLUSTER_DUPLICATES: "default",
    # A re-index loads the new model (to learn its dimension, and to encode): embed workers.
    PLAN_REINDEX: "embed",
    REINDEX_BATCH: "embed",
    SWAP_REINDEX: "embed",
}


def celery_config(settings: Settings) -> dict[str, Any]:
    # Late acks + reject-on-worker-lost + prefetch 1: a worker killed mid-batch gives the
    # batch back instead of losing it; batches are idempotent (content-hash ids), so a
    # redelivery is harmless.
    return {
        "broker_url": settings.redis_url,
        "broker_connection_retry_on_startup": True,
        "broker_transport_options": {
            **broker_transport_options(),
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


def decode(payload: str | bytes) -> tuple[str, list[Any]]:
    """A task message as a Celery worker reads it: the task's name and its arguments."""
    envelope = json.loads(payload)
    args, _kwargs, _embed = json.loads(base64.b64decode(envelope["body"]))
    return envelope["headers"]["task"], args


def sent_at(payload: str | bytes) -> float | None:
    """When a task message was made, from our header; None for a message without one (sent
    by another client, or by a version from before the header)."""
    try:
        value = json.loads(payload)["headers"].get(SENT_AT)
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
    return float(value) if isinstance(value, int | float) else None


class QueuedTask(NamedTuple):
    """A task message ready to be pushed: the Redis list of its queue, and the message."""

    queue: str
    payload: str
    task_id: str = ""


class TaskQueue:
    """Sends tasks by name; one instance per process, created at start-up.

    Messages are Celery's own (task protocol 2, built by `Celery.amqp.as_task_v2`) in kombu's
    Redis envelope, pushed straight onto the queue's list, so a submit can write its job
    record and its task in one atomic Redis round trip (`JobStore.create`). Measured here,
    `Celery.send_task` cost ~400 µs of CPU per task (it builds a new Redis client per
    publish and reads the exchange's bindings from Redis each time): more than the rest of
    a submit together. tests/shared/test_tasks.py checks the envelope against kombu's.

    Every message is the one place tasks are made, so it stamps `SENT_AT` here. It is when
    the message was made, not pushed: a job's last step made with its batches (and pushed
    when they end) and the watchdog's re-sends count from then, so a queue's oldest age is
    an upper bound on how long its work has waited.
    """

    def __init__(self, celery: Celery, client: redis.Redis) -> None:
        self.celery = celery
        self.redis = client

    def message(self, name: str, *args: Any) -> QueuedTask:
        task_id = str(uuid.uuid4())
        task = self.celery.amqp.as_task_v2(task_id, name, args=list(args))
        task.headers[SENT_AT] = time.time()
        queue = ROUTES[name]
        body = base64.b64encode(json.dumps(task.body).encode()).decode()
        envelope = {
            "body": body,
            "content-encoding": "utf-8",
            "content-type": "application/json",
            "headers": task.headers,
            "properties": {
                **task.properties,
                "delivery_mode": 2,  # persistent
                "delivery_info": {"exchange": "", "routing_key": queue},
                "priority": 0,  # kombu keeps priority 0 on the queue's own list
                "body_encoding": "base64",
                "delivery_tag": str(uuid.uuid4()),
            },
        }
        return QueuedTask(queue, json.dumps(envelope), task_id)

    def send(self, name: str, *args: Any) -> None:
        self.redis.lpush(*self.message(name, *args))

    def close(self) -> None:
        self.celery.close()
