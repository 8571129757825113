"""Prometheus metrics of the API process."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from fastapi import Request, Response
from prometheus_client import Counter, Histogram

REQUESTS = Counter("assetrag_http_requests_total", "HTTP requests", ["method", "route", "status"])
LATENCY = Histogram("assetrag_http_request_seconds", "HTTP request latency", ["method", "route"])
JOBS_SUBMITTED = Counter("assetrag_jobs_submitted_total", "Jobs submitted", ["kind"])


async def record_request(
    request: Request, call_next: Callable[[Request], Awaitable[Response]]
) -> Response:
    started = time.perf_counter()
    response = await call_next(request)
    route = getattr(request.scope.get("route"), "path", "unmatched")
    LATENCY.labels(request.method, route).observe(time.perf_counter() - started)
    REQUESTS.labels(request.method, route, str(response.status_code)).inc()
    return response
