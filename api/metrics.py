"""Prometheus metrics of the API process."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

import redis
from prometheus_client import Counter, Gauge, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared import keys
from shared.tasks import QUEUES, sent_at

log = logging.getLogger("assetrag.api")
REQUESTS = Counter("assetrag_http_requests_total", "HTTP requests", ["method", "route", "status"])
LATENCY = Histogram("assetrag_http_request_seconds", "HTTP request latency", ["method", "route"])
JOBS_SUBMITTED = Counter("assetrag_jobs_submitted_total", "Jobs submitted", ["kind"])
# Read from Redis at scrape time, so every API replica reports the fleet's figures.
QUEUE_DEPTH = Gauge("assetrag_queue_depth", "Task messages waiting in each queue", ["queue"])
QUEUE_AGE = Gauge(
    "assetrag_queue_oldest_age_seconds",
    "How long the oldest task message waiting in each queue has waited (0: none waits)",
    ["queue"],
)
ACTIVE_JOBS = Gauge("assetrag_jobs_active", "Jobs queued or running (not yet terminal)")


def refresh_fleet_gauges(client: redis.Redis) -> None:
    """Queue depths and active jobs from Redis; a Redis that does not answer leaves the last
    values (the scrape itself still answers)."""
    try:
        with client.pipeline(transaction=False) as pipe:
            for queue in QUEUES:
                pipe.llen(queue)
            for queue in QUEUES:
                # kombu's Redis transport LPUSHes and workers BRPOP: the oldest is the tail.
                pipe.lindex(queue, -1)
            pipe.zcard(keys.ACTIVE_JOBS)
            *replies, active = pipe.execute()
    except redis.RedisError as exc:
        log.warning("metrics: Redis did not answer (%s)", type(exc).__name__)
        return
    depths, oldest = replies[: len(QUEUES)], replies[len(QUEUES) :]
    for queue, depth, age in zip(QUEUES, depths, oldest_ages(oldest, time.time()), strict=True):
        QUEUE_DEPTH.labels(queue).set(depth)
        QUEUE_AGE.labels(queue).set(age)
    ACTIVE_JOBS.set(active)


def oldest_ages(tails: Sequence[bytes | str | None], now: float) -> list[float]:
    """Each queue's oldest message's age in seconds from its tail message; 0 for an empty
    queue or a message without our send time (never negative: clocks of hosts differ)."""
    ages = []
    for tail in tails:
        stamped = sent_at(tail) if tail is not None else None
        ages.append(max(0.0, now - stamped) if stamped is not None else 0.0)
    return ages


class RequestMetrics:
    """Counts requests and times them by route template.

    A plain ASGI middleware: Starlette's BaseHTTPMiddleware runs each request in an extra task
    with memory streams, which cost a measurable share of a submit.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            LATENCY.labels(scope["method"], route).observe(time.perf_counter() - started)
            REQUESTS.labels(scope["method"], route, str(status)).inc()
