"""Prometheus metrics of the API process."""

from __future__ import annotations

import time

from prometheus_client import Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

REQUESTS = Counter("assetrag_http_requests_total", "HTTP requests", ["method", "route", "status"])
LATENCY = Histogram("assetrag_http_request_seconds", "HTTP request latency", ["method", "route"])
JOBS_SUBMITTED = Counter("assetrag_jobs_submitted_total", "Jobs submitted", ["kind"])


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
